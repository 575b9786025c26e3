"""Integer primitives of the arithmetic contract (docs/arithmetic.md, contract version 2).

Everything here is int64 numpy; nothing on the path from codes to logits is floating point. The golden
model (``sw.golden``) composes these; the hardware (``hw``) implements the same definitions and its tests
use these functions as the oracle.
"""

import numpy as np

from .errors import ConfigError

CONTRACT_VERSION = 2       # 2 adds shift activations and the shift2 product mode
READ_CONTRACTS = (1, 2)    # a version-1 model is a version-2 model without shift activations
FINE_FRAC = 16            # fine activations: value = X * 2**-16
FINE_MIN, FINE_MAX = -(2**31), 2**31 - 1   # fine activations saturate to signed 32 bits
QUANT_SHIFT = 40          # activation quantization: code = clamp(rshift_round(X * R, 40), 0, Qp)
R_MAX = 2**31 - 1         # per-sample activation multiplier saturates here
M_BITS = 32               # requantization multipliers (after the per-sample beta factor) are signed 32-bit
M_BASE_BITS = 23          # per-layer multipliers: |M_base| <= 2**22 - 1 (symmetric), 9 bits of headroom for beta <= 512
M_BASE_MAX = 2 ** (M_BASE_BITS - 1) - 1
BIAS_MAX = 2**61 - 1      # |B| <= BIAS_MAX keeps sum(acc * M) + B + 2**(S-1) below 2**63 (docs/arithmetic.md, "Bounds")
SHIFT_MIN, SHIFT_MAX = 1, 62   # requantization shift S
K_STEP_MAX = 2**61 - 1    # rdiv(K_s, beta_fx) forms 2*K_s + beta_fx < 2**63
ADAPTER_W_LIMIT = 2**15   # |W1q|, |W2q| < 2**15
ADAPTER_F_MAX = 62        # adapter shifts f1, f2 in 0..62
ADAPTER_SUM_MAX = 2**62 - 1  # worst-case |W g + B| of each adapter layer, over every fine input
DIM_MAX = 2**12           # channels, height, width, kernel, stride and pad are each at most 4096
LUT_FRAC = 8              # lut mode: LUT[a] = round(a * 2**8 / sqrt 2)
ACC_MAX_BITS = 62 - M_BITS  # acc * M must fit in int64 with the bias: acc width <= 30 bits
ACC_MAX_BITS_SHIFT2 = 62 - M_BASE_BITS  # shift2 layers have beta = 1, so |M| = |M_base| < 2**22: 39 bits
MODES = ("dual", "lut", "shift", "mult", "shift2")
LOG2_ALPHA_MAX = 64        # shift activations: alpha = 2**A with |A| <= 64


def rshift_round(v, s):
    """``floor((v + 2**(s-1)) / 2**s)``: round half up (toward +inf); ``s == 0`` is the identity."""
    v = np.asarray(v, dtype=np.int64)
    s = int(s)
    if s < 0:
        raise ConfigError(f"shift must be >= 0, not {s}")
    return v if s == 0 else (v + (np.int64(1) << np.int64(s - 1))) >> np.int64(s)


