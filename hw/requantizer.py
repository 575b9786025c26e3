"""Requantizer: per-channel fixed-point multipliers, bias, rounding shift, ReLU and saturation."""

from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .params import BIAS_BITS, M_BITS, OUT_BITS

FINE_MAX = 2 ** (OUT_BITS - 1) - 1
FINE_MIN = -(2 ** (OUT_BITS - 1))


class Requantizer(wiring.Component):
    """``y = clamp(rshift_round(acc0*M0 [+ acc1*M1] + B, S), lo, 2^31-1)`` with ``lo = 0`` under ReLU,
    else ``-2^31`` (docs/arithmetic.md, "Requantization"). ``rshift_round`` rounds half up.

    Three pipeline stages (products; sum and rounding constant; shift and clamp): ``LATENCY`` cycles from
    ``i_valid`` to ``o_valid``. The multipliers are the only ones in the design (DSPs belong here).

    Members
    -------
    acc0, acc1 : In(signed(acc_bits))  -- acc1 only with ``n_acc == 2`` (dual mode's odd accumulator)
    m0, m1 : In(signed(32))
    bias : In(signed(64))
    shift : In(range(64))              -- S, 1..63
    relu : In(1)
    i_valid : In(1)
    y : Out(signed(32))
    o_valid : Out(1)
    """

    LATENCY = 3

    def __init__(self, acc_bits, n_acc=1):
        if isinstance(acc_bits, bool) or not isinstance(acc_bits, int) or acc_bits < 2:
            raise TypeError(f"Accumulator width must be an integer >= 2, not {acc_bits!r}")
        if n_acc not in (1, 2):
            raise TypeError(f"Accumulator count must be 1 or 2, not {n_acc!r}")
        self.acc_bits, self.n_acc = acc_bits, n_acc
        super().__init__({
            "acc0": In(signed(acc_bits)), "acc1": In(signed(acc_bits)),
            "m0": In(signed(M_BITS)), "m1": In(signed(M_BITS)), "bias": In(signed(BIAS_BITS)),
            "shift": In(range(64)), "relu": In(1), "i_valid": In(1),
            "y": Out(signed(OUT_BITS)), "o_valid": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        pw = self.acc_bits + M_BITS
        sw_ = max(pw + 1, BIAS_BITS) + 2
        # stage 1: products (and carry the per-output controls)
        p0, p1 = Signal(signed(pw)), Signal(signed(pw))
        b1, s1, r1, v1 = Signal(signed(BIAS_BITS)), Signal(range(64)), Signal(), Signal()
        m.d.sync += [p0.eq(self.acc0 * self.m0), b1.eq(self.bias), s1.eq(self.shift), r1.eq(self.relu),
                     v1.eq(self.i_valid)]
        if self.n_acc == 2:
            m.d.sync += p1.eq(self.acc1 * self.m1)
        # stage 2: sum, plus half an LSB of the shift
        total, s2, r2, v2 = Signal(signed(sw_)), Signal(range(64)), Signal(), Signal()
        half = Signal(signed(sw_))
        m.d.comb += half.eq((Const(1, sw_) << s1) >> 1)  # 2^(S-1), and 0 for S = 0
        m.d.sync += [total.eq(p0 + p1 + b1 + half), s2.eq(s1), r2.eq(r1), v2.eq(v1)]
        # stage 3: arithmetic shift (floor), ReLU floor, saturation to 32 bits
        shifted = Signal(signed(sw_))
        m.d.comb += shifted.eq(total >> s2)
        lo = Mux(r2, 0, FINE_MIN)
        y = Signal(signed(OUT_BITS))
        with m.If(shifted > FINE_MAX):
            m.d.sync += y.eq(FINE_MAX)
        with m.Elif(shifted < lo):
            m.d.sync += y.eq(lo)
        with m.Else():
            m.d.sync += y.eq(shifted)
        m.d.sync += self.o_valid.eq(v2)
        m.d.comb += self.y.eq(y)
        return m
