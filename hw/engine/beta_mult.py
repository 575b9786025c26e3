"""BetaMultiplier: the per-sample requantization multiplier ``M = rshift_round(M_base * beta_fx, 16)``."""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rootshift.sw import contract as C


class BetaMultiplier(wiring.Component):
    """One multiplier, pipelined (``LATENCY`` = 2): ``M = rshift_round(M_base * beta, 16)``
    (``sw.contract.beta_multiplier``) and ``overflow`` when ``|M| >= 2^31`` (the golden model refuses
    such a sample; the engine raises an error flag and never wraps).

    Members
    -------
    m_base : In(signed(23)); beta : In(63); i_valid : In(1)
    m : Out(signed(32)); overflow : Out(1); o_valid : Out(1)
    """

    LATENCY = 2

    def __init__(self):
        super().__init__({"m_base": In(signed(C.M_BASE_BITS)), "beta": In(63), "i_valid": In(1),
                          "m": Out(signed(C.M_BITS)), "overflow": Out(1), "o_valid": Out(1)})

    def elaborate(self, platform):
        m = Module()
        prod = Signal(signed(C.M_BASE_BITS + 64))
        v1 = Signal()
        m.d.sync += [prod.eq(self.m_base * self.beta.as_unsigned()), v1.eq(self.i_valid), self.o_valid.eq(v1)]
        full = Signal(signed(C.M_BASE_BITS + 64))
        m.d.comb += full.eq((prod + (1 << (C.FINE_FRAC - 1))) >> C.FINE_FRAC)
        lim = 1 << (C.M_BITS - 1)
        m.d.sync += [self.m.eq(full[:C.M_BITS]), self.overflow.eq((full >= lim) | (full <= -lim))]
        return m
