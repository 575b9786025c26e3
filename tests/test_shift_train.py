"""Differentiable shift quantization (docs/quantization.md): gradients below the lowest level, soft == hard
at the final temperature, the error-minimising power-of-two alpha, and a short fine-tune."""

import math

import pytest
import torch

from rootshift.sw.quant import ShiftQuantizer, anneal
from rootshift.sw.quant.shift import (RESTART_LR, T_END, T_MID, T_START, band, restart_epochs, soft_forward, temperature,
                                      warm_restart)


def brute_alpha(q, x, ks=range(-24, 8)):
    """argmin over 2**k of the hard quantizer's squared error; ties to the larger alpha."""
    best = None
    for k in ks:
        a = 2.0**k
        err = ((q.quantize_hard(x / a) * a - x) ** 2).sum().item()
        if best is None or err <= best[1]:
            best = (a, err)
    return best[0]


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_gradient_reaches_weights_below_lowest_level(bits):
    g = torch.Generator().manual_seed(bits)
    w0 = torch.randn(8, 64, generator=g)
    q = ShiftQuantizer(bits, signed=True, weight=w0)
    lowest = float(q.levels[0] * q.alpha)
    w = (torch.rand(1000, generator=g) * 2 - 1) * lowest * 0.99  # every |w| below the lowest level
    w.requires_grad_()
    q.train()
    q(w).sum().backward()
    assert (w.grad != 0).all()  # at T_START the sign step is soft across the whole (-l0, l0)
    # and a weight can change sign by gradient descent alone, at the final temperature
    q.temperature.fill_(T_END)
    v = torch.tensor([0.01 * lowest], requires_grad=True)
    opt = torch.optim.SGD([v], lr=0.1 * lowest)
    for _ in range(50):
        opt.zero_grad()
        ((q(v) + float(q.alpha)) ** 2).sum().backward()  # pull toward -alpha
        opt.step()
    assert v.item() < 0
    q.eval()
    assert q(v).item() < 0


def test_schedule_main_phase_then_warm_restart():
    """T: 1 -> T_MID over the main phase, T_MID -> T_END over the restart (last third with shift activations)."""
    assert restart_epochs(15, True) == 5 and restart_epochs(15, False) == 0 and restart_epochs(2, True) == 0
    assert warm_restart(True, 2) and not warm_restart(True, 3) and not warm_restart(True, 4) and not warm_restart(False, 2)
    ts = [temperature(e, 15, 5) for e in range(15)]
    assert ts == sorted(ts) and ts[0] == T_START and ts[9] == T_MID and ts[-1] == T_END
    assert T_MID < ts[10] < T_END  # the restart raises T from its first epoch on
    plain = [temperature(e, 15) for e in range(15)]
    assert plain == sorted(plain) and plain[-1] == T_MID  # no restart (weight-only): ends at T_MID
    from rootshift.sw.train import lr_factor

    f = lr_factor(150, 50)
    assert f(0) == 1.0 and f(99) < 0.001 and f(100) == RESTART_LR and f(150) == 0.0
    assert all(f(s) >= f(s + 1) for s in range(100, 150))
    g = lr_factor(150)  # without a restart: one cosine
    assert g(0) == 1.0 and abs(g(75) - 0.5) < 1e-12 and g(150) == 0.0


@pytest.mark.parametrize("signed, bits, restart", [(True, 2, 3), (True, 4, 0), (False, 2, 3), (False, 3, 0)])
def test_soft_equals_hard_at_final_temperature(signed, bits, restart):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(20000, generator=g) * 0.7 if signed else torch.relu(torch.randn(20000, generator=g))
    q = ShiftQuantizer(bits, signed=signed, weight=x if signed else None)
    if not signed:
        q.init_from(x)
    anneal(q, 9, 10, restart)  # the last epoch: final temperature, marked hard
    t = T_END if restart else T_MID
    assert float(q.temperature) == t and bool(q.hard)
    q.train()
    soft = q(x)
    with soft_forward(q.eval()):
        assert torch.equal(q(x), soft)
    hard = q(x)
    r = x / q.alpha
    lv = q.soft_levels
    rc = r.clamp(float(lv[0]), float(lv[-1]))
    i = torch.bucketize(rc, lv, right=True).clamp(1, len(lv) - 1)
    u = (rc - lv[i - 1]) / (lv[i] - lv[i - 1])
    far = (u - 0.5).abs() >= band(t)
    assert torch.equal(soft[far], hard[far])  # exact off the band of width 1/T around each midpoint
    gap = (lv[i] - lv[i - 1]) * q.alpha
    assert ((soft - hard).abs() <= gap / 2 + 1e-6).all()  # and never more than half a step inside it
    assert far.float().mean() > 1 - 1 / t - 0.05  # the band holds about 1/T of the data


