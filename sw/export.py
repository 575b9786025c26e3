"""Export a trained checkpoint into the integer contract (docs/arithmetic.md): an :class:`IntModel`.

BatchNorm, alpha / LSQ steps and the input step fold into per-channel fixed-point multipliers and
biases; weight codes stay pure codes. Every check that could make the integer model silently wrong
(an unsupported scheme, an accumulator or multiplier that would overflow) raises with the layer name.
"""

import math
import numpy as np
import torch
from torch import nn

from . import contract as C
from .errors import ConfigError
from .intmodel import IntModel
from .layers import QConv2d, QLinear
from .models import BasicBlock, ResNet
from .numfmt import PowerFormat
from .quant import APoTQuantizer, ASQActivation, ASQAdapter, InputCodes, LSQActivation, LSQWeight, PowerQuantizer, ShiftQuantizer

SUPPORTED_W = ("post", "pot", "shift", "lsq")
SUPPORTED_A = ("asq", "lsq", "shift", "input8")


def _bn_affine(bn, cout):
    if bn is None:
        return np.ones(cout), np.zeros(cout)
    g = bn.weight.detach().double() / torch.sqrt(bn.running_var.detach().double() + bn.eps)
    b = bn.bias.detach().double() - g * bn.running_mean.detach().double()
    return g.numpy(), b.numpy()


def _fit_shift(m_real, name):
    """Per-layer shift S with ``max |round(m * 2**S)| < 2**(M_BASE_BITS - 1)``, S in 1..62."""
    top = float(np.max(np.abs(m_real)))
    if not np.isfinite(top) or top == 0:
        raise ConfigError(f"layer {name}: requantization multiplier is {top} (dead channel scales or BN)")
    s = (C.M_BASE_BITS - 2) - math.floor(math.log2(top))
    if s > 62:
        s = 62
    if s < 1:
        raise ConfigError(f"layer {name}: requantization multiplier {top:.3g} is too large for "
                          f"{C.M_BASE_BITS}-bit multipliers (shift would be {s})")
    return s


def _quant_op(name, aq, in_name, out_name, channels):
    if isinstance(aq, InputCodes):
        return {"op": "quant", "name": name, "in": in_name, "out": out_name, "kind": "input8", "bits": 8}
    if isinstance(aq, (ASQActivation, LSQActivation)):
        s = float(aq.step.detach())
        if not s > 0:
            raise ConfigError(f"layer {name}: activation step is {s}, must be positive")
        k_step = round(2.0**C.QUANT_SHIFT / s)
        if k_step >= 2**62:
            raise ConfigError(f"layer {name}: activation step {s:.3g} is too small (K_s would overflow 62 bits)")
        op = {"op": "quant", "name": name, "in": in_name, "out": out_name, "bits": aq.bits,
              "kind": "asq" if isinstance(aq, ASQActivation) else "lsq", "k_step": int(k_step), "step": s}
        if isinstance(aq, ASQActivation):
            op["adapter"] = _adapter_int(aq.adapter_beta, name)
        return op
    if isinstance(aq, ShiftQuantizer) and not aq.signed:
        if not bool(aq.hard):
            raise ConfigError(f"layer {name}: shift quantizer not annealed to hard (train to the last epoch first)")
        return {"op": "quant", "name": name, "in": in_name, "out": out_name, "kind": "shift", "bits": aq.bits,
                "log2_alpha": _log2_pow2(aq.alpha, name), "max_exponent": int(aq.max_exponent)}
    raise ConfigError(f"layer {name}: activation scheme {getattr(aq, 'scheme', type(aq).__name__)} has no integer "
                      f"contract; export supports {', '.join(SUPPORTED_A[:3])} activations")


def _log2_pow2(alpha, name):
    """``log2(alpha)`` for a power-of-two scale, within the contract's range; else a named error."""
    a = float(alpha)
    m, e = math.frexp(a) if math.isfinite(a) and a > 0 else (0.0, 0)
    if m != 0.5 or not abs(e - 1) <= C.LOG2_ALPHA_MAX:
        raise ConfigError(f"layer {name}: shift scale alpha = {a!r} is not a power of two 2^A with |A| <= "
                          f"{C.LOG2_ALPHA_MAX}")
    return e - 1


