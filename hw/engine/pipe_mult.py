"""PipelinedMultiplier: a wide product at DSP speed, one per cycle (the engine's Fmax, issue 9)."""

from amaranth.hdl import Cat, Const, Module, Shape, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

LIMB = 17      # an unsigned limb: 17 bits plus a sign fit an 18x18 DSP (ECP5 MULT18X18D, iCE40 SB_MAC16 16x16 pairs)


def _limbs(value, shape):
    """``value`` cut into ``LIMB``-bit pieces, low first; the top piece signed for a signed operand."""
    w = shape.width
    out = []
    for lo in range(0, w, LIMB):
        piece = value[lo:min(lo + LIMB, w)]
        out.append((piece.as_signed() if shape.signed and lo + LIMB >= w else piece, lo))
    return out


def delayed(m, sig, n, name):
    """``sig`` ``n`` cycles later, through ``n`` registers named ``name_0 ..``: a control or an operand that
    travels beside a pipelined product."""
    for i in range(n):
        r = Signal.like(sig, name=f"{name}_{i}")
        m.d.sync += r.eq(sig)
        sig = r
    return sig


def mult_latency(a_width, b_width):
    """Cycles of a :class:`PipelinedMultiplier` for operands of these widths."""
    n = -(-a_width // LIMB) * -(-b_width // LIMB)
    return 1 + max(0, (n - 1).bit_length())


class PipelinedMultiplier(wiring.Component):
    """``p = a * b``, exact, for operands wider than one DSP: every ``LIMB x LIMB`` partial product is a
    registered 18x18 multiplication (one DSP, no adder behind it in the same cycle), then a binary adder
    tree sums them with one carry chain per stage (two terms that do not overlap are concatenated,
    not added). One product per cycle; ``latency`` = 1 + ceil(log2(partial products)) cycles from
    ``i_valid`` to ``o_valid``. The inputs are taken as they are at the edge (the caller registers them).

    Members
    -------
    a : In(a_shape); b : In(b_shape); i_valid : In(1)
    p : Out(signed(a.width + b.width))   -- a register
    o_valid : Out(1)
    """

    def __init__(self, a_shape, b_shape):
        self.a_shape, self.b_shape = Shape.cast(a_shape), Shape.cast(b_shape)
        for name, s in (("a", self.a_shape), ("b", self.b_shape)):
            if s.width < 1:
                raise TypeError(f"Multiplier operand {name} must be at least 1 bit wide, not {s.width}")
        self.latency = mult_latency(self.a_shape.width, self.b_shape.width)
        super().__init__({"a": In(self.a_shape), "b": In(self.b_shape), "i_valid": In(1),
                          "p": Out(signed(self.a_shape.width + self.b_shape.width)), "o_valid": Out(1)})

    def elaborate(self, platform):
        m = Module()
        terms = []
        for i, (ai, sa) in enumerate(_limbs(self.a, self.a_shape)):
            for j, (bj, sb) in enumerate(_limbs(self.b, self.b_shape)):
                prod = ai * bj
                r = Signal(prod.shape(), name=f"pp{i}_{j}")
                m.d.sync += r.eq(prod)
                terms.append((r, sa + sb))
        valid = Signal(name="v_pp")
        m.d.sync += valid.eq(self.i_valid)
        level = 0
        while len(terms) > 1:
            terms.sort(key=lambda t: t[1])
            nxt = []
            for k in range(0, len(terms) - 1, 2):
                nxt.append(self._node(m, terms[k], terms[k + 1], f"s{level}_{k // 2}"))
            if len(terms) % 2:
                last = Signal(terms[-1][0].shape(), name=f"s{level}_pass")
                m.d.sync += last.eq(terms[-1][0])
                nxt.append((last, terms[-1][1]))
            v = Signal(name=f"v_s{level}")
            m.d.sync += v.eq(valid)
            terms, valid, level = nxt, v, level + 1
        (root, shift), = terms
        m.d.comb += [self.p.eq(root << shift), self.o_valid.eq(valid)]
        return m

    @staticmethod
    def _node(m, lo, hi, name):
        """``lo + (hi << (hi.shift - lo.shift))``, registered: a concatenation where they do not overlap."""
        (a, sa), (b, sb) = lo, hi
        ds = sb - sa
        if not a.shape().signed and len(a) <= ds:
            value = Cat(a, Const(0, ds - len(a)), b)         # zeros between, hi on top: no carry chain
            value = value.as_signed() if b.shape().signed else value
            width = ds + len(b)
            shape = signed(width) if b.shape().signed else width
        else:
            value = a + (b << ds)
            shape = value.shape()
        r = Signal(shape, name=name)
        m.d.sync += r.eq(value)
        return r, sa
