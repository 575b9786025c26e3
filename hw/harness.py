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
    """Members
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