def _int_linear(w, b, name, extra_frac=0):
    """Integer weights ``round(W * 2**f)`` with ``max |W_q| < 2**15`` and bias in units ``2**-(16 + f)``."""
    w = w.detach().double().numpy()
    top = float(np.abs(w).max())
    f = 14 - math.floor(math.log2(top)) if top > 0 else 14
    f = max(0, min(f, 40))
    wq = np.floor(w * 2.0**f + 0.5).astype(np.int64)
    bq = np.floor(b.detach().double().numpy() * 2.0 ** (C.FINE_FRAC + f) + 0.5).astype(np.int64)
    return wq, bq, f


def _adapter_int(ad, name):
    out = {}
    if ad.hidden is not None:
        out["w1"], out["b1"], out["f1"] = _int_linear(ad.hidden.weight, ad.hidden.bias, name)
    out["w2"], out["b2"], out["f2"] = _int_linear(ad.out.weight, ad.out.bias, name)
    return out


def _weight_codes(layer, name, mode):
    """(codes, format dict or None, scheme, base, mode, per-channel real scale of one accumulator unit)."""
    wq = layer.wq
    w = layer.weight.detach()
    if isinstance(wq, PowerQuantizer):
        fmt = wq.format
        codes = wq.encode(w).numpy().astype(np.int64)
        alpha = wq.alpha.detach().double().numpy()
        if fmt.base == "sqrt2":
            if mode not in ("dual", "lut"):
                raise ConfigError(f"product mode must be dual or lut for POST, not {mode!r}")
            unit = alpha * 2.0**-fmt.max_shift * (2.0**-C.LUT_FRAC if mode == "lut" else 1.0)
            return codes, fmt, wq.scheme, "sqrt2", mode, unit
        return codes, fmt, wq.scheme, "2", "shift", alpha * 2.0**-fmt.max_shift
    if isinstance(wq, ShiftQuantizer):
        if not bool(wq.hard):
            raise ConfigError(f"layer {name}: shift quantizer not annealed to hard (train to the last epoch first)")
        fmt = PowerFormat(wq.bits, "2", wq.max_exponent, has_zero=False)
        alpha = float(wq.alpha)
        r = (w.double() / alpha).numpy()
        lv = wq.levels.double().numpy()  # 2**-(n-1) .. 1
        mags = np.clip(np.abs(r), lv[0], lv[-1])
        mids = (lv[1:] + lv[:-1]) / 2
        idx = np.searchsorted(mids, mags, side="right")  # index into ascending levels
        e = (len(lv) - 1) - idx
        codes = ((r < 0).astype(np.int64) << (wq.bits - 1)) | e
        return codes, fmt, "shift", "2", "shift", np.full(w.shape[0], alpha * 2.0**-fmt.max_shift)
    if isinstance(wq, LSQWeight):
        codes = wq.encode(w).numpy().astype(np.int64)
        return codes, None, "lsq", None, "mult", wq.step.detach().double().numpy()
    scheme = getattr(wq, "scheme", "fp") if wq is not None else "fp"
    raise ConfigError(f"layer {name}: weight scheme {scheme} has no integer contract; "
                      f"export supports {', '.join(SUPPORTED_W)} weights")


