"""Quantized conv and linear layers, and building a quantized model from a float one.

A quantized layer quantizes its *input* activation (``aq``) and its weight (``wq``) and then runs the
float operation on the quantized values (fake quantization). BatchNorm stays a separate module during
training; export folds it into the requantizer (docs/arithmetic.md).
"""

from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError, check_bits
from .quant import (ACT_SCHEMES, WEIGHT_SCHEMES, APoTQuantizer, ASQActivation, InputCodes,
                    LSQActivation, LSQWeight, PowerQuantizer, ShiftQuantizer)


@dataclass(frozen=True)
class LayerScheme:
    """How one conv/linear layer is quantized."""

    wq: str = "post"
    wbits: int = 4
    aq: str = "asq"
    abits: int = 4
    max_shift: int = 7

    def __post_init__(self):
        if self.wq not in WEIGHT_SCHEMES:
            raise ConfigError(f"unknown weight scheme {self.wq!r}; choose one of {', '.join(WEIGHT_SCHEMES)}")
        if self.aq not in ACT_SCHEMES + ("input8",):
            raise ConfigError(f"unknown activation scheme {self.aq!r}; choose one of {', '.join(ACT_SCHEMES)}")
        check_bits("weight bits", self.wbits)
        check_bits("activation bits", self.abits)
        if not isinstance(self.max_shift, int) or not 1 <= self.max_shift <= 30:
            raise ConfigError(f"max_shift must be an integer in 1..30, not {self.max_shift!r}")


def make_weight_quantizer(s: LayerScheme, weight):
    if s.wq == "fp":
        return None
    if s.wq in ("post", "pot"):
        return PowerQuantizer(weight, s.wbits, base="sqrt2" if s.wq == "post" else "2", max_shift=s.max_shift)
    if s.wq == "apot":
        return APoTQuantizer(weight, s.wbits)
    if s.wq == "lsq":
        return LSQWeight(weight, s.wbits)
    if s.wq == "shift":
        return ShiftQuantizer(s.wbits, signed=True, weight=weight, max_shift=s.max_shift)
    raise ConfigError(f"unknown weight scheme {s.wq!r}")


def make_act_quantizer(s: LayerScheme, channels):
    if s.aq == "fp":
        return None
    if s.aq == "input8":
        return InputCodes()
    if s.aq == "asq":
        return ASQActivation(channels, s.abits)
    if s.aq == "lsq":
        return LSQActivation(s.abits)
    if s.aq == "shift":
        return ShiftQuantizer(s.abits, signed=False)
    raise ConfigError(f"unknown activation scheme {s.aq!r}")


class QConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose input and weight pass through quantizers ``aq`` and ``wq`` (None: float)."""

    def forward(self, x):
        if self.aq is not None:
            x = self.aq(x)
        w = self.wq(self.weight) if self.wq is not None else self.weight
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


class QLinear(nn.Linear):
    """``nn.Linear`` whose input and weight pass through quantizers ``aq`` and ``wq`` (None: float)."""

    def forward(self, x):
        if self.aq is not None:
            x = self.aq(x)
        w = self.wq(self.weight) if self.wq is not None else self.weight
        return F.linear(x, w, self.bias)


def _quantized_copy(layer, scheme):
    if isinstance(layer, nn.Conv2d):
        q = QConv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                    layer.padding, layer.dilation, layer.groups, layer.bias is not None)
        channels = layer.in_channels
    else:
        q = QLinear(layer.in_features, layer.out_features, layer.bias is not None)
        channels = layer.in_features
    q.load_state_dict(layer.state_dict())
    q.wq = make_weight_quantizer(scheme, q.weight)
    q.aq = make_act_quantizer(scheme, channels)
    q.scheme = scheme
    return q


def layer_schemes(model, wq="post", aq="asq", wbits=4, abits=4, first_wbits=8, last_wbits=8,
                  max_shift=7, overrides=None):
    """Scheme per conv/linear layer name. First conv: 8-bit pixel codes in; last linear: ``last_wbits``.

    ``overrides`` maps a layer name to a dict of LayerScheme fields, e.g. ``{"fc": {"wbits": 4}}``.
    """
    names = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    if not names:
        raise ConfigError("model has no conv or linear layer to quantize")
    base = LayerScheme(wq, wbits, aq, abits, max_shift)
    out = {}
    for n in names:
        s = base
        if n == names[0]:
            s = replace(s, wbits=first_wbits if wq != "fp" else wbits, aq="input8" if aq != "fp" else "fp")
        elif n == names[-1]:
            s = replace(s, wbits=last_wbits if wq != "fp" else wbits)
        out[n] = s
    for n, fields in (overrides or {}).items():
        if n not in out:
            raise ConfigError(f"override for unknown layer {n!r}; layers are {', '.join(names)}")
        out[n] = replace(out[n], **fields)
    return out


def quantize_model(model, schemes):
    """Return ``model`` with every conv/linear replaced by its quantized version (in place).

    ``schemes`` maps layer names to :class:`LayerScheme` (see :func:`layer_schemes`). Every conv and
    linear layer must have one: the hardware runs the whole network in integers.
    """
    targets = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    missing = [n for n, _ in targets if n not in schemes]
    if missing:
        raise ConfigError(f"no quantization scheme for layer(s) {', '.join(missing)}")
    for name, layer in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, _quantized_copy(layer, schemes[name]))
    model.schemes = {n: asdict(s) for n, s in schemes.items()}
    return model


@torch.no_grad()
def calibrate(model, x):
    """Initialise data-dependent quantizer state from one batch (before DDP, same batch on every rank)."""
    was = model.training
    model.train()
    model(x)
    model.train(was)


@torch.no_grad()
def recalibrate_bn(model, batches):
    """Re-estimate every BatchNorm's running statistics under the eval-mode (hard) quantizers.

    Training runs the soft shift staircase, so the running statistics describe the soft network;
    one pass over ``batches`` (model inputs) with every quantizer hard and no gradient makes them
    describe the network that is evaluated and exported. Weights and quantizer state do not change.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    was = model.training
    momenta = [m.momentum for m in bns]
    model.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
        m.train()
    for x in batches:
        model(x)
    for m, mom in zip(bns, momenta):
        m.momentum = mom
    model.train(was)
    return model
