"""Random small integer models for the engine's fuzz (issue 9, "Verification").

``python -m rootshift.sim.engine_fuzz --rtl START END`` runs seeds ``START..END-1`` through the RTL
:class:`~rootshift.hw.engine.engine.Engine` in ``amaranth.sim`` (:func:`rtl_fuzz`): one JSON line per model,
then a summary line; exit 1 on any mismatch.

:func:`random_model` builds a valid ``.rsq`` :class:`IntModel` (it passes ``rsq.validate``) with shapes the
array does not divide: odd channel counts, stride 2, padding 0/1, K not a multiple of anything, an
optional max pool, ASQ adapters with and without a hidden layer, and any product mode. ``shift2`` builds a
shift network (issue 10): a ``shift`` stem on the pixels, then shift activations (random ``log2_alpha``,
``max_exponent`` and bits) into ``shift2`` layers with shift weights (no zero code). Constants are
drawn so that fine values and codes span their ranges (no layer saturates everything), and beta stays in
the range where the per-sample multiplier fits 32 bits.
"""

import numpy as np

from rootshift.sw import contract as C
from rootshift.sw import rsq
from rootshift.sw.intmodel import IntModel
from rootshift.sw.numfmt import PowerFormat

_BASE = {"dual": "sqrt2", "lut": "sqrt2", "shift": "2", "mult": None, "shift2": "2"}


def _fmt(mode, bits, zero=True):
    base = _BASE[mode]
    if base is None:
        return None
    field_max = 2 ** (bits - 1) - (2 if zero else 1)
    # lut accumulators carry 8 more bits: a smaller window keeps an 8-bit layer inside 30 bits
    window = {"dual": 15, "lut": 9, "shift": 7, "shift2": 7}[mode]
    return PowerFormat(bits, base, min(field_max, window), zero)


def _layer(rng, kind, name, src, cin, cout, mode, wbits, abits, beta_from, relu, kernel=1, stride=1, pad=0,
           zero=True, act_e=None):
    fmt = _fmt(mode, wbits, zero)
    shape = (cout, cin, kernel, kernel) if kind == "conv" else (cout, cin)
    if fmt is None:
        codes = rng.integers(-(2 ** (wbits - 1)), 2 ** (wbits - 1), shape)
    else:
        legal = fmt.all_codes()
        codes = rng.choice(legal, shape)
    k = int(np.prod(shape[1:]))
    bound = C.acc_bound(mode, k, abits, fmt, wbits, act_e)
    keys = ["even", "odd"] if mode == "dual" else ["acc"]
    # aim the output near 2^18 fine units: |acc| ~ sqrt(K) * amax * 2^E / 4, M ~ 2^21
    typical = max(1, int(np.sqrt(k) * (2**abits - 1) * bound / (k * (2**abits - 1)) / 4))
    shift = int(np.clip(21 + typical.bit_length() - 18, 1, 40))
    op = {"op": kind, "name": name, "in": src, "out": name + ".y", "cin": cin, "cout": cout, "mode": mode,
          "scheme": ("post" if zero else "shift") if fmt is not None else "lsq", "base": _BASE[mode], "wbits": wbits, "abits": abits,
          "codes": codes.astype(np.int64), "m_base": {key: rng.integers(-(2**21), 2**21, cout) for key in keys},
          "bias": rng.integers(-(2 ** (shift + 17)), 2 ** (shift + 17), cout), "shift": shift, "relu": relu,
          "acc_bits": C.acc_width(bound), "acc_bound": int(bound), "k": k, "beta_from": beta_from}
    if fmt is not None:
        op["format"] = {"bits": fmt.bits, "base": fmt.base, "max_exponent": fmt.max_exponent, "has_zero": zero}
    if mode == "shift2":
        op["act_max_exponent"] = act_e
    if kind == "conv":
        op.update(kernel=[kernel, kernel], stride=stride, pad=pad)
    return op


