"""Formal harness: every ``PostDecoder`` the generator can build against the golden model's decode table."""

from amaranth.hdl import Assert, Elaboratable, Module, Signal

from rootshift.hw.post_decoder import PostDecoder
from rootshift.sw.numfmt import PowerFormat

WINDOW_SHIFTS = (1, 2, 3, 7, 30)


def decoder_formats():
    """The weight formats ``ArrayParams`` asks for at every width 2..8 and both bases: the exponent windows
    of ``max_shift`` 1, 2, 3, 7 (the default) and 30 (the full field), plus the zero-less shift format."""
    fmts = []
    for bits in range(2, 9):
        for base in ("sqrt2", "2"):
            field_max = 2 ** (bits - 1) - 2
            windows = sorted({min(field_max, 2 * s + 1 if base == "sqrt2" else s) for s in WINDOW_SHIFTS})
            fmts += [PowerFormat(bits, base, w, True) for w in windows]
            fmts.append(PowerFormat(bits, base, None, False))
    return fmts


def expected(fmt, code):
    """(sign, zero, shift, odd) the contract gives ``code`` (sw.numfmt); illegal codes decode as zero."""
    sign = (code >> (fmt.bits - 1)) & 1
    field = code & (2 ** (fmt.bits - 1) - 1)
    legal = field <= fmt.max_exponent or (fmt.has_zero and field == fmt.zero_field)
    if not legal:
        return sign, 1, None, None
    _, zero, k, odd = (int(v[0]) for v in fmt.decode([code]))
    if zero:
        return sign, 1, None, None
    return sign, 0, fmt.max_shift - k, odd


class DecoderHarness(Elaboratable):
    """One ``PostDecoder`` per format, with a free ``code`` input per width, asserted equal to the contract's
    decode for every code: sign, zero flag, and (for a nonzero code) shift ``E - k`` and odd flag.

    ``mutant``: the reference's shift for the window's largest exponent is one too small (a boundary
    off-by-one), which the proof must reject.
    """

    def __init__(self, fmts=None, mutant=False):
        self.fmts = decoder_formats() if fmts is None else fmts
        self.mutant = mutant
        # one free code per width, shared by the decoders of that width: the solver then searches the
        # 2^bits codes once, not once per decoder (independent inputs made it 50x slower at 8 bits)
        self.code_of = {b: Signal(b, name=f"code_w{b}") for b in sorted({f.bits for f in self.fmts})}
        self.codes = [self.code_of[f.bits] for f in self.fmts]

    def ports(self):
        return list(self.code_of.values())

    def elaborate(self, platform):
        m = Module()
        for i, (fmt, code) in enumerate(zip(self.fmts, self.codes)):
            dec = m.submodules[f"dec_{i}"] = PostDecoder(fmt)
            m.d.comb += dec.code.eq(code)
            sign, zero = Signal(name=f"exp_sign_{i}"), Signal(name=f"exp_zero_{i}")
            shift, odd = Signal(range(fmt.max_shift + 2), name=f"exp_shift_{i}"), Signal(name=f"exp_odd_{i}")
            with m.Switch(code):
                for c in range(2 ** fmt.bits):
                    s, z, sh, o = expected(fmt, c)
                    field = c & (2 ** (fmt.bits - 1) - 1)
                    if self.mutant and sh is not None and field == fmt.max_exponent:
                        sh = sh - 1 if sh > 0 else sh + 1
                    with m.Case(c):
                        m.d.comb += [sign.eq(s), zero.eq(z), shift.eq(sh or 0), odd.eq(o or 0)]
            ok = (dec.sign == sign) & (dec.zero == zero) & (zero | ((dec.shift == shift) & (dec.odd == odd)))
            m.d.comb += Assert(ok, f"decode {fmt.bits}-bit {fmt.base} window {fmt.max_exponent} zero={fmt.has_zero}")
        return m