@pytest.mark.parametrize("signed, bits", [(True, 2), (True, 3), (False, 2), (False, 4)])
def test_alpha_is_error_minimising_power_of_two(signed, bits):
    g = torch.Generator().manual_seed(bits)
    x = torch.randn(5000, generator=g) * 3.0
    if not signed:
        x = torch.relu(x)
    x[0] = 40.0  # one outlier: the 99.9th-percentile rule would be pulled toward it
    q = ShiftQuantizer(bits, signed=signed, weight=x if signed else None)
    if not signed:
        q(x)  # calibration pass
    a = float(q.alpha)
    assert math.log2(a) == round(math.log2(a))
    assert a == brute_alpha(q, x)
    # a known case: 2-bit weights +-{a/2, a} on values +-{0.5, 1}: alpha 1 is exact
    if signed and bits == 2:
        q2 = ShiftQuantizer(2, signed=True, weight=torch.tensor([0.5, -1.0, 1.0, -0.5, 0.51]))
        assert float(q2.alpha) == 1.0


def test_calibration_pass_returns_hard_output():
    q = ShiftQuantizer(2, signed=False)
    x = torch.rand(1000) * 3
    y = q(x)  # first call: alpha from x, and the hard output
    assert torch.equal(y, q.quantize_hard(x / q.alpha) * q.alpha)
    assert float(q.temperature) == T_START


def test_shift_finetune_smoke(tmp_path):
    """A 1-epoch fp run, then short shift W2A2 and weight-only W2 fine-tunes from it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model: more threads only spin on a shared machine
    try:
        _finetunes(tmp_path)
    finally:
        torch.set_num_threads(threads)


def _finetunes(tmp_path):
    from rootshift.sw.train import TrainConfig, load_checkpoint, model_from_checkpoint, train

    train(TrainConfig(out=str(tmp_path / "fp"), wq="fp", aq="fp", epochs=1), progress=False)
    init = str(tmp_path / "fp" / "checkpoint.pt")
    for aq, epochs in (("shift", 3), ("fp", 1)):
        out = tmp_path / f"w2-{aq}"
        m = train(TrainConfig(out=str(out), wq="shift", aq=aq, wbits=2, abits=2, epochs=epochs, init=init),
                  progress=False)
        assert m["test_acc"] > 0.5, m
        if aq == "shift":  # 3 epochs: the last one is the warm restart
            h = m["history"]
            assert [e["temperature"] for e in h[1:]] == [T_MID, T_END]
            assert h[1]["lr"] == pytest.approx(0.025) and h[2]["lr"] == pytest.approx(0.05 * RESTART_LR)
        model, _ = model_from_checkpoint(load_checkpoint(out))
        qs = [mod for mod in model.modules() if isinstance(mod, ShiftQuantizer)]
        assert qs and all(bool(mod.hard) for mod in qs)
        assert any(not mod.signed for mod in qs) == (aq == "shift")


def test_recalibrate_bn_uses_the_hard_network():
    from rootshift.sw.layers import recalibrate_bn

    g = torch.Generator().manual_seed(3)
    q = ShiftQuantizer(2, signed=False)
    conv = torch.nn.Conv2d(2, 3, 1, bias=False)
    bn = torch.nn.BatchNorm2d(3)
    model = torch.nn.Sequential(q, conv, bn)
    xs = [torch.rand(4, 2, 5, 5, generator=g) * 3 for _ in range(3)]
    q(xs[0])  # calibrate alpha
    q.temperature.fill_(1.0)
    model.train()
    model(xs[1])  # running stats of the soft network
    w = conv.weight.detach().clone()
    recalibrate_bn(model, xs)
    assert model.training and torch.equal(conv.weight, w) and bn.momentum == 0.1
    y = torch.cat([conv(q.quantize_hard(x / q.alpha) * q.alpha) for x in xs])
    assert torch.allclose(bn.running_mean, y.mean((0, 2, 3)), atol=1e-5)


def test_gradient_clipping_only_with_shift_activations(tmp_path, monkeypatch):
    """Every step of a run with 2-bit shift activations clips the gradient norm at CLIP_NORM; weight-only runs
    and 3-bit activations don't."""
    from rootshift.sw.quant.shift import CLIP_NORM
    from rootshift.sw.train import TrainConfig, train

    calls = []
    orig = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda ps, n, *a, **k: calls.append(n) or orig(ps, n, *a, **k))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        m = train(TrainConfig(out=str(tmp_path / "wa"), wq="shift", aq="shift", wbits=2, abits=2, epochs=1), progress=False)
        steps = math.ceil(1437 / 64)  # digits: 1437 training images, batch 64
        assert calls == [CLIP_NORM] * steps and m["history"][0]["temperature"] == T_START
        calls.clear()
        train(TrainConfig(out=str(tmp_path / "w"), wq="shift", aq="fp", wbits=2, epochs=1), progress=False)
        assert calls == []
        train(TrainConfig(out=str(tmp_path / "w3"), wq="shift", aq="shift", wbits=3, abits=3, epochs=1), progress=False)
        assert calls == []  # 3-bit activations: no warm restart, no clipping
    finally:
        torch.set_num_threads(threads)
