"""Property tests of the integer contract against exact rational arithmetic (docs/arithmetic.md)."""

from fractions import Fraction
from math import floor, isqrt

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rootshift.sw import contract as C
from rootshift.sw.numfmt import PowerFormat

ints = st.integers(-(2**40), 2**40)


@given(ints, st.integers(0, 20))
def test_rshift_round_is_round_half_up(v, s):
    assert int(C.rshift_round(np.int64(v), s)) == floor(Fraction(v, 2**s) + Fraction(1, 2))


@given(st.integers(-(2**50), 2**50), st.integers(1, 2**30))
def test_rdiv_is_round_half_up(a, b):
    assert int(C.rdiv(a, b)) == floor(Fraction(a, b) + Fraction(1, 2))


@given(st.lists(ints, min_size=1, max_size=8), st.integers(-(2**33), 2**33), st.integers(-(2**33), 2**33))
def test_saturate(vals, lo, hi):
    lo, hi = min(lo, hi), max(lo, hi)
    assert C.saturate(np.array(vals), lo, hi).tolist() == [min(max(v, lo), hi) for v in vals]


@given(st.integers(-(2**29), 2**29), st.integers(-(2**31), 2**31 - 1), st.integers(-(2**40), 2**40),
       st.integers(1, 40), st.booleans())
def test_requantize_matches_rationals(acc, m, bias, shift, relu):
    lo = 0 if relu else C.FINE_MIN
    got = int(C.requantize([np.array([[acc]])], [np.array([m])], np.array([bias]), shift, lo, C.FINE_MAX)[0, 0])
    exact = floor(Fraction(acc * m + bias, 2**shift) + Fraction(1, 2))
    assert got == min(max(exact, lo), C.FINE_MAX)


@given(st.integers(2, 8), st.sampled_from(["sqrt2", "2"]), st.booleans())
def test_post_decode_every_code(bits, base, has_zero):
    fmt = PowerFormat(bits, base, has_zero=has_zero)
    codes = fmt.all_codes()
    assert len(codes) == 2**bits  # exactly 2**b codes, whatever the layout
    sign, zero, k, odd = fmt.decode(codes)
    for c, s, z, kk, o in zip(codes, sign, zero, k, odd):
        field = c & (2 ** (bits - 1) - 1)
        assert s == (-1 if c >> (bits - 1) else 1)
        assert z == (has_zero and field == 2 ** (bits - 1) - 1)
        if not z:
            e = field
            assert (kk, o) == ((e // 2, e % 2) if base == "sqrt2" else (e, 0))


def _exact_dot(a, codes, fmt):
    """sum a_i * w_i with w = sign * 2**-(e/2) as (rational part, rational part of 1/sqrt 2)."""
    sign, zero, k, odd = fmt.decode(codes)
    even_part, odd_part = Fraction(0), Fraction(0)
    for ai, s, z, kk, o in zip(a, sign, zero, k, odd):
        if z:
            continue
        t = Fraction(int(s) * int(ai), 2 ** int(kk))
        if o:
            odd_part += t
        else:
            even_part += t
    return even_part, odd_part


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 8), st.integers(2, 8), st.integers(1, 64), st.integers(0, 2**32 - 1))
def test_dual_mode_is_exact_and_lut_is_bounded(wbits, abits, k, seed):
    rng = np.random.default_rng(seed)
    fmt = PowerFormat(wbits, "sqrt2", min(2 ** (wbits - 1) - 2, 15))
    codes = rng.choice(fmt.all_codes(), size=(1, k))
    a = rng.integers(0, 2**abits, size=(1, k))
    E = fmt.max_shift
    ev, od = _exact_dot(a[0], codes[0], fmt)
    dual = C.accumulate(a, C.weight_terms(codes, fmt, "dual"), "dual", abits)
    # dual: both accumulators exact, the real product is 2**-E (acc_even + acc_odd / sqrt 2)
    assert Fraction(int(dual["even"][0, 0]), 2**E) == ev
    assert Fraction(int(dual["odd"][0, 0]), 2**E) == od
    # lut: one accumulator; every odd term is off by at most 1/2 LSB of the table, times its shift
    lut = int(C.accumulate(a, C.weight_terms(codes, fmt, "lut"), "lut", abits)["acc"][0, 0])
    real = float(ev) + float(od) / 2**0.5
    sign, zero, kk, odd = fmt.decode(codes[0])
    bound = sum(0.5 * 2.0 ** -int(x) for x, o, z in zip(kk, odd, zero) if o and not z) / 2**C.LUT_FRAC
    assert abs(lut / 2 ** (E + C.LUT_FRAC) - real) <= bound + 1e-9


