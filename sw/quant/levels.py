"""Level-set weight quantizers: POST (base sqrt 2), POT (base 2) and APoT, with a learned per-channel alpha.

All three map a weight ``w`` of output channel ``c`` to ``alpha_c * q(w / alpha_c)`` where ``q`` rounds
to the nearest member of a normalised, sign-symmetric level set ``{0} U {+-l_j}`` with ``max l_j = 1``,
in the linear domain. ``alpha`` learns with the LSQ gradient: scale ``1/sqrt(N_c * Q)`` where ``N_c`` is
the number of weights of the channel and ``Q`` the number of positive levels. See docs/quantization.md.
"""

import math

import torch
from torch import nn

from ..errors import ConfigError, check_bits
from .common import grad_scale, per_channel_view, ste

BASES = {"sqrt2": math.sqrt(2.0), "2": 2.0}


def default_max_exponent(bits, base, max_shift=7, has_zero=True):
    """Largest exponent index kept for a ``bits``-bit power code, after the exponent window.

    The window keeps magnitudes down to ``2**-max_shift`` (base 2) or ``2**-(max_shift+0.5)``
    (base sqrt 2), i.e. at most ``max_shift`` right shifts in hardware. Codes past it round to 0.
    """
    field = 2 ** (bits - 1) - (1 if has_zero else 0)  # number of nonzero exponents the code can hold
    window = 2 * max_shift + 1 if base == "sqrt2" else max_shift
    return min(field - 1, window)


class LevelQuantizer(nn.Module):
    """Base class: per-channel alpha, LSQ gradient, and rounding to a level set supplied by subclasses.

    Members
    -------
    alpha : Parameter, shape (C,)
        Per-output-channel scale, initialised at the 99th percentile of ``|w|`` of that channel.
    """

    scheme = "levels"

    def __init__(self, weight, bits):
        super().__init__()
        self.bits = check_bits("weight bits", bits)
        with torch.no_grad():
            flat = weight.detach().abs().reshape(weight.shape[0], -1)
            alpha = torch.quantile(flat, 0.99, dim=1).clamp_min(1e-8)
        self.alpha = nn.Parameter(alpha)
        self.n_per_channel = flat.shape[1]

    # subclasses: magnitudes() -> sorted 1-D tensor of nonzero normalised magnitudes (max 1)
    def magnitudes(self, dtype=torch.float32):
        raise NotImplementedError

    def levels(self):
        """All distinct normalised values, sorted (0 included when the set has it)."""
        m = self.magnitudes()
        vals = torch.cat([-m, m] + ([torch.zeros(1, dtype=m.dtype)] if self.has_zero else []))
        return torch.unique(vals)

    has_zero = True

    def round_magnitude(self, r):
        """Nearest magnitude level for ``r >= 0`` (ties to the larger level). O(N) via bucketize."""
        mags = self.magnitudes().to(r)
        lv = torch.cat([torch.zeros(1, dtype=r.dtype, device=r.device), mags]) if self.has_zero else mags
        mids = (lv[1:] + lv[:-1]) / 2
        idx = torch.bucketize(r, mids, right=True)
        return lv[idx]

    def forward(self, w):
        g = 1.0 / math.sqrt(self.n_per_channel * max(1, len(self.magnitudes())))
        a = per_channel_view(grad_scale(self.alpha, g), w.dim())
        r = torch.clamp(w / a, -1.0, 1.0)
        sign = torch.where(r < 0, -1.0, 1.0).to(r)
        q = sign * self.round_magnitude(r.abs())
        return ste(q, r) * a

    def extra_repr(self):
        return f"bits={self.bits}, levels={len(self.levels())}"


