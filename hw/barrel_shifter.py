"""BarrelShifter: a left shift by a run-time amount whose width is fixed by ``max_shift``."""

from amaranth.hdl import Module, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


class BarrelShifter(wiring.Component):
    """``o = i << amount`` for ``amount`` in ``0 .. max_shift``; ``o`` is ``width + max_shift`` bits, so no
    bit is ever lost. Built as ``log2`` stages of 2:1 multiplexers. Combinational.

    Members
    -------
    i : In(width)
    amount : In(range(max_shift + 1))
    o : Out(width + max_shift)
    """

    def __init__(self, width, max_shift):
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise TypeError(f"Width must be a positive integer, not {width!r}")
        if isinstance(max_shift, bool) or not isinstance(max_shift, int) or max_shift < 0:
            raise TypeError(f"Maximum shift must be a non-negative integer, not {max_shift!r}")
        self.width, self.max_shift = width, max_shift
        super().__init__({"i": In(width), "amount": In(range(max_shift + 1)), "o": Out(width + max_shift)})

    def elaborate(self, platform):
        m = Module()
        stage = self.i
        for bit in range(len(self.amount)):
            step = 1 << bit
            if step > self.max_shift:
                break
            stage = Mux(self.amount[bit], stage << step, stage)
        m.d.comb += self.o.eq(stage)
        return m
