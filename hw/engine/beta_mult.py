"""BetaMultiplier: the per-sample requantization multiplier ``M = rshift_round(M_base * beta_fx, 16)``."""

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rootshift.sw import contract as C

from .pipe_mult import PipelinedMultiplier, delayed, mult_latency

# beta's bits that reach the DSPs: with M_base != 0 a beta >= 2^47 always overflows (|M_base * beta| >= 2^47,
# so |M| >= 2^31), so bits 47..62 only raise ``overflow``: 6 partial products instead of 8 (issue 9, Fmax)
BETA_MUL_BITS = C.FINE_FRAC + C.M_BITS - 1


class BetaMultiplier(wiring.Component):
    """One multiplier, pipelined (``LATENCY`` = 7: registered inputs, a :class:`PipelinedMultiplier`, the
    rounding add, the range check; one carry chain or DSP per stage): ``M = rshift_round(M_base * beta, 16)``
    (``sw.contract.beta_multiplier``) and ``overflow`` when ``|M| >= 2^31`` (the golden model refuses
    such a sample; the engine raises an error flag and never wraps). Only ``beta``'s low
    ``BETA_MUL_BITS`` = 47 bits are multiplied; a higher bit with ``M_base != 0`` is an overflow by itself.

    ``beta_en`` loads the beta register (default: every cycle). :class:`MultSetup` drives its
    multipliers' enables from different signals, so synthesis keeps one beta register per multiplier,
    placed next to its DSPs, instead of merging them into one register that fans out to all of them
    (the ULX3S-85F build's critical path, 4.9 ns of routing into a MULT18X18D; issue 9).

    Members
    -------
    m_base : In(signed(23)); beta : In(63); beta_en : In(1, init=1); i_valid : In(1)
    m : Out(signed(32)); overflow : Out(1); o_valid : Out(1)
    """

    LATENCY = 3 + mult_latency(C.M_BASE_BITS, BETA_MUL_BITS)    # input register, product, rounding, range check

    def __init__(self):
        super().__init__({"m_base": In(signed(C.M_BASE_BITS)), "beta": In(63), "beta_en": In(1, init=1),
                          "i_valid": In(1), "m": Out(signed(C.M_BITS)), "overflow": Out(1), "o_valid": Out(1)})

    def elaborate(self, platform):
        m = Module()
        # 0: the inputs registered (m_base comes from a block RAM's read port)
        mb = Signal(signed(C.M_BASE_BITS))
        beta = Signal(BETA_MUL_BITS)
        v0 = Signal()
        beta_hi = Signal()                      # beta >= 2^47
        m.d.sync += [mb.eq(self.m_base), v0.eq(self.i_valid)]
        with m.If(self.beta_en):
            m.d.sync += [beta.eq(self.beta[:BETA_MUL_BITS]), beta_hi.eq(self.beta[BETA_MUL_BITS:].any())]
        # 1 ..: the product, 18x18 partial products and an adder tree; beside it, whether the dropped bits
        # overflow (beta >= 2^47 and M_base != 0)
        m.submodules.mul = mul = PipelinedMultiplier(signed(C.M_BASE_BITS), unsigned(BETA_MUL_BITS))
        m.d.comb += [mul.a.eq(mb), mul.b.eq(beta), mul.i_valid.eq(v0)]
        big = delayed(m, beta_hi & mb.any(), mul.latency + 1, "big")      # to the rounding stage's output
        # rounding: one carry chain
        full = Signal(signed(C.M_BASE_BITS + BETA_MUL_BITS + 1))
        v_r = Signal()
        m.d.sync += [full.eq((mul.p + (1 << (C.FINE_FRAC - 1))) >> C.FINE_FRAC), v_r.eq(mul.o_valid)]
        # |M| >= 2^31 by the bits above bit 30 (OR/AND trees, no magnitude compare): it fits 32 signed bits
        # iff they all equal the sign, and -2^31 (high bits all one, the rest zero) is out too
        high = full[C.M_BITS - 1:]
        fits = high.all() | ~high.any()
        m.d.sync += [self.m.eq(full[:C.M_BITS]), self.overflow.eq(big | ~fits | (high.all() & ~full[:C.M_BITS - 1].any())),
                     self.o_valid.eq(v_r)]
        return m