def _quant(rng, name, src, channels, bits, asq=True, shift=None):
    if shift is not None:    # shift activations: (log2_alpha, max_exponent); levels 2^(A + 16 - e) fine units
        return {"op": "quant", "name": name, "in": src, "out": name[:-3] + ".a", "kind": "shift", "bits": bits,
                "log2_alpha": shift[0], "max_exponent": shift[1]}
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
    a 1x1 shortcut), optional max pool, global average pool, linear. ``shift2``: a shift network."""
    s2 = mode == "shift2"
    c0 = int(rng.integers(1, 4))
    h = int(rng.integers(4, 10))
    in_shape = in_shape or [c0, h, int(rng.integers(4, 10))]
    wb = 8 if mode != "mult" else 8
    ch = [int(rng.integers(2, max_channels + 1)) for _ in range(2)]
    ops = [{"op": "input", "out": "input", "bits": 8, "shape": list(in_shape)},
           {"op": "quant", "name": "conv1.aq", "in": "input", "out": "conv1.a", "kind": "input8", "bits": 8}]
    k1 = int(rng.choice([1, 3]))
    p1 = int(rng.integers(0, 2)) if k1 > 1 else 0
    ops.append(_layer(rng, "conv", "conv1", "conv1.a", in_shape[0], ch[0], "shift" if s2 else mode, wb, 8, "conv1.aq",
                      True, k1, 1, p1, zero=not s2))
    h, w = in_shape[1] + 2 * p1 - k1 + 1, in_shape[2] + 2 * p1 - k1 + 1
    x = "conv1.y"
    if maxpool and rng.random() < 0.5 and min(h, w) >= 3:
        ops.append({"op": "maxpool", "name": "mp", "in": x, "out": "mp.y", "kernel": 2, "stride": 1, "pad": int(rng.integers(0, 2))})
        pp = ops[-1]["pad"]
        h, w, x = h + 2 * pp - 1, w + 2 * pp - 1, "mp.y"
    s = int(rng.choice([1, 2]))
    abits = int(rng.choice([2, 3, 4] if s2 else [2, 3, 4, 5]))
    wbits = int(rng.choice([3, 4, 5])) if mode != "mult" else 4
    act_e = int(rng.integers(max(0, 2**abits - 5), 2**abits - 1)) if s2 else None   # the window, up to 2^bits - 2

    def q(name, src, channels, asq=True):
        sh = (int(rng.integers(0, 6)), act_e) if s2 else None
        return _quant(rng, name, src, channels, abits, asq, sh)

    kw = dict(zero=not s2, act_e=act_e)
    ops.append(q("b.conv1.aq", x, ch[0]))
    ops.append(_layer(rng, "conv", "b.conv1", "b.conv1.a", ch[0], ch[1], mode, wbits, abits, "b.conv1.aq", True, 3, s, 1, **kw))
    ops.append(q("b.conv2.aq", "b.conv1.y", ch[1], asq=bool(rng.random() < 0.7)))
    ops.append(_layer(rng, "conv", "b.conv2", "b.conv2.a", ch[1], ch[1], mode, wbits, abits, "b.conv2.aq", False, 3, 1, 1, **kw))
    ops.append(q("b.sc.aq", x, ch[0]))
    ops.append(_layer(rng, "conv", "b.sc", "b.sc.a", ch[0], ch[1], mode, wbits, abits, "b.sc.aq", False, 1, s, 0, **kw))
    ops.append({"op": "add_relu", "name": "b.add", "in": ["b.conv2.y", "b.sc.y"], "out": "b.out"})
    ops.append({"op": "avgpool", "name": "pool", "in": "b.out", "out": "pool.y"})
    classes = int(rng.integers(2, 11))
    ops.append(q("fc.aq", "pool.y", ch[1]))
    ops.append(_layer(rng, "linear", "fc", "fc.a", ch[1], classes, mode, wb, abits, "fc.aq", False, **kw))
    meta = {"contract": C.CONTRACT_VERSION, "arch": "fuzz", "mode": mode if mode in ("dual", "lut") else "dual", "output": "fc.y",
            "num_classes": classes, "input_shape": list(in_shape)}
    im = IntModel(meta, ops)
    if s2:
        _calibrate_shift(im, rng)
    rsq.validate(im, "fuzz")
    return im


def _calibrate_shift(im, rng):
    """Set each shift quant op's ``log2_alpha`` (in execution order) so that about the top tenth of its
    positive inputs on random pixels reaches the top level: the codes then span the levels instead of
    all saturating or all rounding to zero."""
    from rootshift.sw import golden

    px = rng.integers(0, 256, (4, *im.meta["input_shape"]))
    for op in im.ops:
        if op["op"] == "quant" and op["kind"] == "shift":
            tr = {}
            golden.run(im, px, trace=tr)
            x = np.asarray(tr["tensors"][op["in"]]).ravel()
            top = np.percentile(x[x > 0], 90) if (x > 0).any() else 1 << 16
            a = int(np.floor(np.log2(max(top, 1)))) - C.FINE_FRAC + int(rng.integers(0, 2))
            op["log2_alpha"] = int(np.clip(a, -C.LOG2_ALPHA_MAX, C.LOG2_ALPHA_MAX))


def fuzz_params_for(im, rows, cols):
    """ArrayParams that hold every layer of a :func:`random_model` (8-bit weights and activations)."""
    from rootshift.hw.params import ArrayParams

    mode = im.layers()[-1]["mode"]
    if mode == "shift2":   # shift activations; the stem's pixels run as bit planes (hw.engine.compiler.expand_pixels)
        from rootshift.sim.driver import hardware_for

        return hardware_for(im, rows, cols)
    base = _BASE[mode] or "sqrt2"
    shifts = [PowerFormat(**op["format"]).max_shift for op in im.layers() if op.get("format")]
    return ArrayParams(wbits=8, abits=8, base=base, pe=mode, rows=rows, cols=cols,
                       max_k=max(max(op["k"] for op in im.layers()), 2), max_shift=max(shifts or [7]))


def first_rtl_model(seed, mode="dual", rows=2, cols=2, hw=(4, 8), channels=None, max_channels=10, debug=True,
                    tries=200, **engine):
    """The first random network from seed ``seed`` on (no max pool) that the RTL engine runs (``rtl_check``),
    compiled for a ``rows`` x ``cols`` array with ``EngineParams(**engine)``: input ``channels`` x ``hw``
    pixels (1..3 channels drawn when ``channels`` is None). Returns ``(im, program, rng)``, the generator
    left where the model's drawing ended (tests draw their pixels from it)."""
    from rootshift.hw.engine.compiler import compile_model
    from rootshift.hw.engine.engine import rtl_check
    from rootshift.hw.engine.params import EngineParams
    from rootshift.sw.errors import ConfigError

    for s in range(seed, seed + tries):
        rng = np.random.default_rng(s)
        c = int(rng.integers(1, 4)) if channels is None else channels
        im = random_model(rng, mode, in_shape=[c, *hw], max_channels=max_channels, maxpool=False)
        prog = compile_model(im, EngineParams(fuzz_params_for(im, rows, cols), **engine), debug=debug)
        try:
            rtl_check(prog)
        except ConfigError:
            continue
        return im, prog, rng
    raise AssertionError(f"no RTL-compatible model in seeds {seed}..{seed + tries - 1}")


