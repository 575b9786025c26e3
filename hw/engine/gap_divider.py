"""GapDivider: ``rdiv(sum, n)`` for the global average (GAP, avgpool) over any count ``n``, one quotient bit
per cycle."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


class GapDivider(wiring.Component):
    """``q = rdiv(sum, n) = floor((2 sum + n) / (2n))`` (docs/arithmetic.md: round half up, ``sum`` of
    either sign), exactly, for a runtime count ``n >= 1``.

    The mean of ``n`` signed ``q_bits``-bit values is itself a signed ``q_bits``-bit value, so the
    unsigned quotient below needs only ``q_bits - 1`` bits (not the numerator's ``sum_bits + 2``):

    * ``N = 2 sum + n`` and ``D = 2n``. For ``N < 0``, ``floor(N / D) = ~floor(~N / D)`` (``~N = -N - 1
      >= 0``): the numerator and the quotient are inverted, the division itself is unsigned.
    * ``|quotient| < 2^(q_bits - 1)`` gives ``U >> (q_bits - 1) < D``: that is the restoring division's
      first remainder, and ``q_bits - 1`` steps of a ``count_bits + 2``-bit compare-subtract shift in the
      rest of ``U`` (quotient bits enter where numerator bits leave).

    Cycles from ``start`` to ``done``: ``CYCLES = q_bits + 1`` (the operands are registered, then ``N`` is
    formed and registered, then ``q_bits - 1`` steps). Every step is a registered compare-subtract of
    ``count_bits + 2`` bits: no wide carry chain besides the one ``2 sum + n`` cycle.

    Exact whenever ``sum`` is a sum of ``n`` signed ``q_bits``-bit values (the engine's GAP and average
    pool: ``n = H*W`` fine words); ``n = 0`` is not a count (the quotient is then meaningless).

    Members
    -------
    sum : In(signed(sum_bits))   -- sampled with ``start``
    n : In(count_bits)           -- sampled with ``start``
    start : In(1)                -- while idle
    q : Out(signed(q_bits))      -- valid while ``done``
    done : Out(1)                -- one cycle
    busy : Out(1)
    """

    def __init__(self, sum_bits=56, count_bits=24, q_bits=32):
        for name, v in (("Sum width", sum_bits), ("Count width", count_bits), ("Quotient width", q_bits)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 2:
                raise TypeError(f"{name} must be an integer of at least 2 bits, not {v!r}")
        if sum_bits < q_bits + count_bits:
            raise ValueError(f"Sum width must hold n values of {q_bits} bits with n of {count_bits} bits: "
                             f"at least {q_bits + count_bits} bits, not {sum_bits}")
        self.sum_bits, self.count_bits, self.q_bits = sum_bits, count_bits, q_bits
        self.steps = q_bits - 1
        self.CYCLES = self.cycles(q_bits)
        super().__init__({"sum": In(signed(sum_bits)), "n": In(count_bits), "start": In(1),
                          "q": Out(signed(q_bits)), "done": Out(1), "busy": Out(1)})

    @staticmethod
    def cycles(q_bits=32):
        """``start`` to ``done``: the operand register, ``N``'s register, ``q_bits - 1`` quotient steps."""
        return q_bits + 1

    def elaborate(self, platform):
        m = Module()
        S = self.steps
        a_q = Signal(signed(self.sum_bits))
        n_q = Signal(self.count_bits)
        den = Signal(self.count_bits + 1)          # D = 2n
        rem = Signal(self.count_bits + 1)          # < D
        low = Signal(S)                            # U's low bits, then the quotient
        neg = Signal()
        step = Signal(range(max(2, S)))
        big = Signal(signed(self.sum_bits + 2))    # N = 2 sum + n
        u = Signal(self.sum_bits + 1)              # N, or ~N for N < 0
        m.d.comb += [big.eq((a_q << 1) + n_q), u.eq(Mux(big[-1], ~big, big))]
        trial = Signal(self.count_bits + 2)
        diff = Signal(signed(self.count_bits + 3))
        m.d.comb += [trial.eq(Cat(low[-1], rem)), diff.eq(trial - den)]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [a_q.eq(self.sum), n_q.eq(self.n)]
                    m.next = "PREP"
            with m.State("PREP"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [den.eq(n_q << 1), neg.eq(big[-1]), rem.eq(u[S:]), low.eq(u[:S]), step.eq(0)]
                m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += self.busy.eq(1)
                ge = ~diff[-1]
                m.d.sync += [rem.eq(Mux(ge, diff, trial)), low.eq(Cat(ge, low[:-1])), step.eq(step + 1)]
                with m.If(step == S - 1):
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += [self.done.eq(1), self.q.eq(Mux(neg, ~Cat(low, Const(0, 1)), Cat(low, Const(0, 1))))]
                m.next = "IDLE"
        return m
