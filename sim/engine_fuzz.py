"""Random small integer models for the engine's fuzz (issue 9, "Verification").

:func:`random_model` builds a valid ``.rsq`` :class:`IntModel` (it passes ``rsq.validate``) with shapes the
array does not divide: odd channel counts, stride 2, padding 0/1, K not a multiple of anything, an
optional max pool, ASQ adapters with and without a hidden layer, and any product mode. Constants are
drawn so that fine values and codes span their ranges (no layer saturates everything), and beta stays in
the range where the per-sample multiplier fits 32 bits.
"""

import numpy as np

from rootshift.sw import contract as C
from rootshift.sw import rsq
from rootshift.sw.intmodel import IntModel
from rootshift.sw.numfmt import PowerFormat

_BASE = {"dual": "sqrt2", "lut": "sqrt2", "shift": "2", "mult": None}


def _fmt(mode, bits):
    base = _BASE[mode]
    if base is None:
        return None
    field_max = 2 ** (bits - 1) - 2
    # lut accumulators carry 8 more bits: a smaller window keeps an 8-bit layer inside 30 bits
    window = {"dual": 15, "lut": 9, "shift": 7}[mode]
    return PowerFormat(bits, base, min(field_max, window), True)


def _layer(rng, kind, name, src, cin, cout, mode, wbits, abits, beta_from, relu, kernel=1, stride=1, pad=0):
    fmt = _fmt(mode, wbits)
    shape = (cout, cin, kernel, kernel) if kind == "conv" else (cout, cin)
    if fmt is None:
        codes = rng.integers(-(2 ** (wbits - 1)), 2 ** (wbits - 1), shape)
    else:
        legal = fmt.all_codes()
        codes = rng.choice(legal, shape)
    k = int(np.prod(shape[1:]))
    bound = C.acc_bound(mode, k, abits, fmt, wbits)
    keys = ["even", "odd"] if mode == "dual" else ["acc"]
    # aim the output near 2^18 fine units: |acc| ~ sqrt(K) * amax * 2^E / 4, M ~ 2^21
    typical = max(1, int(np.sqrt(k) * (2**abits - 1) * bound / (k * (2**abits - 1)) / 4))
    shift = int(np.clip(21 + typical.bit_length() - 18, 1, 40))
    op = {"op": kind, "name": name, "in": src, "out": name + ".y", "cin": cin, "cout": cout, "mode": mode,
          "scheme": "post" if fmt is not None else "lsq", "base": _BASE[mode], "wbits": wbits, "abits": abits,
          "codes": codes.astype(np.int64), "m_base": {key: rng.integers(-(2**21), 2**21, cout) for key in keys},
          "bias": rng.integers(-(2 ** (shift + 17)), 2 ** (shift + 17), cout), "shift": shift, "relu": relu,
          "acc_bits": C.acc_width(bound), "acc_bound": int(bound), "k": k, "beta_from": beta_from}
    if fmt is not None:
        op["format"] = {"bits": fmt.bits, "base": fmt.base, "max_exponent": fmt.max_exponent, "has_zero": True}
    if kind == "conv":
        op.update(kernel=[kernel, kernel], stride=stride, pad=pad)
    return op


