"""StepDivider: the per-sample activation multiplier ``R = min(rdiv(K_s, beta_fx), 2^31 - 1)``."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rootshift.sw import contract as C

N_BITS = 64      # 2*K_s + beta < 2^63 (contract: K_s <= 2^61 - 1)


class StepDivider(wiring.Component):
    """``rdiv(a, b) = floor((2a + b) / (2b))`` by restoring division, one quotient bit per cycle
    (``CYCLES`` = 64 from ``start`` to ``done``), then saturation at ``R_MAX = 2^31 - 1``
    (``sw.contract.step_multiplier``). ``beta`` below 1 is taken as 1, as the contract does.

    Members
    -------
    k_step : In(62)          -- K_s = round(2^40 / s)
    beta : In(63)            -- beta_fx of the sample (fine units)
    start : In(1)
    r : Out(31)              -- valid while ``done``
    done : Out(1)            -- one cycle
    busy : Out(1)
    """

    CYCLES = N_BITS + 1

    def __init__(self):
        super().__init__({"k_step": In(62), "beta": In(63), "start": In(1),
                          "r": Out(31), "done": Out(1), "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        num = Signal(N_BITS)                 # shifts left as quotient bits enter at the bottom
        rem = Signal(N_BITS + 1)
        den = Signal(N_BITS)
        n = Signal(range(N_BITS + 1))
        q = Signal(N_BITS)
        beta1 = Signal(63)
        m.d.comb += beta1.eq(self.beta | (self.beta == 0))
        trial = Signal(N_BITS + 1)
        m.d.comb += trial.eq(Cat(num[N_BITS - 1], rem))   # (rem << 1) | next numerator bit
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [num.eq((self.k_step << 1) + beta1), den.eq(beta1 << 1), rem.eq(0), q.eq(0), n.eq(0)]
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += self.busy.eq(1)
                with m.If(trial >= den):
                    m.d.sync += [rem.eq(trial - den), q.eq((q << 1) | 1)]
                with m.Else():
                    m.d.sync += [rem.eq(trial), q.eq(q << 1)]
                m.d.sync += [num.eq(num << 1), n.eq(n + 1)]
                with m.If(n == N_BITS - 1):
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += [self.done.eq(1), self.r.eq(Mux(q > C.R_MAX, C.R_MAX, q))]
                m.next = "IDLE"
        return m

