"""Requantizer: per-channel fixed-point multipliers, bias, rounding shift, ReLU and saturation."""

from amaranth.hdl import Cat, Const, Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .params import BIAS_BITS, M_BITS, OUT_BITS

FINE_MAX = 2 ** (OUT_BITS - 1) - 1
FINE_MIN = -(2 ** (OUT_BITS - 1))


def fold_rounding(bias, shift):
    """The bias the :class:`Requantizer` takes: ``B + 2^(S-1)`` (``B`` for ``S = 0``), an exact Python int.

    ``rshift_round(v + B, S) = floor((v + B + 2^(S-1)) / 2^S)``, so with the half folded in at
    compile time the hardware needs only a floor shift. Raises ``ValueError`` when the folded bias
    leaves the signed 64-bit register (the caller names the layer).
    """
    v = int(bias) + ((1 << (int(shift) - 1)) if shift else 0)
    if not -(1 << (BIAS_BITS - 1)) <= v < 1 << (BIAS_BITS - 1):
        raise ValueError(f"bias {int(bias)} plus the rounding half 2^{int(shift) - 1} is {v}, outside signed {BIAS_BITS} bits")
    return v


class Requantizer(wiring.Component):
    """``y = clamp((acc0*M0 [+ acc1*M1] + bias) >> S, lo, 2^31-1)`` with ``lo = 0`` under ReLU, else ``-2^31``,
    where ``bias = B + 2^(S-1)`` (:func:`fold_rounding`): exactly the contract's
    ``clamp(rshift_round(acc0*M0 [+ acc1*M1] + B, S), lo, 2^31-1)`` (docs/arithmetic.md, "Requantization").

    Fully pipelined, one input per cycle, ``latency`` cycles from ``i_valid`` to ``o_valid``. Two
    pipelines: ``deep=False`` (``LATENCY`` = 5, the tile engine's; issue 9: the 66-bit operations are
    split so no stage holds a 66-bit shift and a 66-bit compare), below, and ``deep=True``
    (``DEEP_LATENCY`` = 9, the network engine's: registered inputs and the multiplier split into 18x18
    partial products, see :meth:`_deep`):

    1. the products (the design's only multipliers: DSPs), from the inputs as they are at the edge
       (the caller registers them: the accelerator feeds a register and a memory read port);
    2. ``p0 + p1`` (one carry chain of ``acc_bits + 33`` bits);
    3. ``+ bias`` (66 bits);
    4. arithmetic shift by ``S & 0x38`` (three multiplexer levels);
    5. shift by ``S & 7`` and saturation by checking the bits above bit 30 against the sign (OR/AND
       trees, no magnitude compare), ReLU floor.

    Members
    -------
    acc0, acc1 : In(signed(acc_bits))  -- acc1 only with ``n_acc == 2`` (dual mode's odd accumulator)
    m0, m1 : In(signed(32))
    bias : In(signed(64))              -- B + 2^(S-1), see :func:`fold_rounding`
    shift : In(range(64))              -- S, 0..63
    relu : In(1)
    i_valid : In(1)
    y : Out(signed(32))                -- a register
    o_valid : Out(1)
    """

    LATENCY = 5          # the tile engine's requantizer (``deep=False``)
    DEEP_LATENCY = 9     # the network engine's (``deep=True``)
    LIMB = 17            # an unsigned limb of a multiplier operand: 17 bits plus a sign fit an 18x18 DSP

    def __init__(self, acc_bits, n_acc=1, deep=False, consts_registered=False):
        if isinstance(acc_bits, bool) or not isinstance(acc_bits, int) or acc_bits < 2:
            raise TypeError(f"Accumulator width must be an integer >= 2, not {acc_bits!r}")
        if n_acc not in (1, 2):
            raise TypeError(f"Accumulator count must be 1 or 2, not {n_acc!r}")
        if not isinstance(deep, bool):
            raise TypeError(f"deep must be True or False, not {deep!r}")
        if not isinstance(consts_registered, bool) or (consts_registered and not deep):
            raise TypeError(f"consts_registered must be True or False, and True only with deep=True, "
                            f"not {consts_registered!r}")
        self.acc_bits, self.n_acc, self.deep, self.consts_registered = acc_bits, n_acc, deep, consts_registered
        self.latency = (self.DEEP_LATENCY + consts_registered) if deep else self.LATENCY
        super().__init__({
            "acc0": In(signed(acc_bits)), "acc1": In(signed(acc_bits)),
            "m0": In(signed(M_BITS)), "m1": In(signed(M_BITS)), "bias": In(signed(BIAS_BITS)),
            "shift": In(range(64)), "relu": In(1), "i_valid": In(1),
            "y": Out(signed(OUT_BITS)), "o_valid": Out(1),
        })

    def _carry(self, m, stage, **sigs):
        """Register ``sigs`` (name -> value) into fresh signals of stage ``stage``; returns them."""
        out = {}
        for name, v in sigs.items():
            r = Signal(v.shape(), name=f"{name}_{stage}")
            m.d.sync += r.eq(v)
            out[name] = r
        return out

    def elaborate(self, platform):
        return self._deep() if self.deep else self._shallow()

    def _shallow(self):
        m = Module()
        pw = self.acc_bits + M_BITS                            # one product
        W = max(pw + 1, BIAS_BITS) + 2                          # the exact sum (66 bits for 30-bit accumulators)
        # 1: products
        p0, p1 = Signal(signed(pw), name="p0_1"), Signal(signed(pw), name="p1_1")
        m.d.sync += p0.eq(self.acc0 * self.m0)
        if self.n_acc == 2:
            m.d.sync += p1.eq(self.acc1 * self.m1)
        c1 = self._carry(m, 1, b=self.bias, s=self.shift, r=self.relu, v=self.i_valid)
        # 2: p0 + p1
        t2 = Signal(signed(pw + 1), name="psum_2")
        m.d.sync += t2.eq(p0 + p1)
        c2 = self._carry(m, 2, b=c1["b"], s=c1["s"], r=c1["r"], v=c1["v"])
        # 3: + bias
        total = Signal(signed(W), name="total_3")
        m.d.sync += total.eq(t2 + c2["b"])
        c3 = self._carry(m, 3, s=c2["s"], r=c2["r"], v=c2["v"])
        # 4: coarse arithmetic shift
        sh4 = Signal(signed(W), name="shifted_4")
        m.d.sync += sh4.eq(total >> Cat(Const(0, 3), c3["s"][3:6]))
        c4 = self._carry(m, 4, f=c3["s"][0:3], r=c3["r"], v=c3["v"])
        # 5: fine shift; the result fits 32 signed bits iff its bits 31.. all equal its sign
        v = Signal(signed(W), name="shifted_5")
        m.d.comb += v.eq(sh4 >> c4["f"])
        self._saturate(m, v, sh4[-1], c4)
        return m

    def _saturate(self, m, v, neg, c):
        """The last stage of both pipelines: ``v`` (sign ``neg``) to 32 bits. It fits iff its bits 31.. all
        equal its sign; else FINE_MAX or FINE_MIN, and a negative value under ReLU (``c["r"]``) is 0."""
        high = v[OUT_BITS - 1:]
        y = Signal(signed(OUT_BITS))
        with m.If(~neg & high.any()):
            m.d.sync += y.eq(FINE_MAX)
        with m.Elif(neg & c["r"]):
            m.d.sync += y.eq(0)
        with m.Elif(neg & ~high.all()):
            m.d.sync += y.eq(FINE_MIN)
        with m.Else():
            m.d.sync += y.eq(v[:OUT_BITS])
        m.d.sync += self.o_valid.eq(c["v"])
        m.d.comb += self.y.eq(y)

    def _limb_product(self, m, a, mv, idx):
        """Stage 1 of the deep pipeline: ``a * mv`` as registered 18x18 partial products, and stage 2: the
        products at shift 0 and 34 concatenated (they do not overlap), the two at shift 17 summed. Returns
        ``(x, y)`` with ``a * mv == x + (y << 17)``. Accumulators wider than two limbs multiply whole
        (correct, one DSP cascade and its adders in one stage)."""
        L = self.LIMB
        pw = self.acc_bits + M_BITS
        if self.acc_bits > 2 * L + 1:
            p = Signal(signed(pw), name=f"p{idx}_1")
            m.d.sync += p.eq(a * mv)
            x = Signal(signed(pw), name=f"x{idx}_2")
            m.d.sync += x.eq(p)
            return x, Const(0, 1)
        a_ext = Signal(signed(max(self.acc_bits, L + 1)), name=f"a{idx}_ext")
        m.d.comb += a_ext.eq(a)
        a_lo, a_hi = a_ext[:L], a_ext[L:].as_signed()
        m_lo, m_hi = mv[:L], mv[L:].as_signed()
        ll = Signal(2 * L, name=f"ll{idx}_1")
        lh = Signal(signed(L + len(m_hi) + 1), name=f"lh{idx}_1")
        hl = Signal(signed(len(a_hi) + L + 1), name=f"hl{idx}_1")
        hh = Signal(signed(len(a_hi) + len(m_hi)), name=f"hh{idx}_1")
        m.d.sync += [ll.eq(a_lo * m_lo), lh.eq(a_lo * m_hi), hl.eq(a_hi * m_lo), hh.eq(a_hi * m_hi)]
        x = Signal(signed(2 * L + len(hh)), name=f"x{idx}_2")
        y = Signal(signed(max(len(lh), len(hl)) + 1), name=f"y{idx}_2")
        m.d.sync += [x.eq(Cat(ll, hh)), y.eq(lh + hl)]
        return x, y

    def _deep(self):
        """The network engine's pipeline (``deep=True``, ``DEEP_LATENCY`` = 9): no stage holds more than
        one carry chain, a DSP or a multiplexer tree, so it closes at ECP5 speeds:

        0. every input registered (the requantization word comes from a block RAM's read port); with
           ``consts_registered=True`` ``m0``, ``m1`` and ``bias`` come a cycle after the other inputs (from a
           ``RegisteredMemory``: the block RAM's output register, far from the DSPs), and those wait a stage
           for them: ``latency`` = ``DEEP_LATENCY + 1``, every stage after it the same;
        1. 18x18 partial products (DSPs); 2. the shift-0 and shift-34 products concatenated, the shift-17
           ones added; 3. ``x + (y << 17)`` per accumulator; 4. ``p0 + p1``; 5. ``+ bias`` (66 bits);
        6. arithmetic shift by ``S & 0x38``; 7. shift by ``S & 7``;
        8. saturation by the bits above bit 30 against the sign (OR/AND trees), ReLU floor.
        """
        m = Module()
        pw = self.acc_bits + M_BITS
        W = max(pw + 1, BIAS_BITS) + 2
        if self.consts_registered:    # m0, m1, bias arrive a cycle after the rest: the rest waits a stage for them
            pre = self._carry(m, "pre", a0=self.acc0, a1=self.acc1, s=self.shift, r=self.relu, v=self.i_valid)
            c0 = self._carry(m, 0, m0=self.m0, m1=self.m1, b=self.bias, **pre)
        else:
            c0 = self._carry(m, 0, a0=self.acc0, a1=self.acc1, m0=self.m0, m1=self.m1, b=self.bias, s=self.shift,
                             r=self.relu, v=self.i_valid)
        pairs = [self._limb_product(m, c0["a0"], c0["m0"], 0)]
        if self.n_acc == 2:
            pairs.append(self._limb_product(m, c0["a1"], c0["m1"], 1))
        c2 = self._carry(m, 2, **self._carry(m, 1, b=c0["b"], s=c0["s"], r=c0["r"], v=c0["v"]))
        prods = []
        for i, (x, y) in enumerate(pairs):
            p = Signal(signed(pw), name=f"p{i}_3")
            m.d.sync += p.eq(x + (y << self.LIMB))
            prods.append(p)
        c3 = self._carry(m, 3, **c2)
        t4 = Signal(signed(pw + 1), name="psum_4")
        m.d.sync += t4.eq(prods[0] + prods[1] if len(prods) == 2 else prods[0])
        c4 = self._carry(m, 4, **c3)
        total = Signal(signed(W), name="total_5")
        m.d.sync += total.eq(t4 + c4["b"])
        c5 = self._carry(m, 5, s=c4["s"], r=c4["r"], v=c4["v"])
        sh6 = Signal(signed(W), name="shifted_6")
        m.d.sync += sh6.eq(total >> Cat(Const(0, 3), c5["s"][3:6]))
        c6 = self._carry(m, 6, f=c5["s"][0:3], r=c5["r"], v=c5["v"])
        v = Signal(signed(W), name="shifted_7")
        m.d.sync += v.eq(sh6 >> c6["f"])
        c7 = self._carry(m, 7, r=c6["r"], v=c6["v"])
        self._saturate(m, v, v[-1], c7)
        return m
