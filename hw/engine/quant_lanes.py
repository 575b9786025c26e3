"""QuantLanes: fine values to activation codes, one word of ``lanes`` channels per cycle."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from rootshift.sw import contract as C

from .pipe_mult import PipelinedMultiplier, mult_latency
from .params import check_lanes

SCHEMES = ("linear", "shift")


def check_schemes(schemes):
    """A non-empty tuple drawn from :data:`SCHEMES` (which quantizers the hardware is built with)."""
    if isinstance(schemes, str) or not isinstance(schemes, (tuple, list)) or not schemes \
            or any(s not in SCHEMES for s in schemes) or len(set(schemes)) != len(schemes):
        raise TypeError(f"schemes must be a non-empty tuple of distinct {', '.join(SCHEMES)}, not {schemes!r}")
    return tuple(s for s in SCHEMES if s in schemes)


class QuantLanes(wiring.Component):
    """Per lane, a fine value ``X`` to an activation code, in one of two schemes (``shift`` selects):

    * linear (LSQ, ASQ): ``code = clamp(rshift_round(X * R, 40), 0, qmax)`` (docs/arithmetic.md,
      "Activation quantization"; ``sw.contract.quant_codes``). ``R`` is the per-sample multiplier
      (< 2^31), so ``X * R`` fits 63 bits signed. The input registered, the product (18x18 partial
      products, :class:`PipelinedMultiplier`), the rounding half added, the clamp: ``LATENCY`` = 6.
    * shift (shift activations, issue 10): the nearest level of ``{0} U {2^(T - e) : e = 0 .. n}``,
      ties to the larger level (docs/arithmetic.md, "Quantizing a fine value to a shift code";
      ``sw.contract.shift_act_codes``). No multiplier and no divider: stage 1 is a priority encoder
      (``j``, the leading one of ``X``, and the bit below it, which decides the tie at ``1.5 * 2^j``);
      stage 2 subtracts 7-bit exponents and compares them with ``n``: ``p = j + X[j-1]``, ``e = T - p``;
      ``e < 0``: code 1; ``e <= n``: ``e + 1``; else ``n + 1`` if ``j >= T - n - 1`` (tie up), else 0.

    ``schemes`` chooses which paths are built (a shift2 engine needs no multipliers here).

    Members
    -------
    x : In(ArrayLayout(signed(32), lanes))  -- fine values
    r : In(31)                              -- R, held for the whole tensor (linear)
    qmax : In(abits)                        -- 2^bits - 1 of the layer's codes (linear)
    shift : In(1)                           -- 1: the shift scheme
    t : In(signed(8))                       -- T = log2_alpha + 16 (shift; |log2_alpha| <= 64)
    n : In(8)                               -- max_exponent (shift)
    i_valid : In(1)
    codes : Out(lanes * abits)              -- lane ``c`` at bits ``[c*abits +: abits]``
    o_valid : Out(1)
    """

    # input register, the product (PipelinedMultiplier), the rounding add, the clamp
    LATENCY = 3 + mult_latency(32, 31)

    def __init__(self, lanes, abits, schemes=SCHEMES):
        check_lanes(lanes)
        if isinstance(abits, bool) or not isinstance(abits, int) or not 2 <= abits <= 8:
            raise TypeError(f"Activation bits must be an integer in 2..8, not {abits!r}")
        self.lanes, self.abits, self.schemes = lanes, abits, check_schemes(schemes)
        super().__init__({
            "x": In(data.ArrayLayout(signed(32), lanes)), "r": In(31), "qmax": In(abits), "shift": In(1),
            "t": In(signed(8)), "n": In(8), "i_valid": In(1),
            "codes": Out(lanes * abits), "o_valid": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        # 0: the fine values registered (they come from a block RAM's read port)
        x = [Signal(signed(32), name=f"x{c}") for c in range(self.lanes)]
        v0 = Signal()
        m.d.sync += [v0.eq(self.i_valid)] + [x[c].eq(self.x[c]) for c in range(self.lanes)]
        valid = [v0]
        for i in range(1, self.LATENCY):
            v = Signal(name=f"v{i}")
            m.d.sync += v.eq(valid[-1])
            valid.append(v)
        m.d.comb += self.o_valid.eq(valid[-1])
        codes = []
        for c in range(self.lanes):
            lin = self._linear(m, c, x[c], v0) if "linear" in self.schemes else None
            sh = self._shift(m, c, x[c]) if "shift" in self.schemes else None
            code = Signal(unsigned(self.abits), name=f"code{c}")
            if lin is not None and sh is not None:
                m.d.sync += code.eq(Mux(self.shift, sh, lin))
            else:
                m.d.sync += code.eq(lin if lin is not None else sh)
            codes.append(code)
        m.d.comb += self.codes.eq(Cat(*codes))
        return m

    def _linear(self, m, c, x, v0):
        """The product (a :class:`PipelinedMultiplier`), then the rounding add in its own stage; the clamp's
        value (before the output register)."""
        m.submodules[f"mul{c}"] = mul = PipelinedMultiplier(signed(32), unsigned(31))
        m.d.comb += [mul.a.eq(x), mul.b.eq(self.r), mul.i_valid.eq(v0)]
        rounded = Signal(signed(64 - C.QUANT_SHIFT + 1), name=f"rounded{c}")
        m.d.sync += rounded.eq((mul.p + (1 << (C.QUANT_SHIFT - 1))) >> C.QUANT_SHIFT)
        return Mux(rounded < 0, 0, Mux(rounded > self.qmax, self.qmax, rounded[:self.abits]))

    def _shift(self, m, c, x):
        """The priority encoder, delayed to the linear path's latency; the code's value (before the
        output register)."""
        j_c, half_c = 0, 0
        for i in range(31):                   # the leading one of a positive 32-bit value: bits 30..0
            j_c = Mux(x[i], i, j_c)
            half_c = Mux(x[i], x[i - 1] if i else 0, half_c)
        j, half, pos = Signal(5, name=f"j{c}"), Signal(name=f"half{c}"), Signal(name=f"pos{c}")
        m.d.sync += [j.eq(j_c), half.eq(half_c), pos.eq(~x[31] & x[:31].any())]
        for i in range(self.LATENCY - 3):     # the linear path is longer: wait for it
            j2, half2, pos2 = Signal.like(j, name=f"j{c}_{i}"), Signal(name=f"half{c}_{i}"), Signal(name=f"pos{c}_{i}")
            m.d.sync += [j2.eq(j), half2.eq(half), pos2.eq(pos)]
            j, half, pos = j2, half2, pos2
        e = Signal(signed(10), name=f"e{c}")           # T - p: -31 - 48 .. 80
        m.d.comb += e.eq(self.t - (j + half))
        top = Signal(signed(10), name=f"top{c}")       # j - (T - n - 1) >= 0: at least half the smallest level
        m.d.comb += top.eq(j - self.t + self.n + 1)
        return Mux(~pos, 0, Mux(e < 0, 1, Mux(e <= self.n, (e + 1)[:self.abits],
                                               Mux(top >= 0, (self.n + 1)[:self.abits], 0))))
