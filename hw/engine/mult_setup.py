"""MultSetup: a layer's per-sample requantization words, ``M = rshift_round(M_base * beta, 16)``."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rootshift.sw import contract as C

from ..params import BIAS_BITS, M_BITS, ArrayParams
from .beta_mult import BetaMultiplier
from .pipe_mult import delayed
from .conv_unit import const_word_bits


class MultSetup(wiring.Component):
    """Before a layer runs, builds its column-tile words for the :class:`ConvUnit`'s requantizers: for
    every output channel the per-channel word ``M_base[0], [M_base[1]], B'`` (``B'`` the bias with the
    rounding half folded in at compile time) is read, each ``M_base`` goes through a
    :class:`BetaMultiplier` with the sample's ``beta``, and ``cols`` channels make one word. A multiplier
    that overflows 32 bits sets ``overflow`` (the golden model refuses such a sample; nothing wraps).

    Members
    -------
    m_addr : In(16); c_addr : In(16); cout : In(16); tiles_c : In(16); beta : In(63); start : In(1)
    ch_addr : Out(16); ch_data : In(n_acc*32 + 64)      -- the per-channel constants
    rq_addr : Out(16); rq_data : Out(cols * (n_acc*32 + 64)); rq_en : Out(1)
    overflow : Out(1)                                    -- sticky until the next start
    busy, done : Out(1)

    ``registered_reads``: ``ch_data`` comes from a :class:`~rootshift.hw.engine.bram_outreg.RegisteredMemory`
    (the word two cycles after ``ch_addr``, from the block RAM's output register on ECP5), and is registered
    again next to the multipliers' DSPs: one more cycle (``DSP_OPERAND_REG`` in hw/engine/cycles.py).
    """

    def __init__(self, params: ArrayParams, registered_reads=False):
        if not isinstance(params, ArrayParams):
            raise TypeError(f"params must be ArrayParams, not {params!r}")
        if not isinstance(registered_reads, bool):
            raise TypeError(f"registered_reads must be True or False, not {registered_reads!r}")
        self.p, self.registered_reads = params, registered_reads
        cw = params.n_acc * M_BITS + BIAS_BITS
        super().__init__({
            "m_addr": In(16), "c_addr": In(16), "cout": In(16), "tiles_c": In(16), "beta": In(63), "start": In(1),
            "ch_addr": Out(16), "ch_data": In(cw), "rq_addr": Out(16), "rq_data": Out(const_word_bits(params)),
            "rq_en": Out(1), "overflow": Out(1), "busy": Out(1), "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        n_acc, cols = p.n_acc, p.cols
        mults = [BetaMultiplier() for _ in range(n_acc)]
        for i, bm in enumerate(mults):
            m.submodules[f"bm{i}"] = bm
        ch = Signal(16)
        issue = Signal()
        v1 = Signal()
        extra = 1 if self.registered_reads else 0    # the read word a cycle later
        m.d.comb += self.ch_addr.eq(self.m_addr + ch)
        m.d.sync += v1.eq(issue)
        # a channel beyond cout (the last column tile's padding) writes zeros; the flag and the bias travel
        # beside the beta multipliers
        real = delayed(m, issue & (ch < self.cout), BetaMultiplier.LATENCY + 1 + extra, "real")
        bias = delayed(m, self.ch_data[n_acc * M_BITS:], BetaMultiplier.LATENCY, "bias")
        if extra:                                    # the data-valid of the word on ch_data
            v2 = Signal()
            m.d.sync += v2.eq(v1)
            v1 = v2
        # each multiplier loads beta under its own enable (the first from ``start``, the others from the
        # first ISSUE cycle; beta is used from the third cycle after ``start``), so synthesis keeps a beta
        # register per multiplier next to its DSPs (BetaMultiplier, "beta_en")
        started = Signal()
        m.d.sync += started.eq(self.start)
        for i, bm in enumerate(mults):
            m.d.comb += [bm.m_base.eq(self.ch_data[i * M_BITS:i * M_BITS + C.M_BASE_BITS].as_signed()),
                         bm.beta.eq(self.beta), bm.beta_en.eq(issue | (self.start if i == 0 else started)),
                         bm.i_valid.eq(v1)]
        # assemble: channel words shift in at the top, a full word every cols channels
        lanes = [Signal(n_acc * M_BITS + BIAS_BITS, name=f"lane{c}") for c in range(cols)]
        fill = Signal(range(cols + 1))
        word_n = Signal(16)
        # ``word_n == tiles_c``, kept in a flip-flop beside word_n (tiles_c holds still from ``start`` on):
        # ``done`` was that 16-bit compare, and it led the engine's worst ECP5 path into the conv unit
        at_end = Signal()
        value = Cat(*[bm.m.as_unsigned() for bm in mults], bias)
        with m.If(mults[0].o_valid):
            m.d.sync += [lanes[-1].eq(Mux(real, value, 0)), fill.eq(fill + 1)]
            m.d.sync += [a.eq(b) for a, b in zip(lanes, lanes[1:])]
            with m.If(real & (Cat(*[bm.overflow for bm in mults]) != 0)):
                m.d.sync += self.overflow.eq(1)
        m.d.comb += [self.rq_addr.eq(self.c_addr + word_n), self.rq_data.eq(Cat(*lanes))]
        with m.If(fill == cols):
            m.d.comb += self.rq_en.eq(1)
            m.d.sync += [fill.eq(mults[0].o_valid), word_n.eq(word_n + 1),   # a channel may shift in now
                         at_end.eq(word_n + 1 == self.tiles_c)]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [ch.eq(0), fill.eq(0), word_n.eq(0), self.overflow.eq(0),
                                 at_end.eq(self.tiles_c == 0)]
                    m.next = "ISSUE"
            with m.State("ISSUE"):
                m.d.comb += [issue.eq(1), self.busy.eq(1)]
                m.d.sync += ch.eq(ch + 1)
                with m.If(ch == self.tiles_c * cols - 1):
                    m.next = "WAIT"
            with m.State("WAIT"):
                m.d.comb += self.busy.eq(1)
                with m.If(at_end):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
        return m
