"""Differentiable shift quantization (after Badar): values ``+-2**-e`` through an annealed soft staircase.

Hard quantizer (what eval and export compute; the integer contract is defined on exactly this):
weights ``+-alpha * 2**-e`` for ``e = 0 .. min(2**(b-1) - 1, max_shift)`` (sign + (b-1) exponent bits,
no zero); activations ``{0} U {alpha * 2**-e, e = 0 .. 2**b - 2}``; nearest level in the linear domain,
ties to the larger magnitude, ``r = 0`` to ``+l_0`` (weights). ``alpha`` is a power of two.

Soft quantizer (training): a staircase over the *signed* level set ``L`` (weights ``-1 .. -l_0, l_0 .. 1``,
activations ``0, l_0 .. 1``), so ``(-l_0, l_0)`` is a soft sign step and every weight gets a gradient.
Between neighbours ``l_lo < l_hi``, with ``u = (r - l_lo) / (l_hi - l_lo)`` and band width ``w = min(1, 1/T)``:

    t      = clamp((u - 1/2) / w + 1/2, 0, 1)
    q_T(r) = l_lo + (l_hi - l_lo) * (3 t**2 - 2 t**3)

after clamping ``r`` to ``[min L, max L]``. ``q_T`` is continuously differentiable and monotone, passes
through every level and every midpoint, and for ``T >= 1`` equals the hard quantizer *exactly* wherever
``|u - 1/2| >= 1/(2T)``: the transition is confined to a band of width ``1/T`` around each midpoint, so
``q_T -> hard`` as ``T -> inf`` (pointwise off the midpoints, and in L1 on any data without mass on them).
:func:`anneal` raises ``T`` geometrically from ``T_START`` to ``T_MID``; a run with 2-bit shift activations
then spends its last third (``restart_epochs``) in a warm restart that raises ``T`` from ``T_MID`` to ``T_END``
at a tenth of the learning rate with the gradient norm clipped (``sw/train.py``). The last epoch trains the
soft function at the final temperature: no straight-through step anywhere. docs/quantization.md has the
schedule, why it is shaped so (measured), and the soft/hard agreement at the final temperature.
"""

import contextlib
import math

import torch
from torch import nn

from ..errors import check_bits

T_START = 1.0
T_MID = 4.0  # end of the main phase: higher at the main learning rate diverged (docs/quantization.md)
T_END = 16.0  # end of the warm restart (runs with 2-bit shift activations)
RESTART_FRACTION = 3  # the warm restart is the last epochs // RESTART_FRACTION epochs
RESTART_LR = 0.1  # its peak learning rate, relative to the run's
CLIP_NORM = 1.0  # gradient norm limit in every step of a run with the warm restart


RESTART_MAX_BITS = 2  # the warm restart serves 2-bit shift activations only (at 3-4 bits it cost accuracy, measured)


def warm_restart(act_shift, abits):
    """Whether a run gets the warm restart and the gradient clipping: shift activations of at most
    ``RESTART_MAX_BITS`` bits, where the soft/hard gap at ``T_MID`` was largest (docs/quantization.md)."""
    return bool(act_shift) and abits <= RESTART_MAX_BITS


def restart_epochs(epochs, act_shift):
    """Epochs of the warm restart: the last third of a run that gets it (:func:`warm_restart`), none otherwise."""
    return epochs // RESTART_FRACTION if act_shift else 0


def temperature(epoch, epochs, restart=0, t_start=T_START, t_mid=T_MID, t_end=T_END):
    """``T`` of ``epoch`` (0-based): geometric ``t_start -> t_mid`` over the first ``epochs - restart``
    epochs (reaching ``t_mid`` at the last of them), then geometric ``t_mid -> t_end`` over the ``restart``
    epochs (reaching ``t_end`` at the last epoch)."""
    main = epochs - restart
    if epoch < main:
        return t_start * (t_mid / t_start) ** (epoch / max(1, main - 1))
    return t_mid * (t_end / t_mid) ** ((epoch - main + 1) / restart)


def soft_staircase(r, levels, temperature):
    """``q_T`` above for ``r`` already clamped into ``[levels[0], levels[-1]]``; O(N) memory."""
    idx = torch.bucketize(r, levels, right=True).clamp(1, len(levels) - 1)
    lo, hi = levels[idx - 1], levels[idx]
    u = (r - lo) / (hi - lo)
    w = min(1.0, 1.0 / float(temperature))
    t = ((u - 0.5) / w + 0.5).clamp(0.0, 1.0)
    return lo + (hi - lo) * (t * t * (3.0 - 2.0 * t))


def hard_staircase(r, levels):
    """Nearest level, ties to the larger one."""
    mids = (levels[1:] + levels[:-1]) / 2
    return levels[torch.bucketize(r, mids, right=True)]


def band(temperature):
    """Half-width, in interval widths, of the band around each midpoint where ``q_T`` may differ from hard."""
    return min(1.0, 1.0 / float(temperature)) / 2


