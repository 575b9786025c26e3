"""LSQ uniform quantizer (Esser et al. 2019): learned step, gradient scale ``1/sqrt(N * Q_p)``."""

import math

import torch
from torch import nn

from ..errors import check_bits
from .common import grad_scale, per_channel_view, round_half_up, round_pass


class LSQWeight(nn.Module):
    """Signed per-output-channel LSQ for weights: codes ``-2**(b-1) .. 2**(b-1)-1`` times ``step_c``.

    Members
    -------
    step : Parameter, shape (C,)
        Initialised at ``2 * mean|w_c| / sqrt(Q_p)`` as in the paper.
    """

    scheme = "lsq"

    def __init__(self, weight, bits):
        super().__init__()
        self.bits = check_bits("weight bits", bits)
        self.qn, self.qp = 2 ** (bits - 1), 2 ** (bits - 1) - 1
        flat = weight.detach().abs().reshape(weight.shape[0], -1)
        self.n_per_channel = flat.shape[1]
        self.step = nn.Parameter((2 * flat.mean(1) / math.sqrt(max(self.qp, 1))).clamp_min(1e-8))

    def forward(self, w):
        g = 1.0 / math.sqrt(self.n_per_channel * self.qp)
        s = per_channel_view(grad_scale(self.step, g), w.dim())
        return torch.clamp(round_pass(w / s), -self.qn, self.qp) * s

    def encode(self, w):
        s = per_channel_view(self.step.detach(), w.dim())
        return torch.clamp(round_half_up(w.detach() / s), -self.qn, self.qp).long()


class LSQActivation(nn.Module):
    """Unsigned per-tensor LSQ for post-ReLU activations: codes ``0 .. 2**b - 1`` times ``step``.

    The step is initialised from the first batch seen (``2 * mean|x| / sqrt(Q_p)``); call
    :func:`sw.layers.calibrate` before wrapping in DDP so every rank starts from the same value.
    """

    scheme = "lsq"

    def __init__(self, bits):
        super().__init__()
        self.bits = check_bits("activation bits", bits)
        self.qp = 2**bits - 1
        self.step = nn.Parameter(torch.tensor(1.0))
        self.register_buffer("initialized", torch.tensor(False))

    def init_from(self, x):
        with torch.no_grad():
            self.step.fill_(max(2 * x.abs().mean().item() / math.sqrt(self.qp), 1e-6))
            self.initialized.fill_(True)

    def forward(self, x):
        if not bool(self.initialized):
            self.init_from(x)
        n = x[0].numel()
        s = grad_scale(self.step, 1.0 / math.sqrt(n * self.qp))
        return torch.clamp(round_pass(x / s), 0, self.qp) * s

    def extra_repr(self):
        return f"bits={self.bits}"


class InputCodes(nn.Module):
    """Fixed 8-bit unsigned pixel codes: the model input is ``code / 255`` and stays exactly that."""

    scheme = "input8"
    bits = 8
    step_value = 1.0 / 255.0

    def forward(self, x):
        return torch.clamp(round_half_up(x * 255.0), 0, 255) / 255.0