def test_lut_table_is_rounded_a_over_sqrt2():
    for abits in (2, 4, 8):
        t = C.lut_table(abits)
        assert len(t) == 2**abits
        for a, v in enumerate(t):
            # v = round(x) with x = a * 256 / sqrt 2 >= 0  <=>  max(v - 1/2, 0)**2 <= x**2 <= (v + 1/2)**2
            x2 = Fraction(a * a * 2**16, 2)
            assert max(Fraction(2 * int(v) - 1, 2), Fraction(0)) ** 2 <= x2 <= Fraction(2 * int(v) + 1, 2) ** 2
        assert t[1] == 181 and isqrt(2 ** 15) == 181


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["dual", "lut", "shift", "mult"]), st.integers(2, 8), st.integers(2, 8),
       st.integers(1, 600), st.integers(0, 2**32 - 1))
def test_accumulator_bound_holds_and_is_tight(mode, wbits, abits, k, seed):
    base = "2" if mode == "shift" else "sqrt2"
    fmt = None if mode == "mult" else PowerFormat(wbits, base, min(2 ** (wbits - 1) - 2, 15 if base == "sqrt2" else 7))
    bound = C.acc_bound(mode, k, abits, fmt, wbits)
    width = C.acc_width(bound)
    amax = 2**abits - 1
    a = np.full((1, k), amax)
    if mode == "mult":
        worst = [np.full((1, k), -(2 ** (wbits - 1)))]
        terms = [{"acc": w} for w in worst]
    else:
        E = fmt.max_exponent
        top = [c for c in fmt.all_codes() if fmt.decode(np.array([c]))[2][0] == 0 and not fmt.decode(np.array([c]))[1][0]]
        # the largest magnitude, even exponent (e = 0), both signs
        terms = [C.weight_terms(np.full((1, k), c), fmt, mode) for c in top]
        del E
    for t in terms:
        acc = C.accumulate(a, t, mode, abits)
        for v in acc.values():
            assert abs(int(v[0, 0])) <= bound
            assert -(2 ** (width - 1)) <= int(v[0, 0]) < 2 ** (width - 1)
    got = max(abs(int(v[0, 0])) for t in terms for v in C.accumulate(a, t, mode, abits).values())
    assert got == bound  # all-max operands reach the bound exactly
    rng = np.random.default_rng(seed)
    ra = rng.integers(0, amax + 1, size=(4, k))
    rt = {"acc": rng.integers(-(2 ** (wbits - 1)), 2 ** (wbits - 1), size=(3, k))} if mode == "mult" else \
        C.weight_terms(rng.choice(fmt.all_codes(), size=(3, k)), fmt, mode)
    for v in C.accumulate(ra, rt, mode, abits).values():
        assert np.abs(v).max() <= bound


@given(st.lists(st.integers(0, 2**31 - 1), min_size=1, max_size=6), st.integers(1, 2**31 - 1), st.integers(2, 8))
def test_quant_codes_match_rationals(xs, r, bits):
    got = C.quant_codes(np.array(xs), np.int64(r), 2**bits - 1).tolist()
    exp = [min(max(floor(Fraction(x * r, 2**C.QUANT_SHIFT) + Fraction(1, 2)), 0), 2**bits - 1) for x in xs]
    assert got == exp


def test_im2col_matches_direct_convolution():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 16, size=(2, 3, 7, 6))
    w = rng.integers(-5, 6, size=(4, 3, 3, 3))
    cols, ho, wo = C.im2col(x, 3, 3, 2, 1)
    y = (cols @ w.reshape(4, -1).T).reshape(2, ho, wo, 4)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    for n in range(2):
        for o in range(4):
            for i in range(ho):
                for j in range(wo):
                    assert y[n, i, j, o] == (xp[n, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3] * w[o]).sum()