def _layer_op(layer, name, bn, in_name, out_name, relu, in_step, mode):
    codes, fmt, scheme, base, lmode, unit = _weight_codes(layer, name, mode)
    cout = codes.shape[0]
    abits = layer.aq.bits
    k = int(np.prod(codes.shape[1:]))
    act_e = None
    if isinstance(layer.aq, ShiftQuantizer):
        if lmode != "shift":
            raise ConfigError(f"layer {name}: shift activations need power-of-two weights (shift or pot) for the "
                              f"shift2 product; {scheme} weights have no integer contract with them")
        lmode, act_e = "shift2", int(layer.aq.max_exponent)
    bound = C.acc_bound(lmode, k, abits, fmt, layer.wq.bits, act_e)
    width = C.acc_width(bound)
    if width > C.acc_max_bits(lmode):
        raise ConfigError(f"layer {name}: accumulator would overflow: worst case {bound} needs {width} bits, "
                          f"the contract allows {C.acc_max_bits(lmode)} (K={k}, abits={abits}); lower --max-shift or bits")
    g, b = _bn_affine(bn, cout)
    if isinstance(layer, QLinear) and layer.bias is not None:
        b = b + g * layer.bias.detach().double().numpy()
    m_acc = in_step * unit * g * 2.0**C.FINE_FRAC
    if lmode == "dual":
        reals = {"even": m_acc, "odd": m_acc / math.sqrt(2.0)}
    else:
        reals = {"acc": m_acc}
    shift = _fit_shift(np.concatenate(list(reals.values())), name)
    m_base = {k: np.floor(v * 2.0**shift + 0.5).astype(np.int64) for k, v in reals.items()}
    bias = np.floor(b * 2.0 ** (C.FINE_FRAC + shift) + 0.5).astype(np.int64)
    if np.abs(bias).max(initial=0) >= 2**61:
        raise ConfigError(f"layer {name}: requantization bias overflows 62 bits")
    op = {"op": "conv" if isinstance(layer, QConv2d) else "linear", "name": name, "in": in_name, "out": out_name,
          "cin": int(codes.shape[1]), "cout": cout, "scheme": scheme, "base": base, "mode": lmode,
          "wbits": layer.wq.bits, "abits": abits, "codes": codes, "m_base": m_base, "bias": bias, "shift": shift,
          "relu": bool(relu), "acc_bits": width, "acc_bound": int(bound), "k": k}
    if act_e is not None:
        op["act_max_exponent"] = act_e
    if fmt is not None:
        op["format"] = {"bits": fmt.bits, "base": fmt.base, "max_exponent": fmt.max_exponent, "has_zero": fmt.has_zero}
    if isinstance(layer, QConv2d):
        op.update(kernel=list(layer.kernel_size), stride=layer.stride[0], pad=layer.padding[0])
    return op


def _in_step(aq):
    """Real value of one unit of the layer's activation factor (a code, or shift2's ``2**(E_a - e)``)."""
    if isinstance(aq, InputCodes):
        return 1.0 / 255.0
    if isinstance(aq, ShiftQuantizer):
        return float(aq.alpha) * 2.0 ** -int(aq.max_exponent)
    return float(aq.step.detach())


class _Builder:
    def __init__(self, mode):
        self.ops, self.mode = [], mode

    def layer(self, layer, name, bn, x, relu):
        if not isinstance(layer, (QConv2d, QLinear)) or layer.aq is None:
            raise ConfigError(f"layer {name}: not quantized (every layer must be, first and last included)")
        a = f"{name}.a"
        channels = layer.in_channels if isinstance(layer, QConv2d) else layer.in_features
        self.ops.append(_quant_op(f"{name}.aq", layer.aq, x, a, channels))
        out = f"{name}.y"
        op = _layer_op(layer, name, bn, a, out, relu, _in_step(layer.aq), self.mode)
        op["beta_from"] = f"{name}.aq"
        self.ops.append(op)
        return out


def check_finite(model):
    """Refuse NaN or infinity in any parameter or float buffer (weights, BN, adapters, steps, alpha),
    naming the tensor: a non-finite value exports to a silently wrong integer model."""
    for kind, named in (("parameter", model.named_parameters()), ("buffer", model.named_buffers())):
        for n, t in named:
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                bad = int((~torch.isfinite(t)).sum())
                raise ConfigError(f"{kind} {n} has {bad} non-finite value(s) (NaN or infinity); "
                                  f"the model cannot be exported")


