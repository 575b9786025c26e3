"""ASQ activations (adaptive step size): step ``s * beta(x)``, one ``beta`` per sample and layer.

``beta`` comes from a small adapter on the layer input: global average pool, ``Linear(C, C/4)``, ReLU,
``Linear(C/4, 1)``, ReLU (a single ``Linear(C, 1)`` + ReLU when ``C < 8``), clamped at 1e-8. The last
linear layer starts with bias 1 and weights ~ N(0, 0.01), so training starts as plain LSQ.
The gradient scale of ``s`` uses ``N = C*H*W`` (the elements of one sample's activation), as LSQ does
for a per-tensor step. See docs/quantization.md for the dead-adapter failure mode and its remedy.
"""

import math
import warnings

import torch
from torch import nn

from ..errors import check_bits
from .common import grad_scale, round_pass

BETA_MIN = 1e-8


class ASQAdapter(nn.Module):
    """``beta(x)``: GAP -> Linear(C, C/4) -> ReLU -> Linear(C/4, 1) -> ReLU, clamped at 1e-8.

    Members
    -------
    hidden : Linear or None
        Absent when ``C < 8``.
    out : Linear
        Produces one pre-activation per sample; ``dead_batches`` counts batches where it was
        ``<= 0`` for every sample (no gradient can flow: the adapter is dead).
    """

    def __init__(self, channels):
        super().__init__()
        self.channels = channels
        if channels >= 8:
            self.hidden = nn.Linear(channels, channels // 4)
            self.out = nn.Linear(channels // 4, 1)
        else:
            self.hidden = None
            self.out = nn.Linear(channels, 1)
        self.reset_out()
        self.register_buffer("dead_batches", torch.tensor(0))
        self.register_buffer("seen_batches", torch.tensor(0))

    def reset_out(self):
        """Restart from beta = 1 (the initialisation, also the documented revive remedy)."""
        with torch.no_grad():
            nn.init.normal_(self.out.weight, 0.0, 0.01)
            self.out.bias.fill_(1.0)

    def forward(self, x):
        z = x.mean(dim=(2, 3)) if x.dim() == 4 else x
        if self.hidden is not None:
            z = torch.relu(self.hidden(z))
        pre = self.out(z)
        if self.training:
            with torch.no_grad():
                self.seen_batches += 1
                self.dead_batches += bool((pre <= 0).all())
        return torch.relu(pre).clamp_min(BETA_MIN)


class ASQActivation(nn.Module):
    """Unsigned activation quantizer with step ``s * beta(x)`` (codes ``0 .. 2**b - 1``)."""

    scheme = "asq"

    def __init__(self, channels, bits):
        super().__init__()
        self.bits = check_bits("activation bits", bits)
        self.qp = 2**bits - 1
        self.step = nn.Parameter(torch.tensor(1.0))
        self.register_buffer("initialized", torch.tensor(False))
        self.adapter_beta = ASQAdapter(channels)

    def init_from(self, x):
        with torch.no_grad():
            self.step.fill_(max(2 * x.abs().mean().item() / math.sqrt(self.qp), 1e-6))
            self.initialized.fill_(True)

    def beta(self, x):
        return self.adapter_beta(x)

    def forward(self, x):
        if not bool(self.initialized):
            self.init_from(x)
        n = x[0].numel()
        s = grad_scale(self.step, 1.0 / math.sqrt(n * self.qp))
        beta = self.beta(x).view(-1, *([1] * (x.dim() - 1)))
        step = s * beta
        return torch.clamp(round_pass(x / step), 0, self.qp) * step

    def extra_repr(self):
        return f"bits={self.bits}"


def check_adapters(model, revive=False, threshold=1.0):
    """Warn (naming the layer) about adapters dead for ``threshold`` of the batches since the last call.

    With ``revive=True`` a dead adapter's output layer is re-initialised (beta back to 1). Returns the
    names of the dead adapters. Counters are reset.
    """
    dead = []
    for name, m in model.named_modules():
        if isinstance(m, ASQAdapter) and int(m.seen_batches) > 0:
            if int(m.dead_batches) >= threshold * int(m.seen_batches):
                dead.append(name)
                msg = f"ASQ adapter {name} is dead: beta was clamped at {BETA_MIN} for every sample"
                if revive:
                    m.reset_out()
                    msg += "; revived (output layer re-initialised to beta = 1)"
                else:
                    msg += "; pass --asq-revive to re-initialise it"
                warnings.warn(msg, RuntimeWarning, stacklevel=2)
            m.dead_batches.zero_()
            m.seen_batches.zero_()
    return dead
