"""DescFetch: a step's descriptor from a 32-bit-wide memory, word by word, into a register."""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

WORD = 32


def times_const(value, k):
    """``value * k`` for a constant ``k`` as a sum of shifts: no multiplier cell (which ``synth_ice40 -dsp``
    would put into a DSP block)."""
    terms = [value << i for i in range(k.bit_length()) if k >> i & 1]
    out = terms[0]
    for t in terms[1:]:
        out = out + t
    return out


class DescFetch(wiring.Component):
    """With ``EngineParams(desc_fetch="serial")`` (the iCE40 configuration) the descriptor memory is
    ``words`` 32-bit words per step instead of one ``StepDesc.size``-bit word: a 658-bit memory is 42
    block RAMs wide on an iCE40 (16 bits each) however few steps it holds; 32-bit words take a handful.
    While ``run`` (the :class:`Sequencer` is in ``FETCH``), word ``k`` of step ``pc`` is read at
    ``pc * words + k`` and shifted in; ``ready`` is high in the cycle the last word arrives, so ``desc``
    is whole from the next cycle (``DISPATCH``) on, and held until the next fetch. ``FETCH`` takes
    ``words + 1`` cycles instead of one (``cycles.fetch_cycles``).

    Members
    -------
    run : In(1); pc : In(16)
    rd_addr : Out(range(depth)); rd_data : In(32)    -- the descriptor memory's read port (one cycle)
    desc : Out(words * 32)                           -- word ``k`` at bits ``[32k +: 32]``
    ready : Out(1)
    """

    def __init__(self, words, depth):
        for name, v in (("words", words), ("depth", depth)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise TypeError(f"DescFetch {name} must be a positive integer, not {v!r}")
        self.words, self.depth = words, depth
        super().__init__({"run": In(1), "pc": In(16), "rd_addr": Out(range(max(2, depth))), "rd_data": In(WORD),
                          "desc": Out(words * WORD), "ready": Out(1)})

    def elaborate(self, platform):
        m = Module()
        k = Signal(range(self.words + 1))
        arrived = Signal()                      # the word issued last cycle is on rd_data
        m.d.comb += self.rd_addr.eq(times_const(self.pc, self.words) + k)
        m.d.sync += arrived.eq(self.run & (k != self.words))
        with m.If(self.run):
            with m.If(k != self.words):
                m.d.sync += k.eq(k + 1)
        with m.Else():
            m.d.sync += k.eq(0)
        with m.If(arrived):
            m.d.sync += self.desc.eq(Cat(self.desc[WORD:], self.rd_data) if self.words > 1 else self.rd_data)
        m.d.comb += self.ready.eq(self.run & (k == self.words))
        return m
