"""Quantizer math: exact level sets, closed-form rounding vs brute force, gradients, adapter, annealing."""

import math
import warnings

import numpy as np
import pytest
import torch

from rootshift.sw.numfmt import PowerFormat
from rootshift.sw.quant import (APoTQuantizer, ASQActivation, LSQActivation, LSQWeight, PowerQuantizer, ShiftQuantizer,
                      anneal, apot_magnitudes, check_adapters)
from rootshift.sw.quant.shift import hard_staircase, soft_staircase


def weight(c=4, k=27, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(c, k, generator=g)


def test_post_4bit_levels_are_exactly_sqrt2_powers():
    q = PowerQuantizer(weight(), 4, base="sqrt2")
    mags = q.magnitudes(torch.float64)
    expected = torch.tensor([2 ** (-e / 2) for e in range(6, -1, -1)], dtype=torch.float64)
    assert torch.allclose(mags, expected, rtol=0, atol=1e-7)
    assert mags.max() == 1.0 and abs(mags.min().item() - 2**-3) < 1e-9
    assert len(q.levels()) == 15  # 0 and +-7 magnitudes
    fmt = q.format
    assert len(fmt.all_codes()) == 16  # exactly 2**b codes: +0 and -0 both decode to 0
    vals = sorted(set(np.round(fmt.value(fmt.all_codes()), 12)))
    assert len(vals) == 15


def test_pot_is_base_two():
    q = PowerQuantizer(weight(), 4, base="2")
    assert torch.equal(q.magnitudes(), torch.tensor([2.0**-e for e in range(6, -1, -1)]))


def test_post_8bit_window_bounds_exponent():
    q = PowerQuantizer(weight(), 8, base="sqrt2", max_shift=7)
    assert q.max_exponent == 15 and q.format.max_shift == 7
    full = PowerQuantizer(weight(), 8, base="sqrt2", max_exponent=126)
    assert abs(full.magnitudes()[0].item() - 2.0**-63) / 2.0**-63 < 1e-5


def brute_force_nearest(r, levels):
    """argmin over every level, ties to the larger level."""
    d = (r[..., None] - levels).abs()
    best = d.min(-1, keepdim=True).values
    cand = torch.where(d <= best, levels.expand_as(d), torch.full_like(d, -1))
    return cand.max(-1).values


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 8])
@pytest.mark.parametrize("base", ["sqrt2", "2"])
@pytest.mark.parametrize("max_shift", [2, 7])
def test_closed_form_rounding_matches_brute_force(bits, base, max_shift):
    q = PowerQuantizer(weight(), bits, base=base, max_shift=max_shift)
    g = torch.Generator().manual_seed(bits)
    mags = q.magnitudes(torch.float64)
    r = torch.cat([torch.rand(20000, generator=g, dtype=torch.float64),
                   torch.rand(5000, generator=g, dtype=torch.float64) ** 8, mags,
                   torch.tensor([0.0, 1.0], dtype=torch.float64)])
    lv = torch.cat([torch.zeros(1, dtype=torch.float64), mags])
    got = q.round_magnitude(r)
    assert torch.equal(got, brute_force_nearest(r, lv))
    # exact midpoints go to the larger level (brute force can't decide them: |r - l| differ by an ulp)
    mids = (lv[1:] + lv[:-1]) / 2
    assert torch.equal(q.round_magnitude(mids), lv[1:])


def test_closed_form_is_linear_memory():
    q = PowerQuantizer(weight(), 8, base="sqrt2", max_exponent=126)
    r = torch.rand(2_000_000)
    out = q.round_magnitude(r)  # an argmin over 127 levels would need 2e6 x 128 floats
    assert out.shape == r.shape


def test_encode_decode_round_trip():
    w = weight(8, 100)
    for base in ("sqrt2", "2"):
        q = PowerQuantizer(w, 5, base=base)
        codes = q.encode(w).numpy()
        fmt = q.format
        fmt.validate(codes)
        ref = (q(w) / q.alpha[:, None]).detach().double().numpy()
        assert np.allclose(fmt.value(codes), ref, atol=1e-6)


def test_power_quantizer_ste_and_alpha_gradient():
    w = torch.tensor([[0.5, -0.05, 3.0, -3.0]], requires_grad=True)
    q = PowerQuantizer(w.detach(), 4, base="sqrt2")
    with torch.no_grad():
        q.alpha.fill_(1.0)
    out = q(w)
    out.sum().backward()
    # STE: gradient 1 inside the clamp, 0 outside
    assert w.grad.tolist() == [[1.0, 1.0, 0.0, 0.0]]
    r = torch.tensor([0.5, -0.05, 1.0, -1.0])
    qv = torch.sign(r) * q.round_magnitude(r.abs())
    g = 1 / math.sqrt(4 * 7)
    expected = ((qv - r) * torch.tensor([1, 1, 0, 0]) + torch.tensor([0, 0, 1.0, -1.0])).sum() * g
    assert torch.allclose(q.alpha.grad, expected.reshape(1), atol=1e-6)


def test_alpha_initialised_at_99th_percentile():
    w = weight(3, 1000)
    q = PowerQuantizer(w, 4)
    assert torch.allclose(q.alpha, torch.quantile(w.abs(), 0.99, dim=1))