class ShiftQuantizer(nn.Module):
    """Weights (``signed=True``) or activations (``signed=False``) as powers of two.

    Members
    -------
    levels : buffer
        Normalised magnitudes ``2**-(n-1) .. 1`` (with 0 first for activations), ascending.
    soft_levels : buffer
        The level set the soft staircase runs over: signed for weights, ``levels`` for activations.
    temperature : buffer
        ``T``: the soft staircase's transition band is ``1/T`` of an interval wide; set per epoch by :func:`anneal`.
    hard : buffer (bool)
        True once :func:`anneal` reached the final temperature (the last epoch): the trained model
        is the hard quantizer within the bound above, and export may read it.
    alpha : buffer
        Power-of-two scale minimising the hard quantizer's squared error on the calibration data
        (the weights at construction, the first activation batch otherwise); see :func:`best_alpha`.
    """

    scheme = "shift"

    def __init__(self, bits, signed, weight=None, temperature=T_START, max_shift=None):
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
        soft = torch.cat([-mags.flip(0), mags]) if signed else levels
        self.register_buffer("soft_levels", soft, persistent=False)
        self.register_buffer("temperature", torch.tensor(float(temperature)))
        self.register_buffer("hard", torch.tensor(False))
        self.register_buffer("alpha", torch.tensor(1.0))
        self.register_buffer("initialized", torch.tensor(False))
        self.soft_eval = False  # evaluate the soft function in eval mode (soft/hard agreement checks)
        if weight is not None:
            self.init_from(weight)

    def quantize_hard(self, r):
        """The hard quantizer on normalised ``r = x / alpha``."""
        lv = self.levels.to(r.dtype)
        if self.signed:
            q = hard_staircase(r.abs().clamp(float(lv[0]), float(lv[-1])), lv)
            return torch.where(r < 0, -q, q)
        return hard_staircase(r.clamp(0.0, float(lv[-1])), lv)

    def quantize_soft(self, r, temperature=None):
        """The soft quantizer on normalised ``r``: the staircase over ``soft_levels`` at ``temperature``."""
        lv = self.soft_levels.to(r.dtype)
        t = self.temperature if temperature is None else temperature
        return soft_staircase(r.clamp(float(lv[0]), float(lv[-1])), lv, t)

    def best_alpha(self, x, span=16):
        """Power of two ``2**k`` minimising ``sum (alpha * hard(x / alpha) - x)**2`` (ties: the larger).

        ``k`` runs over ``span`` candidates ending at the first power of two at or above ``max |x|``;
        below that the error only grows for every level set here, and a smaller ``alpha`` clips more.
        """
        x = x.detach().flatten().float()
        if x.numel() > 1_000_000:
            x = x[torch.randperm(x.numel(), generator=torch.Generator().manual_seed(0))[:1_000_000]]
        top = x.abs().max().item()
        k_hi = math.ceil(math.log2(max(top, 1e-8)))
        best_k, best_err = k_hi, math.inf
        for k in range(k_hi, k_hi - span, -1):  # descending: a tie keeps the larger alpha
            a = 2.0**k
            err = ((self.quantize_hard(x / a) * a - x) ** 2).sum().item()
            if err < best_err:
                best_k, best_err = k, err
        return 2.0**best_k

    def init_from(self, x):
        with torch.no_grad():
            self.alpha.fill_(self.best_alpha(x))
            self.initialized.fill_(True)

    def forward(self, x):
        if not bool(self.initialized):
            # calibration pass: pick alpha, and hand the hard output on so that later layers calibrate on it
            self.init_from(x)
            return self.quantize_hard(x / self.alpha) * self.alpha
        r = x / self.alpha
        if self.training or self.soft_eval:
            q = self.quantize_soft(r)
        else:
            q = self.quantize_hard(r)
        return q * self.alpha

    def extra_repr(self):
        return f"bits={self.bits}, signed={self.signed}, alpha=2^{int(math.log2(float(self.alpha)))}"


def anneal(model, epoch, epochs, restart=0, **temps):
    """Set every shift quantizer's temperature for ``epoch`` (0-based) by :func:`temperature`.

    The last epoch trains the soft function at the final temperature (``T_END`` with a restart, ``T_MID``
    without) and marks the quantizers ``hard`` (annealed; export may read them).
    """
    t = temperature(epoch, epochs, restart, **temps)
    for m in model.modules():
        if isinstance(m, ShiftQuantizer):
            m.temperature.fill_(t)
            m.hard.fill_(epoch >= epochs - 1)
    return t


@contextlib.contextmanager
def soft_forward(model):
    """Within the block, shift quantizers in eval mode compute the soft function at their temperature."""
    mods = [m for m in model.modules() if isinstance(m, ShiftQuantizer)]
    for m in mods:
        m.soft_eval = True
    try:
        yield model
    finally:
        for m in mods:
            m.soft_eval = False