class PowerQuantizer(LevelQuantizer):
    """POST (``base='sqrt2'``) or POT (``base='2'``): magnitudes ``base**-e`` for ``e = 0..e_max``, and 0.

    A b-bit code is 1 sign bit and b-1 exponent bits; the all-ones exponent field encodes zero, so the
    code space is exactly 2**b codes (two of them, +0 and -0, decode to zero). Rounding is closed form:
    a log-domain index followed by a midpoint correction in the linear domain, O(N) memory.
    """

    def __init__(self, weight, bits, base="sqrt2", max_shift=7, max_exponent=None, has_zero=True):
        super().__init__(weight, bits)
        if base not in BASES:
            raise ConfigError(f"base must be one of {sorted(BASES)}, not {base!r}")
        self.base = base
        self.has_zero = has_zero
        field_max = 2 ** (bits - 1) - (2 if has_zero else 1)
        if max_exponent is None:
            max_exponent = default_max_exponent(bits, base, max_shift, has_zero)
        if not 0 <= max_exponent <= field_max:
            raise ConfigError(f"max_exponent must be in 0..{field_max} for {bits}-bit codes, not {max_exponent}")
        self.max_exponent = int(max_exponent)
        self.scheme = "post" if base == "sqrt2" else "pot"

    @property
    def b(self):
        return BASES[self.base]

    def magnitudes(self, dtype=torch.float32):
        e = torch.arange(self.max_exponent, -1, -1, dtype=torch.float64)
        return torch.pow(torch.tensor(self.b, dtype=torch.float64), -e).to(dtype)

    def exponent_index(self, r):
        """Exponent index ``e`` of the nearest level for ``r >= 0``; ``-1`` means zero. Closed form."""
        r = r.double()  # levels and midpoints in float64 whatever the input dtype
        ln_b = math.log(self.b)
        t = -torch.log(r.clamp_min(1e-300)) / ln_b
        e_lo = torch.floor(t).clamp(0, self.max_exponent)
        e_hi = e_lo + 1
        l_lo = torch.pow(self.b, -e_lo)
        l_hi = torch.pow(self.b, -e_hi)
        e = torch.where(r >= (l_lo + l_hi) / 2, e_lo, e_hi)
        # past the window: the next level down is zero (or, with no zero code, the smallest level)
        l_min = self.b ** -self.max_exponent
        below = e > self.max_exponent
        if self.has_zero:
            e = torch.where(below & (r < l_min / 2), torch.full_like(e, -1), e.clamp_max(self.max_exponent))
        else:
            e = e.clamp_max(self.max_exponent)
        return e.long()

    def round_magnitude(self, r):
        e = self.exponent_index(r)
        mag = torch.pow(self.b, -e.clamp_min(0).double())
        return torch.where(e < 0, torch.zeros_like(mag), mag).to(r.dtype)

    def encode(self, w):
        """Integer codes (b-bit words: sign bit on top, exponent field below) for a weight tensor."""
        a = per_channel_view(self.alpha.detach(), w.dim())
        r = torch.clamp(w.detach() / a, -1.0, 1.0)
        e = self.exponent_index(r.abs())
        zero_field = 2 ** (self.bits - 1) - 1
        field = torch.where(e < 0, torch.full_like(e, zero_field), e)
        sign = (r < 0) & (e >= 0)
        return (sign.long() << (self.bits - 1)) | field

    @property
    def format(self):
        from ..numfmt import PowerFormat

        return PowerFormat(self.bits, self.base, self.max_exponent, self.has_zero)

    def extra_repr(self):
        return f"bits={self.bits}, base={self.base}, max_exponent={self.max_exponent}, has_zero={self.has_zero}"


def apot_magnitudes(mag_bits, k=2):
    """Additive powers-of-two magnitudes (Li et al. 2020), normalised to max 1.

    ``n = ceil(mag_bits / k)`` terms; term ``i`` (0-based) draws from ``{0} U {2**-(i + 1 + j*n)}`` with
    ``2**k_i - 1`` nonzero choices, ``k_i = k`` bits (the last term takes the remaining bits).
    Every sum is a level, as in the paper's ``build_power_value``.
    """
    n = math.ceil(mag_bits / k)
    terms = []
    for i in range(n):
        ki = k if i < n - 1 or mag_bits % k == 0 else mag_bits % k
        terms.append([0.0] + [2.0 ** -(i + 1 + j * n) for j in range(2 ** ki - 1)])
    sums = {0.0}
    for t in terms:
        sums = {s + v for s in sums for v in t}
    vals = sorted(v for v in sums if v > 0)
    top = vals[-1]
    return torch.tensor([v / top for v in vals], dtype=torch.float32)


class APoTQuantizer(LevelQuantizer):
    """APoT baseline (k = 2): sums of powers of two, b-1 magnitude bits plus a sign bit."""

    scheme = "apot"

    def __init__(self, weight, bits, k=2):
        super().__init__(weight, bits)
        self.k = k
        self.register_buffer("_mags", apot_magnitudes(bits - 1, k), persistent=False)

    def magnitudes(self, dtype=torch.float32):
        return self._mags.to(dtype)