def test_apot_levels():
    m = apot_magnitudes(3, 2)  # 4-bit APoT weights: 3 magnitude bits
    assert len(m) == 7 and m.max() == 1.0
    raw = sorted({a + b for a in (0, 2**-1, 2**-3, 2**-5) for b in (0, 2**-2)} - {0})
    assert torch.allclose(m, torch.tensor(raw) / max(raw))
    q = APoTQuantizer(weight(), 4)
    r = torch.rand(1000)
    lv = torch.cat([torch.zeros(1), q.magnitudes()])
    assert torch.equal(q.round_magnitude(r), brute_force_nearest(r, lv))


def test_lsq_weight_codes_and_gradient():
    w = weight(2, 50).requires_grad_()
    q = LSQWeight(w.detach(), 4)
    out = q(w)
    codes = out / q.step[:, None]
    assert torch.allclose(codes, codes.round(), atol=1e-5)
    assert codes.min() >= -8 and codes.max() <= 7
    out.sum().backward()
    assert q.step.grad is not None and torch.isfinite(q.step.grad).all()


def test_asq_adapter_shapes_and_init():
    for c, hidden in ((16, 4), (64, 16), (4, None)):
        a = ASQActivation(c, 4)
        if hidden is None:
            assert a.adapter_beta.hidden is None and a.adapter_beta.out.in_features == c
        else:
            assert a.adapter_beta.hidden.out_features == hidden
        x = torch.rand(5, c, 6, 6)
        beta = a.beta(x)
        assert beta.shape == (5, 1)
        assert torch.allclose(beta, torch.ones_like(beta), atol=0.1)  # starts as LSQ
        y = a(x)
        steps = a.step * a.beta(x).view(-1, 1, 1, 1)
        codes = y / steps
        assert torch.allclose(codes, codes.round(), atol=1e-4) and codes.max() <= 15


def test_asq_gradients_reach_adapter():
    a = ASQActivation(16, 4)
    x = torch.rand(3, 16, 4, 4)
    a(x).pow(2).sum().backward()
    assert a.step.grad is not None and a.adapter_beta.out.weight.grad.abs().sum() > 0


def test_dead_adapter_is_detected_and_revived():
    model = torch.nn.Sequential(ASQActivation(16, 4))
    model.train()
    with torch.no_grad():
        model[0].adapter_beta.out.bias.fill_(-5.0)
    model(torch.rand(4, 16, 3, 3))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        dead = check_adapters(model, revive=True)
    assert dead == ["0.adapter_beta"]
    assert "0.adapter_beta" in str(w[0].message) and "revived" in str(w[0].message)
    assert model[0].adapter_beta.out.bias.item() == 1.0


def test_soft_staircase_limits():
    lv = torch.tensor([-1.0, -0.5, 0.5, 1.0])
    r = torch.rand(1000) * 2 - 1
    hard = hard_staircase(r, lv)
    u = (r[:, None] - lv[:-1]) / (lv[1:] - lv[:-1])
    inside = (u >= 0) & (u <= 1)
    dist = ((u - 0.5).abs() * inside + 9 * ~inside).min(1).values  # distance to a midpoint, interval widths
    for t in (1.0, 4.0, 64.0):
        soft = soft_staircase(r, lv, t)
        far = dist >= 1 / (2 * t)
        assert torch.equal(soft[far], hard[far])  # exactly hard outside the band
        assert torch.all(torch.diff(soft_staircase(torch.linspace(-1, 1, 5001), lv, t)) >= 0)  # monotone
    assert torch.all(soft_staircase(lv, lv, 4.0) == lv)  # through every level
    mids = (lv[1:] + lv[:-1]) / 2
    assert torch.allclose(soft_staircase(mids, lv, 4.0), mids)  # and every midpoint


def test_annealing_ends_hard_and_powers_of_two():
    model = torch.nn.ModuleList([ShiftQuantizer(4, signed=True, weight=weight()), ShiftQuantizer(4, signed=False)])
    temps = [anneal(model, e, 10) for e in range(10)]
    assert temps == sorted(temps) and temps[0] == 1.0
    assert bool(model[0].hard) and bool(model[1].hard)
    model.eval()  # eval is the hard quantizer
    w = weight()
    out = model[0](w)
    mant = (out / model[0].alpha).abs()
    assert torch.allclose(torch.log2(mant), torch.log2(mant).round(), atol=1e-6)  # exactly +-2^n
    assert torch.log2(model[0].alpha) == torch.log2(model[0].alpha).round()
    x = torch.rand(2, 3, 5, 5) * 4
    a = model[1](x)
    nz = a[a > 0] / model[1].alpha
    assert torch.allclose(torch.log2(nz), torch.log2(nz).round(), atol=1e-6)


def test_lsq_activation_unsigned_codes():
    a = LSQActivation(3)
    y = a(torch.rand(2, 4, 3, 3) * 3)
    c = y / a.step
    assert c.min() >= 0 and c.max() <= 7 and torch.allclose(c, c.round(), atol=1e-5)


def test_power_format_rejects_bad_codes():
    f = PowerFormat(4, "sqrt2", 4)
    with pytest.raises(ValueError, match="out of range"):
        f.validate(np.array([16]))
    with pytest.raises(ValueError, match="outside the window"):
        f.validate(np.array([5]))
    f.validate(np.array([7, 15, 4, 12]))  # zero codes and the window edge
    with pytest.raises(ValueError, match="bits must be an integer in 2..8"):
        PowerFormat(9)