def rtl_case(seed):
    """The random network of fuzz seed ``seed``: any product mode but shift2, array 2..3 x 2..3, either drain
    and descriptor fetch, pixels ``C x H x W`` with ``H, W`` in ``4..9`` (mostly not powers of two: the
    GapDivider), a max pool after the stem in about half of them (window 2 or 3, stride 1 or 2, padding up
    to ``k - 1``). Returns ``(im, program, pixels, info)``."""
    from rootshift.hw.engine.compiler import compile_model
    from rootshift.hw.engine.params import EngineParams

    rng = np.random.default_rng(1000 + seed)
    mode = ("dual", "lut", "mult")[seed % 3]
    rows, cols = int(rng.integers(2, 4)), int(rng.integers(2, 4))
    drain = ("parallel", "serial")[int(rng.integers(0, 2))]
    fetch = ("parallel", "serial")[int(rng.integers(0, 2))]
    shape = [int(rng.integers(1, 4)), int(rng.integers(4, 10)), int(rng.integers(4, 10))]
    im = random_model(rng, mode, in_shape=shape, max_channels=8)
    pool = next((op for op in im.ops if op["op"] == "maxpool"), None)
    if pool is not None:     # random_model's pool is 2x2 / 1: vary it (the layers after it take any H x W)
        k = int(rng.integers(2, 4))
        pool.update(kernel=k, stride=int(rng.integers(1, 3)), pad=int(rng.integers(0, k)))
        rsq.validate(im, "fuzz")
    prog = compile_model(im, EngineParams(fuzz_params_for(im, rows, cols), drain=drain, desc_fetch=fetch,
                                          weights_kib=256, fine_kib=256, codes_kib=256, consts_kib=64), debug=True)
    divided = sum(1 for s in prog.steps if (s["kind"] == "avgpool" and s["desc"]["div"]) or
                  (s["kind"] == "quant" and s["adapter"] and s["desc"]["gap_div"]))
    info = {"seed": seed, "mode": mode, "array": f"{rows}x{cols}", "drain": drain, "fetch": fetch, "shape": shape,
            "divided_steps": divided,
            "max_pool": None if pool is None else [pool["kernel"], pool["stride"], pool["pad"]]}
    return im, prog, rng.integers(0, 256, shape), info


