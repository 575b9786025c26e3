"""PostDecoder: weight code -> sign, zero flag, left-shift amount ``E - k``, odd-exponent flag."""

from amaranth.hdl import Const, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rootshift.sw.numfmt import PowerFormat


class PostDecoder(wiring.Component):
    """Decode a ``b``-bit power code ``s | x`` (docs/arithmetic.md, "Weight codes"). Combinational.

    Base sqrt 2 splits ``e = x`` into ``k = e >> 1`` and ``odd = e & 1``; base 2 has ``k = e``. The
    output ``shift`` is ``E - k`` so a PE can *left*-shift without losing bits. The zero field, and any
    field past the exponent window (never produced by export), decode as zero.

    Members
    -------
    code : In(bits)
    sign : Out(1)     -- 1 for negative
    zero : Out(1)
    shift : Out(range(E + 1))
    odd : Out(1)      -- always 0 for base 2
    """

    def __init__(self, fmt: PowerFormat):
        if not isinstance(fmt, PowerFormat):
            raise TypeError(f"fmt must be a PowerFormat, not {fmt!r}")
        self.fmt = fmt
        super().__init__({
            "code": In(fmt.bits),
            "sign": Out(1),
            "zero": Out(1),
            "shift": Out(range(fmt.max_shift + 1)),
            "odd": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        f = self.fmt
        field = self.code[:f.bits - 1]
        E = f.max_shift
        m.d.comb += self.sign.eq(self.code[f.bits - 1])
        # a window that spans every field has no illegal codes (and a constant compare would trip Verilator)
        illegal = (field > f.max_exponent) if f.max_exponent < 2 ** (f.bits - 1) - 1 else Const(0)
        m.d.comb += self.zero.eq(illegal | ((field == f.zero_field) if f.has_zero else Const(0)))
        if f.base == "sqrt2":
            m.d.comb += [self.shift.eq(E - field[1:]), self.odd.eq(field[0])]
        else:
            m.d.comb += [self.shift.eq(E - field), self.odd.eq(0)]
        return m