def export_model(model, mode="dual", input_shape=None, meta=None):
    """Build the :class:`IntModel` of a quantized :class:`~sw.models.ResNet` (eval-mode BN statistics)."""
    if mode not in ("dual", "lut"):
        raise ConfigError(f"product mode must be 'dual' or 'lut', not {mode!r}")
    if not isinstance(model, ResNet):
        raise ConfigError(f"cannot export {type(model).__name__}: only rootshift ResNets are supported")
    for n, m in model.named_modules():
        if not isinstance(m, SUPPORTED_MODULES):
            raise ConfigError(f"unsupported layer {n} ({type(m).__name__}) for the integer contract")
    check_finite(model)
    model = model.eval()
    b = _Builder(mode)
    ops = b.ops
    ops.append({"op": "input", "out": "input", "bits": 8, "shape": list(input_shape) if input_shape else None})
    x = b.layer(model.conv1, "conv1", model.bn1, "input", relu=True)
    if model.maxpool is not None:
        ops.append({"op": "maxpool", "name": "maxpool", "in": x, "out": "maxpool.y", "kernel": 3, "stride": 2, "pad": 1})
        x = "maxpool.y"
    for si, stage in enumerate(model.stages):
        for bi, blk in enumerate(stage):
            p = f"stages.{si}.{bi}"
            h = b.layer(blk.conv1, f"{p}.conv1", blk.bn1, x, relu=True)
            h = b.layer(blk.conv2, f"{p}.conv2", blk.bn2, h, relu=False)
            sc = x if blk.shortcut is None else b.layer(blk.shortcut[0], f"{p}.shortcut.0", blk.shortcut[1], x, relu=False)
            ops.append({"op": "add_relu", "name": f"{p}.add", "in": [h, sc], "out": f"{p}.out"})
            x = f"{p}.out"
    ops.append({"op": "avgpool", "name": "pool", "in": x, "out": "pool.y"})
    b.layer(model.fc, "fc", None, "pool.y", relu=False)
    out_meta = {"contract": C.CONTRACT_VERSION, "arch": model.arch, "mode": mode, "output": "fc.y",
                "num_classes": model.fc.out_features}
    out_meta.update(meta or {})
    return IntModel(out_meta, ops)


SUPPORTED_MODULES = (ResNet, BasicBlock, ASQAdapter, APoTQuantizer, QConv2d, QLinear, nn.BatchNorm2d, nn.Sequential, nn.ModuleList, nn.AdaptiveAvgPool2d,
                     nn.MaxPool2d, ASQActivation, LSQActivation, InputCodes, PowerQuantizer, LSQWeight, ShiftQuantizer,
                     nn.Linear, nn.Conv2d)


def export_checkpoint(ck, mode="dual", reference=True):
    """Export a loaded training checkpoint; with ``reference`` also record the fake-quantized float
    model's test-set top-1 (for ``agreement_with_float``) and the integer adapters' beta error."""
    from .data import load_dataset, to_input
    from .train import model_from_checkpoint

    model, cfg = model_from_checkpoint(ck)
    meta = {"train_config": {k: v for k, v in ck["config"].items() if k != "overrides"},
            "schemes": ck.get("schemes"), "dataset": ck.get("dataset")}
    ds = load_dataset(cfg.data, cfg.image_size)
    meta["input_shape"] = [ds.in_channels, ds.image_size, ds.image_size]
    im = export_model(model, mode, meta["input_shape"], meta)
    if reference and ds.test.x is not None:
        with torch.no_grad():
            preds = []
            for i in range(0, len(ds.test), 256):
                xb, _ = ds.test.batch(range(i, min(len(ds.test), i + 256)))
                preds.append(model(to_input(xb)).argmax(1))
            preds = torch.cat(preds).numpy()
        im.meta["float_reference"] = {"data": cfg.data, "split": "test", "top1": preds.astype(np.int64),
                                      "test_acc": float((preds == ds.test.y.numpy()).mean())}
        im.meta["adapter_beta_error"] = adapter_beta_error(model, im, ds)
    return im


def adapter_beta_error(model, im, ds, n=64):
    """Largest relative difference between float beta and the integer adapter's, per ASQ layer, on
    ``n`` test images (the integer adapter sees the golden model's fine activations)."""
    from .data import to_input
    from .golden import run

    xb, _ = ds.test.batch(range(min(n, len(ds.test))))
    trace = {}
    run(im, xb.numpy(), trace=trace)
    captured = {}
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, ASQActivation):
            def hook(mod, inp, out, name=name):
                captured[name] = mod.beta(inp[0]).detach().double().view(-1).numpy()
            hooks.append(m.register_forward_hook(hook))
    with torch.no_grad():
        model(to_input(xb))
    for h in hooks:
        h.remove()
    out = {}
    for name, beta_f in captured.items():
        beta_i = trace["beta"][name] / 2.0**C.FINE_FRAC
        out[name] = float(np.max(np.abs(beta_i - beta_f) / np.maximum(np.abs(beta_f), 1e-12)))
    return out
