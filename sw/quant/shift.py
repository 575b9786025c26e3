"""Differentiable shift quantization (after Badar): values ``+-2**-e`` with an annealed soft staircase.

Levels: weights ``+-alpha * 2**-e`` for ``e = 0 .. min(2**(b-1) - 1, max_shift)`` (sign + (b-1) exponent
bits, no zero; the exponent window is POST's, so the hardware never shifts right by more than ``max_shift``);
activations ``{0} U {alpha * 2**-e, e = 0 .. 2**b - 2}``. ``alpha`` is a power of two fixed at
calibration, so every value is exactly ``+-2**n``.

Between two neighbouring levels ``l_lo < l_hi`` with ``u = (r - l_lo) / (l_hi - l_lo)`` in [0, 1]:

    q_T(r) = l_lo + (l_hi - l_lo) * (sigmoid(T*(u - 1/2)) - sigmoid(-T/2)) / (sigmoid(T/2) - sigmoid(-T/2))

which is continuous and monotone, is the identity as ``T -> 0`` and the hard nearest-level rounding as
``T -> inf``. Its mean slope over every interval is 1 and its peak slope ``~T/4``, so the trainer anneals
``T`` geometrically from 1 to 20 (higher peaks compound across layers and blow the gradients up); in the
final epoch the forward pass is exactly the hard quantizer with a straight-through (identity) gradient
inside the clamp range.
"""

import math

import torch
from torch import nn

from ..errors import check_bits
from .common import ste


def soft_staircase(r, levels, temperature):
    """``q_T`` above for ``r`` already clamped into ``[levels[0], levels[-1]]``; O(N) memory."""
    idx = torch.bucketize(r, levels, right=True).clamp(1, len(levels) - 1)
    lo, hi = levels[idx - 1], levels[idx]
    u = (r - lo) / (hi - lo)
    t = float(temperature)
    # the same normalised sigmoid written with tanh (sigmoid(a) = (1 + tanh(a/2)) / 2): no cancellation
    h = math.tanh(t / 4)
    frac = (torch.tanh(t * (u - 0.5) / 2) + h) / (2 * h)
    return lo + (hi - lo) * frac


def hard_staircase(r, levels):
    """Nearest level, ties to the larger one."""
    mids = (levels[1:] + levels[:-1]) / 2
    return levels[torch.bucketize(r, mids, right=True)]


class ShiftQuantizer(nn.Module):
    """Weights (``signed=True``) or activations (``signed=False``) as powers of two.

    Members
    -------
    temperature : buffer
        Slope of the soft staircase; set by the trainer's annealing schedule.
    hard : buffer (bool)
        When true the forward pass is the hard quantizer.
    alpha : buffer
        Power-of-two scale, from the weights at construction or the first activation batch.
    """

    scheme = "shift"

    def __init__(self, bits, signed, weight=None, temperature=1.0, max_shift=None):
        super().__init__()
        self.bits = check_bits("shift bits", bits)
        self.signed = signed
        n = 2 ** (bits - 1) if signed else 2**bits - 1
        if signed and max_shift is not None:
            n = min(n, max_shift + 1)
        self.max_exponent = n - 1
        mags = torch.pow(2.0, -torch.arange(n - 1, -1, -1, dtype=torch.float32))
        levels = mags if signed else torch.cat([torch.zeros(1), mags])
        self.register_buffer("levels", levels, persistent=False)
        self.register_buffer("temperature", torch.tensor(float(temperature)))
        self.register_buffer("hard", torch.tensor(False))
        self.register_buffer("alpha", torch.tensor(1.0))
        self.register_buffer("initialized", torch.tensor(False))
        if weight is not None:
            self.init_from(weight)

    def init_from(self, x):
        with torch.no_grad():
            top = torch.quantile(x.detach().abs().flatten().float()[:1_000_000], 0.999).item()
            self.alpha.fill_(2.0 ** math.ceil(math.log2(max(top, 1e-8))))
            self.initialized.fill_(True)

    def forward(self, x):
        if not bool(self.initialized):
            self.init_from(x)
        r = x / self.alpha
        lv = self.levels.to(r.dtype)
        mag = r.abs() if self.signed else r
        mag = mag.clamp(float(lv[0]), float(lv[-1]))
        if bool(self.hard):
            q = ste(hard_staircase(mag, lv), mag)
        else:
            q = soft_staircase(mag, lv, self.temperature)
        if self.signed:
            q = torch.where(r < 0, -q, q)
        return q * self.alpha

    def extra_repr(self):
        return f"bits={self.bits}, signed={self.signed}"


def anneal(model, epoch, epochs, t_start=1.0, t_end=20.0):
    """Set every shift quantizer's temperature for ``epoch`` (0-based); the last epoch is hard."""
    frac = epoch / max(1, epochs - 1)
    t = t_start * (t_end / t_start) ** frac
    for m in model.modules():
        if isinstance(m, ShiftQuantizer):
            m.temperature.fill_(t)
            m.hard.fill_(epoch >= epochs - 1)
    return t
