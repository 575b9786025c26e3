"""Reports on an integer model: per-layer inspection, golden-model evaluation, and layer dumps."""

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from . import golden
from .data import load_dataset
from .errors import ConfigError
from .fileio import atomic_write_json
from .numfmt import PowerFormat


def inspect_layers(im):
    """One dict per conv/linear op: kind, scheme, base, wbits, abits, mode, accumulator width, codes used."""
    rows = []
    for op in im.layers():
        codes = np.asarray(op["codes"])
        distinct = len(np.unique(codes))
        if op.get("format"):
            f = op["format"]
            fmt = PowerFormat(f["bits"], f["base"], f["max_exponent"], f["has_zero"])
            vals = fmt.value(codes)
            distinct_values = len(np.unique(vals))
        else:
            distinct_values = distinct
        q = im.op(op["beta_from"])  # the quant op feeding the layer (the loader checks it)
        rows.append({"name": op["name"], "kind": op["op"], "scheme": op["scheme"], "base": op.get("base"),
                     "wbits": op["wbits"], "abits": op["abits"], "act_scheme": q["kind"], "product_mode": op["mode"],
                     "acc_bits": op["acc_bits"], "distinct_codes": distinct, "distinct_values": distinct_values,
                     "cin": op["cin"], "cout": op["cout"], "k": op["k"], "shift": op["shift"],
                     "kernel": op.get("kernel"), "stride": op.get("stride")})
    return rows


def _parse_images(spec, n):
    if spec is None:
        return list(range(min(4, n)))
    try:
        idx = [int(s) for s in str(spec).split(",") if s.strip()]
    except ValueError as e:
        raise ConfigError(f"--dump-images must be comma-separated integers, not {spec!r}") from e
    bad = [i for i in idx if not 0 <= i < n]
    if bad:
        raise ConfigError(f"--dump-images {bad} out of range: the test split has {n} images")
    return idx


def evaluate(im, data=None, images=None, dump=None, dump_images=None):
    """Golden-model accuracy on a dataset's test split, agreement with the float model, optional dump."""
    data = data or im.meta.get("train_config", {}).get("data", "digits")
    ds = load_dataset(data, (im.meta.get("input_shape") or [0, 0, 224])[2])
    n = len(ds.test) if images is None else min(int(images), len(ds.test))
    if n < 1:
        raise ConfigError("--images must be at least 1")
    x, y = ds.test.batch(range(n))
    x = x.numpy()
    shape = im.meta.get("input_shape")
    if shape and list(x.shape[1:]) != list(shape):
        raise ConfigError(f"dataset {data} has {list(x.shape[1:])} inputs but the model was exported for {shape}")
    if dump:
        # validate the request before computing so a bad argument writes nothing
        idx = _parse_images(dump_images, n)
    logits = golden.run(im, x)
    pred = logits.argmax(1)
    out = {"test_acc": float((pred == y.numpy()).mean()), "images": int(n), "data": data}
    ref = im.meta.get("float_reference")
    if ref is not None and ref.get("data") == data:
        out["agreement_with_float"] = float((pred == np.asarray(ref["top1"])[:n]).mean())
        out["float_test_acc"] = ref["test_acc"] if n == len(ds.test) else float((np.asarray(ref["top1"])[:n] == y.numpy()).mean())
    else:
        out["agreement_with_float"] = None
    if dump:
        write_dump(im, x[idx], idx, dump)
        out["dump"] = str(dump)
    return out


def write_dump(im, pixels, indices, directory):
    """Every tensor, accumulator and beta for the chosen images, written atomically as a directory:
    ``tensors.npz`` (arrays named ``tensor/<name>``, ``acc/<layer>.<even|odd|acc>``, ``beta/<quant op>``,
    ``logits``) and ``manifest.json`` (image indices, names, shapes)."""
    trace = {}
    logits = golden.run(im, pixels, trace=trace)
    arrays = {"logits": logits, "pixels": np.asarray(pixels, np.int64)}
    for group in ("tensors", "acc", "beta"):
        for name, v in trace.get(group, {}).items():
            arrays[f"{'tensor' if group == 'tensors' else group}/{name}"] = np.asarray(v, np.int64)
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        np.savez_compressed(tmp / "tensors.npz", **arrays)
        atomic_write_json(tmp / "manifest.json", {"images": list(map(int, indices)), "contract": im.meta["contract"],
                                                   "arrays": {k: list(v.shape) for k, v in arrays.items()}})
        os.chmod(tmp, 0o755)
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def load_dump(directory):
    d = Path(directory)
    with np.load(d / "tensors.npz") as z:
        arrays = {k: z[k] for k in z.files}
    return json.loads((d / "manifest.json").read_text()), arrays
