"""Formal harness: the ``Requantizer`` pipeline against the contract's requantization in wide arithmetic."""

from amaranth.hdl import Assert, Assume, Elaboratable, Module, Signal, signed

from rootshift.hw import requantizer as RQ
from rootshift.hw.params import BIAS_BITS, M_BITS, OUT_BITS

WIDE = 140  # bits of the reference: |acc*M| < 2^61 each, |B| < 2^63, no wrap anywhere


class RequantizerHarness(Elaboratable):
    """Free ``acc0``, ``acc1``, ``m0``, ``m1``, ``B`` (signed 64), ``S``, ``relu``, ``i_valid`` every cycle.

    The harness computes, at the input, the contract's
    ``y = clamp(floor((acc0*M0 [+ acc1*M1] + B + 2^(S-1)) / 2^S), lo, 2^31 - 1)`` in ``WIDE``-bit arithmetic
    (``lo = 0`` under ReLU, else ``-2^31``), delays it by ``Requantizer.LATENCY`` cycles and asserts
    ``o_valid`` equal to the delayed ``i_valid`` and, when valid, ``y`` equal to the delayed reference.

    A Requantizer with :func:`fold_rounding` takes ``B + 2^(S-1)`` as its bias: the harness feeds it that
    (assuming it fits 64 signed bits, as ``fold_rounding`` checks) and allows ``S = 0``; the older one
    takes ``B`` and ``S`` in ``1..63`` (the protocol's CONFIG range).

    The products ``acc*M`` are the one primitive shared with the design: the harness uses the same
    exact-width product (Yosys merges the two identical ``$mul`` cells), so the proof covers widths,
    sign extension, the sum, bias, rounding, shift, ReLU, saturation and the pipeline alignment, and
    trusts ``$mul`` to be the exact integer product. ``mutant``: ``"half"`` rounds half down in the
    reference (``2^(S-1) - 1``); ``"relu"`` forgets the ReLU floor.
    """

    def __init__(self, acc_bits, n_acc, mutant=None):
        if mutant not in (None, "half", "relu"):
            raise ValueError(f"unknown requantizer mutant {mutant!r}")
        self.acc_bits, self.n_acc, self.mutant = acc_bits, n_acc, mutant
        self.folded = hasattr(RQ, "fold_rounding")
        self.acc0, self.acc1 = Signal(signed(acc_bits)), Signal(signed(acc_bits))
        self.m0, self.m1 = Signal(signed(M_BITS)), Signal(signed(M_BITS))
        self.b = Signal(signed(BIAS_BITS))
        self.s = Signal(range(64))
        self.relu, self.i_valid = Signal(), Signal()

    def ports(self):
        return [self.acc0, self.acc1, self.m0, self.m1, self.b, self.s, self.relu, self.i_valid]

    def elaborate(self, platform):
        m = Module()
        m.submodules.rq = rq = RQ.Requantizer(self.acc_bits, self.n_acc)
        lat = RQ.Requantizer.LATENCY

        half = Signal(signed(WIDE))
        m.d.comb += half.eq((Signal(signed(WIDE), init=1) << self.s) >> 1)
        m.d.comb += Assume(self.s >= (0 if self.folded else 1))
        bias_in = Signal(signed(BIAS_BITS + 2))
        if self.folded:
            m.d.comb += bias_in.eq(self.b + half)
            m.d.comb += Assume((bias_in >= -(1 << (BIAS_BITS - 1))) & (bias_in < (1 << (BIAS_BITS - 1))))
        else:
            m.d.comb += bias_in.eq(self.b)
        m.d.comb += [rq.acc0.eq(self.acc0), rq.m0.eq(self.m0), rq.bias.eq(bias_in[:BIAS_BITS]),
                     rq.shift.eq(self.s), rq.relu.eq(self.relu), rq.i_valid.eq(self.i_valid)]
        if self.n_acc == 2:
            m.d.comb += [rq.acc1.eq(self.acc1), rq.m1.eq(self.m1)]

        # the reference, at the input
        pw = self.acc_bits + M_BITS
        p0, p1 = Signal(signed(pw)), Signal(signed(pw))
        m.d.comb += p0.eq(self.acc0 * self.m0)
        if self.n_acc == 2:
            m.d.comb += p1.eq(self.acc1 * self.m1)
        rnd = half - 1 if self.mutant == "half" else half
        total, q = Signal(signed(WIDE)), Signal(signed(WIDE))
        m.d.comb += [total.eq(p0 + p1 + self.b + rnd), q.eq(total >> self.s)]
        lo = Signal(signed(WIDE))
        m.d.comb += lo.eq(-(1 << (OUT_BITS - 1)))
        if self.mutant != "relu":
            with m.If(self.relu):
                m.d.comb += lo.eq(0)
        ref = Signal(signed(OUT_BITS))
        with m.If(q > (1 << (OUT_BITS - 1)) - 1):
            m.d.comb += ref.eq((1 << (OUT_BITS - 1)) - 1)
        with m.Elif(q < lo):
            m.d.comb += ref.eq(lo)
        with m.Else():
            m.d.comb += ref.eq(q)

        # delay it by the pipeline's latency
        refs, valids = [ref], [self.i_valid]
        for i in range(lat):
            r, v = Signal(signed(OUT_BITS), name=f"ref_d{i + 1}"), Signal(name=f"valid_d{i + 1}")
            m.d.sync += [r.eq(refs[-1]), v.eq(valids[-1])]
            refs.append(r)
            valids.append(v)
        m.d.comb += [Assert(rq.o_valid == valids[-1], "o_valid is i_valid delayed by LATENCY"),
                     Assert(~rq.o_valid | (rq.y == refs[-1]), "y equals the contract's requantization")]
        return m
