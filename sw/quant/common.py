"""Straight-through helpers shared by the quantizers (see docs/quantization.md)."""

import torch


def grad_scale(x, scale):
    """Identity in the forward pass; multiplies the gradient by ``scale`` (LSQ, Esser et al. 2019)."""
    y = x * scale
    return (x - y).detach() + y


def ste(hard, soft):
    """Forward ``hard``, backward the gradient of ``soft`` (straight-through estimator)."""
    return (hard - soft).detach() + soft


def round_half_up(x):
    """Round to nearest, ties toward +inf: the same rule as the integer contract's rounding shift."""
    return torch.floor(x + 0.5)


def round_pass(x):
    """Round half up in the forward pass, identity gradient in the backward pass."""
    return ste(round_half_up(x), x)


def per_channel_view(t, ndim):
    """Reshape a per-output-channel vector so it broadcasts against a weight of ``ndim`` dims."""
    return t.view(-1, *([1] * (ndim - 1)))