def _quant(rng, name, src, channels, bits, asq=True):
    op = {"op": "quant", "name": name, "in": src, "out": name[:-3] + ".a", "kind": "asq" if asq else "lsq",
          "bits": bits, "k_step": int(rng.integers(2**41, 2**43))}
    if asq:
        ad = {"f2": 8, "w2": rng.integers(-64, 64, (1, max(1, channels // 4) if channels >= 8 else channels)),
              "b2": np.array([int(rng.integers(2**23, 2**25))])}
        if channels >= 8:
            ad.update(w1=rng.integers(-(2**10), 2**10, (channels // 4, channels)), f1=10,
                      b1=rng.integers(-(2**20), 2**20, channels // 4))
        op["adapter"] = ad
    return op


def random_model(rng, mode="dual", in_shape=None, max_channels=12, maxpool=True):
    """A small random ResNet-like integer model: stem conv, one residual block (optionally strided with
    a 1x1 shortcut), optional max pool, global average pool, linear."""
    c0 = int(rng.integers(1, 4))
    h = int(rng.integers(4, 10))
    in_shape = in_shape or [c0, h, int(rng.integers(4, 10))]
    wb = 8 if mode != "mult" else 8
    ch = [int(rng.integers(2, max_channels + 1)) for _ in range(2)]
    ops = [{"op": "input", "out": "input", "bits": 8, "shape": list(in_shape)},
           {"op": "quant", "name": "conv1.aq", "in": "input", "out": "conv1.a", "kind": "input8", "bits": 8}]
    k1 = int(rng.choice([1, 3]))
    p1 = int(rng.integers(0, 2)) if k1 > 1 else 0
    ops.append(_layer(rng, "conv", "conv1", "conv1.a", in_shape[0], ch[0], mode, wb, 8, "conv1.aq", True, k1, 1, p1))
    h, w = in_shape[1] + 2 * p1 - k1 + 1, in_shape[2] + 2 * p1 - k1 + 1
    x = "conv1.y"
    if maxpool and rng.random() < 0.5 and min(h, w) >= 3:
        ops.append({"op": "maxpool", "name": "mp", "in": x, "out": "mp.y", "kernel": 2, "stride": 1, "pad": int(rng.integers(0, 2))})
        pp = ops[-1]["pad"]
        h, w, x = h + 2 * pp - 1, w + 2 * pp - 1, "mp.y"
    s = int(rng.choice([1, 2]))
    abits = int(rng.choice([2, 3, 4, 5]))
    wbits = int(rng.choice([3, 4, 5])) if mode != "mult" else 4
    ops.append(_quant(rng, "b.conv1.aq", x, ch[0], abits))
    ops.append(_layer(rng, "conv", "b.conv1", "b.conv1.a", ch[0], ch[1], mode, wbits, abits, "b.conv1.aq", True, 3, s, 1))
    ops.append(_quant(rng, "b.conv2.aq", "b.conv1.y", ch[1], abits, asq=bool(rng.random() < 0.7)))
    ops.append(_layer(rng, "conv", "b.conv2", "b.conv2.a", ch[1], ch[1], mode, wbits, abits, "b.conv2.aq", False, 3, 1, 1))
    ops.append(_quant(rng, "b.sc.aq", x, ch[0], abits))
    ops.append(_layer(rng, "conv", "b.sc", "b.sc.a", ch[0], ch[1], mode, wbits, abits, "b.sc.aq", False, 1, s, 0))
    ops.append({"op": "add_relu", "name": "b.add", "in": ["b.conv2.y", "b.sc.y"], "out": "b.out"})
    ops.append({"op": "avgpool", "name": "pool", "in": "b.out", "out": "pool.y"})
    classes = int(rng.integers(2, 11))
    ops.append(_quant(rng, "fc.aq", "pool.y", ch[1], abits))
    ops.append(_layer(rng, "linear", "fc", "fc.a", ch[1], classes, mode, wb, abits, "fc.aq", False))
    meta = {"contract": C.CONTRACT_VERSION, "arch": "fuzz", "mode": mode if mode in ("dual", "lut") else "dual", "output": "fc.y",
            "num_classes": classes, "input_shape": list(in_shape)}
    im = IntModel(meta, ops)
    rsq.validate(im, "fuzz")
    return im


def fuzz_params_for(im, rows, cols):
    """ArrayParams that hold every layer of a :func:`random_model` (8-bit weights and activations)."""
    from rootshift.hw.params import ArrayParams

    mode = im.layers()[0]["mode"]
    base = _BASE[mode] or "sqrt2"
    shifts = [PowerFormat(**op["format"]).max_shift for op in im.layers() if op.get("format")]
    return ArrayParams(wbits=8, abits=8, base=base, pe=mode, rows=rows, cols=cols,
                       max_k=max(max(op["k"] for op in im.layers()), 2), max_shift=max(shifts or [7]))
