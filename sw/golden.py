"""The golden model: the integer contract (docs/arithmetic.md) run on pixel codes, in int64 numpy.

Nothing on the path from codes to logits is floating point, the ASQ adapter included. The RTL is
checked against this model value by value (``sim``), and ``--dump`` writes every layer's integers.
"""

import numpy as np

from . import contract as C
from .errors import ConfigError
from .numfmt import PowerFormat


def layer_format(op):
    f = op.get("format")
    return PowerFormat(f["bits"], f["base"], f["max_exponent"], f["has_zero"]) if f else None


def layer_terms(op):
    """Per-accumulator integer weight matrices (Cout, K) of a conv/linear op (cached on the op)."""
    if "_terms" not in op:
        codes = np.asarray(op["codes"], np.int64).reshape(op["cout"], -1)
        if op["mode"] == "mult":
            op["_terms"] = {"acc": codes}
        else:
            op["_terms"] = C.weight_terms(codes, layer_format(op), op["mode"])
    return op["_terms"]


def layer_multipliers(op, beta_fx):
    """Per-sample requantization multipliers (N, Cout) for each accumulator, in accumulator order."""
    keys = ["even", "odd"] if op["mode"] == "dual" else ["acc"]
    mults = [C.beta_multiplier(op["m_base"][k], beta_fx, f"layer {op['name']}") for k in keys]
    return keys, mults


def layer_accumulate(op, a):
    """Accumulators of a conv/linear op on input codes ``a``: dict of (N, P, Cout), plus (Ho, Wo)."""
    terms = layer_terms(op)
    if op["op"] == "conv":
        kh, kw = op["kernel"]
        cols, ho, wo = C.im2col(a, kh, kw, op["stride"], op["pad"])
    else:
        cols, ho, wo = a.reshape(a.shape[0], 1, -1), 1, 1
    n, p, k = cols.shape
    accs = C.accumulate(cols.reshape(n * p, k), terms, op["mode"], op["abits"], op.get("act_max_exponent"))
    return {key: v.reshape(n, p, -1) for key, v in accs.items()}, (ho, wo)


def layer_forward(op, a, beta_fx):
    """One conv/linear op: codes (N, Cin, H, W) -> fine output (N, Cout, Ho, Wo) (or (N, Cout))."""
    accs, (ho, wo) = layer_accumulate(op, a)
    keys, mults = layer_multipliers(op, beta_fx)
    lo = 0 if op["relu"] else C.FINE_MIN
    y = C.requantize([accs[k] for k in keys], [m[:, None, :] for m in mults], op["bias"], op["shift"], lo, C.FINE_MAX)
    n = a.shape[0]
    if op["op"] == "linear":
        return y.reshape(n, -1), accs
    return y.reshape(n, ho, wo, -1).transpose(0, 3, 1, 2), accs


def quant_forward(op, x):
    """Activation quantization of fine ``x``: returns (codes, beta_fx per sample)."""
    n = x.shape[0]
    if op["kind"] == "input8":
        return np.asarray(x, np.int64), np.full(n, 1 << C.FINE_FRAC, np.int64)
    if op["kind"] == "shift":  # powers of two: code 0 is zero, code e + 1 is alpha * 2**-e; beta = 1
        return C.shift_act_codes(x, op["log2_alpha"], op["max_exponent"]), np.full(n, 1 << C.FINE_FRAC, np.int64)
    if op["kind"] == "asq":
        ad = op["adapter"]
        beta = C.adapter_beta_int(x, ad.get("w1"), ad.get("b1"), ad.get("f1"), ad["w2"], ad["b2"], ad["f2"])
    else:
        beta = np.full(n, 1 << C.FINE_FRAC, np.int64)
    r = C.step_multiplier(op["k_step"], beta)
    shape = (n,) + (1,) * (x.ndim - 1)
    return C.quant_codes(x, r.reshape(shape), 2 ** op["bits"] - 1), beta


def maxpool(x, k, stride, pad):
    cols, ho, wo = C.im2col(x.reshape(-1, 1, *x.shape[2:]), k, k, stride, pad, pad_value=C.FINE_MIN)
    return cols.max(-1).reshape(x.shape[0], x.shape[1], ho, wo)


def avgpool(x):
    """Global average pool: ``rdiv(sum, H*W)`` (round half up)."""
    return C.rdiv(x.reshape(x.shape[0], x.shape[1], -1).sum(-1), x.shape[2] * x.shape[3])


def run(im, pixels, trace=None, batch=64):
    """Logits (N, classes) int64 for uint8 pixel codes (N, C, H, W).

    ``trace`` (a dict) receives every tensor by name (``trace["tensors"]``), each ASQ layer's
    ``beta_fx`` (``trace["beta"]``) and each layer's raw accumulators (``trace["acc"]``).
    """
    from .rsq import validate

    validate(im)  # the golden model runs only what the loader accepts: the bounds that keep int64 exact
    pixels = np.asarray(pixels)
    if pixels.ndim != 4:
        raise ConfigError(f"input must be (N, C, H, W) pixel codes, not shape {pixels.shape}")
    shape = im.meta.get("input_shape")
    if shape and list(pixels.shape[1:]) != list(shape):
        raise ConfigError(f"input shape {list(pixels.shape[1:])} does not match the model's {shape}")
    if pixels.min(initial=0) < 0 or pixels.max(initial=0) > 255:
        raise ConfigError("input pixel codes must be in 0..255")
    outs = []
    for i in range(0, len(pixels), batch):
        t = {} if trace is not None else None
        outs.append(_run_batch(im, pixels[i:i + batch].astype(np.int64), t))
        if trace is not None:
            for key, d in t.items():
                for name, v in d.items():
                    trace.setdefault(key, {}).setdefault(name, []).append(v)
    if trace is not None:
        for key, d in trace.items():
            for name in d:
                d[name] = np.concatenate(d[name]) if isinstance(d[name], list) else d[name]
    return np.concatenate(outs)


def _run_batch(im, pixels, trace):
    env, betas = {}, {}
    for op in im.ops:
        kind = op["op"]
        if kind == "input":
            env[op["out"]] = pixels
        elif kind == "quant":
            env[op["out"]], betas[op["name"]] = quant_forward(op, env[op["in"]])
            if trace is not None and op["kind"] == "asq":
                trace.setdefault("beta", {})[op["name"]] = betas[op["name"]]
        elif kind in ("conv", "linear"):
            env[op["out"]], accs = layer_forward(op, env[op["in"]], betas[op["beta_from"]])
            if trace is not None:
                for k, v in accs.items():
                    trace.setdefault("acc", {})[f"{op['name']}.{k}"] = v
        elif kind == "add_relu":
            a, b = (env[n] for n in op["in"])
            env[op["out"]] = C.saturate(a + b, 0, C.FINE_MAX)
        elif kind == "maxpool":
            env[op["out"]] = maxpool(env[op["in"]], op["kernel"], op["stride"], op["pad"])
        elif kind == "avgpool":
            env[op["out"]] = avgpool(env[op["in"]])
        else:
            raise ConfigError(f"unsupported op {kind!r} in the integer model")
    if trace is not None:
        trace["tensors"] = dict(env)
    return env[im.meta["output"]]
