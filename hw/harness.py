"""ImplementationHarness: the accelerator behind three pins, for place-and-route measurements only.

The stream ports are wider than a small FPGA has pins, and an unconnected design would be optimised
away. The harness shifts a serial pin into the input payload and XOR-reduces every output into one pin,
so every gate stays live and nextpnr can place and time the design on a real package.
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .accelerator import Accelerator
from .params import ArrayParams


class ImplementationHarness(wiring.Component):
    """The whole accelerator behind three pins.

    Members
    -------
    sin : In(1)    -- serial data into the input payload shift register
    vin : In(1)    -- input stream valid
    sout : Out(1)  -- XOR of every output bit
    """

    def __init__(self, params: ArrayParams):
        self.p = params
        super().__init__({"sin": In(1), "vin": In(1), "sout": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.acc = acc = Accelerator(self.p)
        sr = Signal(self.p.data_bits)
        m.d.sync += sr.eq(Cat(self.sin, sr[:-1]))
        m.d.comb += [acc.i_stream.payload.eq(sr), acc.i_stream.valid.eq(self.vin), acc.o_stream.ready.eq(self.sin)]
        out = Signal()
        m.d.sync += out.eq(acc.o_stream.payload.xor() ^ acc.o_stream.valid ^ acc.i_stream.ready ^ acc.busy)
        m.d.comb += self.sout.eq(out)
        return m


class ArrayHarness(wiring.Component):
    """The :class:`PEArray` alone behind three pins, for array-level place and route (bench/hw_cost.py).

    A serial shift register feeds every array input (activations, weight codes, ``valid``, ``clear``,
    ``drain``), so the operands arrive from flip-flops as they do from the buffers; the read-out
    chain's head (``acc0``, ``acc1``) is XOR-reduced into a registered pin. Every PE stays live through
    the chain, so the LUT count is the array's including its read-out.

    Members
    -------
    sin : In(1)
    sout : Out(1)
    """

    def __init__(self, params: ArrayParams):
        self.p = params
        super().__init__({"sin": In(1), "sout": Out(1)})

    def elaborate(self, platform):
        from .pe_array import PEArray

        m = Module()
        m.submodules.array = arr = PEArray(self.p)
        ins = [arr.a, arr.w, arr.valid, arr.clear, arr.drain]
        sr = Signal(sum(len(x) for x in ins))
        m.d.sync += sr.eq(Cat(self.sin, sr[:-1]))
        pos = 0
        for x in ins:
            m.d.comb += x.eq(sr[pos:pos + len(x)])
            pos += len(x)
        out = Signal()
        m.d.sync += out.eq(arr.acc0.xor() ^ arr.acc1.xor())
        m.d.comb += self.sout.eq(out)
        return m
