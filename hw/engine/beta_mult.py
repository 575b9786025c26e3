"""BetaMultiplier: the per-sample requantization multiplier ``M = rshift_round(M_base * beta_fx, 16)``."""

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rootshift.sw import contract as C

from .pipe_mult import PipelinedMultiplier, mult_latency


class BetaMultiplier(wiring.Component):
    """One multiplier, pipelined (``LATENCY`` = 7: registered inputs, a :class:`PipelinedMultiplier`, the
    rounding add, the range check; one carry chain or DSP per stage): ``M = rshift_round(M_base * beta, 16)``
    (``sw.contract.beta_multiplier``) and ``overflow`` when ``|M| >= 2^31`` (the golden model refuses
    such a sample; the engine raises an error flag and never wraps).

    Members
    -------
    m_base : In(signed(23)); beta : In(63); i_valid : In(1)
    m : Out(signed(32)); overflow : Out(1); o_valid : Out(1)
    """

    LATENCY = 3 + mult_latency(C.M_BASE_BITS, 63)    # input register, product, rounding, range check

    def __init__(self):
        super().__init__({"m_base": In(signed(C.M_BASE_BITS)), "beta": In(63), "i_valid": In(1),
                          "m": Out(signed(C.M_BITS)), "overflow": Out(1), "o_valid": Out(1)})

    def elaborate(self, platform):
        m = Module()
        # 0: the inputs registered (m_base comes from a block RAM's read port)
        mb, beta, v0 = Signal(signed(C.M_BASE_BITS)), Signal(63), Signal()
        m.d.sync += [mb.eq(self.m_base), beta.eq(self.beta), v0.eq(self.i_valid)]
        # 1 ..: the product, 18x18 partial products and an adder tree
        m.submodules.mul = mul = PipelinedMultiplier(signed(C.M_BASE_BITS), unsigned(63))
        m.d.comb += [mul.a.eq(mb), mul.b.eq(beta), mul.i_valid.eq(v0)]
        # rounding: one carry chain
        full, v_r = Signal(signed(C.M_BASE_BITS + 64)), Signal()
        m.d.sync += [full.eq((mul.p + (1 << (C.FINE_FRAC - 1))) >> C.FINE_FRAC), v_r.eq(mul.o_valid)]
        # |M| >= 2^31 by the bits above bit 30 (OR/AND trees, no magnitude compare): it fits 32 signed bits
        # iff they all equal the sign, and -2^31 (high bits all one, the rest zero) is out too
        high = full[C.M_BITS - 1:]
        fits = high.all() | ~high.any()
        m.d.sync += [self.m.eq(full[:C.M_BITS]), self.overflow.eq(~fits | (high.all() & ~full[:C.M_BITS - 1].any())),
                     self.o_valid.eq(v_r)]
        return m