def rdiv(a, b):
    """Integer division rounding half up: ``floor(a / b + 1/2)`` for ``b > 0``."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    return (2 * a + b) // (2 * b)


def saturate(v, lo, hi):
    return np.clip(np.asarray(v, dtype=np.int64), lo, hi)


def lut_table(abits, frac=LUT_FRAC):
    """``LUT[a] = round(a * 2**frac / sqrt 2)`` for every activation code ``a`` (2**abits entries).

    Computed in integers: the rounded square root of ``a**2 * 2**(2*frac - 1)``, which is exact because
    ``a * 2**frac / sqrt 2`` is never a half-integer.
    """
    from math import isqrt

    out = []
    for a in range(2**abits):
        n = a * a * 2 ** (2 * frac - 1)
        r = isqrt(n)
        # round to nearest: compare n with (r + 1/2)**2 = r*r + r + 1/4
        out.append(r + 1 if 4 * n >= 4 * r * r + 4 * r + 1 else r)
    return np.array(out, dtype=np.int64)


def weight_terms(codes, fmt, mode):
    """Signed per-weight integer factors of the weight codes, by accumulator.

    Returns a dict of int64 arrays shaped like ``codes``: for ``dual`` ``{"even", "odd"}`` with
    ``+-2**(E - k)`` where the exponent is even / odd (0 elsewhere); for ``lut`` the same two, to be
    applied to ``a << LUT_FRAC`` and ``LUT[a]``; for ``shift`` (base 2) ``{"acc"}``.
    """
    sign, zero, k, odd = fmt.decode(codes)
    E = fmt.max_shift
    mag = np.where(zero, 0, np.int64(1) << (E - k).astype(np.int64)) * sign
    if mode in ("dual", "lut"):
        if fmt.base != "sqrt2":
            raise ConfigError(f"product mode {mode} is for base sqrt2; base 2 uses mode shift")
        return {"even": np.where(odd == 0, mag, 0), "odd": np.where(odd == 1, mag, 0)}
    if mode in ("shift", "shift2"):
        if fmt.base != "2":
            raise ConfigError(f"product mode {mode} is for base 2; base sqrt2 uses dual or lut")
        return {"acc": mag}
    raise ConfigError(f"unknown product mode {mode!r}; one of {', '.join(MODES)}")


def shift_act_factor(codes, act_max_exponent):
    """shift2 activation factor ``f(c)``: 0 for code 0, ``2**(E_a - (c - 1))`` otherwise (exact, int64)."""
    c = np.asarray(codes, np.int64)
    return np.where(c == 0, 0, np.int64(1) << np.clip(act_max_exponent - (c - 1), 0, 62).astype(np.int64))


def shift_act_codes(x, log2_alpha, max_exponent):
    """Shift activation codes of fine values ``x`` (docs/arithmetic.md, "Quantizing a fine value to a shift
    code"): the nearest level of ``{0} U {2**(A - e)}`` in the linear domain, ties to the larger level.
    Code 0 is zero, code ``e + 1`` the exponent ``e`` (0..``max_exponent``)."""
    x = np.asarray(x, np.int64)
    t = int(log2_alpha) + FINE_FRAC
    n = int(max_exponent)
    pos = x > 0
    xs = np.where(pos, x, 1)
    j = (np.frexp(xs.astype(np.float64))[1] - 1).astype(np.int64)   # bit_length - 1, exact below 2**53
    p = j + (2 * xs >= (np.int64(3) << j))
    e = t - p
    code = np.where(e < 0, 1, e + 1)
    code = np.where(e > n, np.where(j >= t - n - 1, n + 1, 0), code)
    return np.where(pos, code, 0).astype(np.int64)


def accumulate(a_cols, terms, mode, abits, act_max_exponent=None):
    """Accumulators of one layer. ``a_cols`` (P, K) activation codes, ``terms`` from
    :func:`weight_terms` each (Cout, K) (or ``{"acc": w}`` integer weights for ``mult``).
    Returns a dict of (P, Cout) int64 accumulators: ``even``/``odd`` for dual, ``acc`` otherwise.

    ``a << (E - k)`` summed with signs equals ``a @ (+-2**(E-k))``: a shift is a multiplication by a
    power of two, so the matrix product of codes and terms is the sum the hardware builds from shifts.
    """
    a = np.asarray(a_cols, dtype=np.int64)
    if mode == "dual":
        return {"even": a @ terms["even"].T, "odd": a @ terms["odd"].T}
    if mode == "lut":
        t_even = a << np.int64(LUT_FRAC)
        t_odd = lut_table(abits)[a]
        return {"acc": t_even @ terms["even"].T + t_odd @ terms["odd"].T}
    if mode in ("shift", "mult"):
        return {"acc": a @ terms["acc"].T}
    if mode == "shift2":  # sum of +-(1 << (E_w - k + E_a - e)) = f(c) @ (+-2**(E_w - k))
        return {"acc": shift_act_factor(a, act_max_exponent) @ terms["acc"].T}
    raise ConfigError(f"unknown product mode {mode!r}")


def acc_max_bits(mode):
    """Widest accumulator the contract allows for ``mode`` (docs/arithmetic.md, "Bounds")."""
    return ACC_MAX_BITS_SHIFT2 if mode == "shift2" else ACC_MAX_BITS


def acc_bound(mode, k, abits, fmt=None, wbits=None, act_max_exponent=None):
    """Largest ``|accumulator|`` any operands can produce: ``K * max|a| * max|term|``.

    For ``shift2`` the activation factor is ``2**E_a`` (``act_max_exponent``, the shift quant op's window).
    """
    if mode == "shift2":
        return k * (1 << (fmt.max_shift + act_max_exponent))
    amax = 2**abits - 1
    if mode == "mult":
        return k * amax * 2 ** (wbits - 1)
    top = 1 << fmt.max_shift
    if mode == "lut":
        return k * amax * (1 << LUT_FRAC) * top
    return k * amax * top


def acc_width(bound):
    """Signed two's-complement bits that hold every value in ``[-bound, bound]``."""
    return int(bound).bit_length() + 1


def requantize(accs, mults, bias, shift, lo, hi):
    """``clamp(rshift_round(sum_i acc_i * M_i + B, S), lo, hi)`` per output channel.

    ``accs`` list of (P, C) accumulators, ``mults`` matching list of (C,) or (P, C) multipliers,
    ``bias`` (C,), ``shift`` int, ``lo``/``hi`` the clamp (``lo = 0`` is the ReLU).
    """
    total = np.asarray(bias, dtype=np.int64)
    for acc, m in zip(accs, mults):
        total = total + np.asarray(acc, dtype=np.int64) * np.asarray(m, dtype=np.int64)
    return saturate(rshift_round(total, shift), lo, hi)


def beta_multiplier(m_base, beta_fx, where="layer"):
    """Per-sample multiplier ``rshift_round(M_base * beta_fx, 16)`` (N, C); ``beta_fx`` is beta in fine units.

    Raises :class:`ConfigError` naming ``where`` when any ``|M| >= 2**31``. The product ``M_base * beta_fx``
    is formed exactly (Python integers) whenever it could leave int64, so it never wraps before the check.
    """
    mb = np.asarray(m_base, np.int64)
    beta = np.asarray(beta_fx, np.int64)
    top_m = int(np.abs(mb).max(initial=0))
    top_b = int(np.abs(beta).max(initial=0))
    if top_m * top_b < 2**62:
        m = rshift_round(mb[None, :] * beta[:, None], FINE_FRAC)
        big = np.abs(m).max(initial=0) >= 2 ** (M_BITS - 1)
    else:  # exact: object arrays of Python ints
        prod = mb.astype(object)[None, :] * beta.astype(object)[:, None]
        m = (prod + (1 << (FINE_FRAC - 1))) >> FINE_FRAC
        big = max((abs(v) for v in m.flat), default=0) >= 2 ** (M_BITS - 1)
    if big:
        raise ConfigError(f"{where}: per-sample multiplier overflows {M_BITS} bits "
                          f"(beta = {top_b / 2**FINE_FRAC:.3g})")
    return np.asarray(m, np.int64)


def quant_codes(x, r, qmax):
    """Activation codes ``clamp(rshift_round(X * R, 40), 0, Qp)``; ``R`` broadcasts per sample."""
    return saturate(rshift_round(np.asarray(x, np.int64) * np.asarray(r, np.int64), QUANT_SHIFT), 0, qmax)


def step_multiplier(k_step, beta_fx):
    """``R = min(rdiv(K_s, beta_fx), R_MAX)`` with ``K_s = round(2**40 / s)``: 1 / (s * beta) per sample."""
    return np.minimum(rdiv(np.int64(k_step), np.maximum(np.asarray(beta_fx, np.int64), 1)), R_MAX)


def adapter_beta_int(x, w1, b1, f1, w2, b2, f2):
    """Integer ASQ adapter on fine activations ``x`` (N, C, H, W). Returns ``beta_fx`` (N,), >= 1.

    GAP: ``rdiv(sum_hw X, H*W)``; hidden ``relu(rshift_round(W1 g + B1, f1))``; out
    ``max(1, rshift_round(W2 h + B2, f2))`` (the ReLU and the 1e-8 clamp become a floor of one fine LSB).
    ``w1`` is None for the single-layer adapter (C < 8).
    """
    x = np.asarray(x, np.int64)
    g = rdiv(x.reshape(x.shape[0], x.shape[1], -1).sum(-1), x.shape[2] * x.shape[3]) if x.ndim == 4 else x
    h = g
    if w1 is not None:
        h = np.maximum(rshift_round(h @ np.asarray(w1, np.int64).T + np.asarray(b1, np.int64), f1), 0)
    z = rshift_round(h @ np.asarray(w2, np.int64).T + np.asarray(b2, np.int64), f2)[:, 0]
    return np.maximum(z, 1)


def adapter_worst_case(w1, b1, f1, w2, b2, f2):
    """Worst-case ``|W g + B|`` of each adapter layer over every fine input ``|g| <= 2**31``, exactly.

    Returns ``(hidden, out)`` as Python ints (``hidden`` is 0 without a hidden layer). The loader refuses an
    adapter where either exceeds :data:`ADAPTER_SUM_MAX`, so the integer adapter never wraps int64.
    """
    g = 2**31
    def rows(w):
        return [sum(abs(int(v)) for v in row) for row in np.asarray(w, np.int64).reshape(len(w), -1)]
    hidden = 0
    hmax = None
    if w1 is not None:
        pre = [r * g + abs(int(b)) for r, b in zip(rows(w1), np.asarray(b1, np.int64).ravel())]
        hidden = max(pre, default=0)
        half = (1 << (int(f1) - 1)) if int(f1) > 0 else 0
        hmax = [(p + half) >> int(f1) for p in pre]   # |rshift_round(v, f1)| <= that for |v| <= p
    w2 = np.asarray(w2, np.int64).reshape(1, -1)
    ins = [g] * w2.shape[1] if hmax is None else hmax
    out = sum(abs(int(v)) * h for v, h in zip(w2[0], ins)) + abs(int(np.asarray(b2, np.int64).ravel()[0]))
    return hidden, out


def conv_out_size(size, kernel, stride, pad):
    """Output length of a conv / pool along one axis: ``floor((size + 2 pad - kernel) / stride) + 1``."""
    return (size + 2 * pad - kernel) // stride + 1


def im2col(x, kh, kw, stride, pad, pad_value=0):
    """(N, C, H, W) -> (N, Ho*Wo, C*kh*kw) patches, column order (c, i, j) like ``weight.reshape(Cout, -1)``."""
    x = np.asarray(x)
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=pad_value)
    ho, wo = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    s = xp.strides
    view = np.lib.stride_tricks.as_strided(xp, (n, c, kh, kw, ho, wo), (s[0], s[1], s[2], s[3], s[2] * stride, s[3] * stride))
    return np.ascontiguousarray(view.transpose(0, 4, 5, 1, 2, 3)).reshape(n, ho * wo, c * kh * kw), ho, wo