def tensor_mismatches(prog, res, pixels):
    """The tensors (names) whose words in the RTL engine's memories (``res``: :func:`engine_image`'s debug
    reads) differ from the reference executor's after the same image: ``[]`` when every layer agrees."""
    from rootshift.hw.engine.reference import ReferenceEngine

    ref = ReferenceEngine(prog)
    ref.run(pixels)
    return [name for name, t in prog.tensors.items()
            if not np.array_equal(res[t["kind"]][t["addr"]:t["addr"] + t["words"]],
                                  getattr(ref, t["kind"])[t["addr"]:t["addr"] + t["words"]])]


def rtl_image_failures(im, prog, px, res):
    """What disagrees after one image on the RTL engine (``res``: :func:`engine_image`'s result): the logits
    against :func:`rootshift.sw.golden.run`, every tensor against the reference executor (through the debug
    read), the flags, and the ``STATUS`` cycles against the cycle model; ``[]`` when all agree."""
    from rootshift.hw.engine.cycles import cycle_report
    from rootshift.sw import golden

    bad = [] if res["logits"] == golden.run(im, px[None]).reshape(-1).tolist() else ["logits"]
    bad += [f"tensor {name}" for name in tensor_mismatches(prog, res, px)]
    if res["status"][0] & 0xFF:
        bad.append(f"flags {res['status'][0] & 0xFF:#04x}")
    model = cycle_report(prog)["cycles_per_image"]
    if res["status"][1] != model:
        bad.append(f"cycles {res['status'][1]} (model {model})")
    return bad


def rtl_fuzz(seeds):
    """For each seed (:func:`rtl_case`), one image on the RTL engine, checked by :func:`rtl_image_failures`.
    Yields one dict per seed (``ok``, ``values`` compared)."""
    from rootshift.hw.testbench import engine_image

    for seed in seeds:
        im, prog, px, info = rtl_case(seed)
        res = engine_image(prog, px)
        values = len(res["logits"]) + sum(t["words"] * prog.params.lanes for t in prog.tensors.values())
        yield {**info, "values": values, "cycles": res["status"][1], "ok": not rtl_image_failures(im, prog, px, res)}


def main(argv=None):
    """Exit 0 when every seed matches, 1 otherwise."""
    import argparse
    import json
    import time

    ap = argparse.ArgumentParser(prog="python -m rootshift.sim.engine_fuzz", description=__doc__.split("\n")[0])
    ap.add_argument("--rtl", nargs=2, type=int, metavar=("START", "END"), required=True,
                    help="run seeds START..END-1 on the RTL engine")
    args = ap.parse_args(argv)
    t0, rows = time.time(), []
    for r in rtl_fuzz(range(*args.rtl)):
        rows.append(r)
        print(json.dumps(r), flush=True)
    bad = [r["seed"] for r in rows if not r["ok"]]
    print(json.dumps({"models": len(rows), "values": sum(r["values"] for r in rows),
                      "divided_steps": sum(r["divided_steps"] for r in rows),
                      "max_pools": sum(1 for r in rows if r["max_pool"]), "mismatched_seeds": bad,
                      "s": round(time.time() - t0)}))
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
