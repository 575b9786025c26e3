"""The ``.rsq`` integer-model file (docs/export-format.md): header, JSON graph, arrays, SHA-256 trailer.

Layout (little endian)::

    0   8  magic  b"RSQMODEL"
    8   2  format version (u16) = 2 (1 is still read: every array int64)
    10  2  contract version (u16)
    12  4  JSON length J (u32)
    16  8  payload length P (u64)
    24  J  JSON: {"meta", "ops", "arrays"}; arrays in ops are {"$array": index}
    ..  P  payload: the arrays, raw, each at its recorded offset in its recorded dtype (v2: the narrowest)
    ..  32 SHA-256 of every byte before it

The loader checks, in order: size and magic, the declared lengths, the checksum, the versions, and then
every op's fields (shapes, code ranges, widths), naming the op and field that is wrong.
"""

import hashlib
import json
import math
import struct
from pathlib import Path

import numpy as np

from . import contract as C
from .errors import ConfigError, FormatError
from .intmodel import IntModel
from .fileio import atomic_write_bytes
from .numfmt import PowerFormat

MAGIC = b"RSQMODEL"
FORMAT_VERSION = 2          # what the writer makes: each array in its narrowest integer type
READ_VERSIONS = (1, 2)      # version 1 stored every array as int64
# narrowest first; unsigned wins a tie (codes are unsigned), little endian
DTYPES = ("|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<i8")
HEAD = struct.Struct("<8sHHIQ")
EXIT_TRUNCATED, EXIT_CHECKSUM, EXIT_VERSION, EXIT_INVALID = 3, 4, 5, 6


def _pack(obj, arrays, path="model"):
    if isinstance(obj, np.ndarray):
        if not np.issubdtype(obj.dtype, np.integer):
            raise ConfigError(f"{path}: arrays in a model file are integers, not {obj.dtype}")
        arrays.append(np.ascontiguousarray(obj, dtype="<i8"))
        return {"$array": len(arrays) - 1}
    if isinstance(obj, dict):
        return {k: _pack(obj[k], arrays, f"{path}.{k}") for k in sorted(obj) if not k.startswith("_")}
    if isinstance(obj, (list, tuple)):
        return [_pack(v, arrays, f"{path}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        if not math.isfinite(obj):
            raise ConfigError(f"{path} is {float(obj)}: a model file holds no NaN or infinity")
        return float(obj)
    return obj


def narrowest(a):
    """The first of :data:`DTYPES` that holds every value of ``a`` (``|u1`` for an empty array)."""
    lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
    for dt in DTYPES:
        info = np.iinfo(np.dtype(dt))
        if info.min <= lo and hi <= info.max:
            return dt
    raise ConfigError(f"array values {lo}..{hi} do not fit int64")


def to_bytes(im: IntModel, version=FORMAT_VERSION) -> bytes:
    """Serialize; ``version=1`` writes the old all-int64 layout (kept for compatibility tests)."""
    if version not in READ_VERSIONS:
        raise ConfigError(f"format version must be one of {READ_VERSIONS}, not {version!r}")
    arrays = []
    doc = {"meta": _pack(im.meta, arrays, "meta"), "ops": _pack(im.ops, arrays, "ops"), "arrays": []}
    payload, off = [], 0
    for a in arrays:
        dt = "<i8" if version == 1 else narrowest(a)
        b = a.astype(dt).tobytes()
        doc["arrays"].append({"dtype": dt, "shape": list(a.shape), "offset": off, "nbytes": len(b)})
        payload.append(b)
        off += len(b)
    js = json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    cver = im.meta.get("contract", C.CONTRACT_VERSION)  # a loaded contract-1 model stays contract 1
    if cver not in C.READ_CONTRACTS:
        raise ConfigError(f"meta.contract is {cver!r}; this rootshift writes contract versions {C.READ_CONTRACTS}")
    body = HEAD.pack(MAGIC, version, cver, len(js), off) + js + b"".join(payload)
    return body + hashlib.sha256(body).digest()


def save(im: IntModel, path):
    validate(im)
    atomic_write_bytes(path, to_bytes(im))


def _unpack(obj, arrays, name):
    if isinstance(obj, dict):
        if set(obj) == {"$array"}:
            i = obj["$array"]
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(arrays):
                raise FormatError(f"{name}: malformed graph: array reference {i!r} is not in the array table",
                                  exit_code=EXIT_INVALID)
            return arrays[i]
        return {k: _unpack(v, arrays, name) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unpack(v, arrays, name) for v in obj]
    return obj


def _no_constant(c):
    raise ValueError(f"{c} is not a number the format allows")


def _read_arrays(table, payload, name, fver):
    if not isinstance(table, list):
        raise ValueError("the array table must be a list")
    arrays = []
    for i, a in enumerate(table):
        allowed = ("<i8",) if fver == 1 else DTYPES
        ok = isinstance(a, dict) and a.get("dtype") in allowed and isinstance(a.get("shape"), list) and \
            len(a["shape"]) <= 8 and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in a["shape"])
        ok = ok and all(isinstance(a.get(k), int) and not isinstance(a.get(k), bool) and a[k] >= 0
                        for k in ("offset", "nbytes"))
        dt = np.dtype(a["dtype"]) if ok else None
        if not ok or a["offset"] + a["nbytes"] > len(payload) or a["nbytes"] != dt.itemsize * math.prod(a["shape"]):
            raise FormatError(f"{name}: array {i} has an inconsistent size or dtype", exit_code=EXIT_INVALID)
        count = math.prod(a["shape"])
        arrays.append(np.frombuffer(payload, dt, count, a["offset"]).reshape(a["shape"]).astype(np.int64))
    return arrays


def from_bytes(data: bytes, name="model") -> IntModel:
    if len(data) < HEAD.size + 32:
        raise FormatError(f"{name}: truncated ({len(data)} bytes, not even a header)", exit_code=EXIT_TRUNCATED)
    magic, fver, cver, jlen, plen = HEAD.unpack_from(data)
    if magic != MAGIC:
        raise FormatError(f"{name}: not a rootshift model file (magic {magic!r})", exit_code=EXIT_TRUNCATED)
    expected = HEAD.size + jlen + plen + 32
    if len(data) < expected:
        raise FormatError(f"{name}: truncated ({len(data)} of {expected} bytes)", exit_code=EXIT_TRUNCATED)
    if len(data) > expected:
        raise FormatError(f"{name}: {len(data) - expected} unexpected trailing bytes", exit_code=EXIT_TRUNCATED)
    if hashlib.sha256(data[:-32]).digest() != data[-32:]:
        raise FormatError(f"{name}: checksum mismatch: the file is corrupt", exit_code=EXIT_CHECKSUM)
    if fver not in READ_VERSIONS:
        raise FormatError(f"{name}: format version {fver}; this rootshift reads versions "
                          f"{' and '.join(map(str, READ_VERSIONS))}", exit_code=EXIT_VERSION)
    if cver not in C.READ_CONTRACTS:
        raise FormatError(f"{name}: arithmetic contract version {cver}; this rootshift implements "
                          f"{C.CONTRACT_VERSION} (and reads {', '.join(map(str, C.READ_CONTRACTS))})",
                          exit_code=EXIT_VERSION)
    try:
        doc = json.loads(data[HEAD.size:HEAD.size + jlen], parse_constant=_no_constant)
        if not isinstance(doc, dict) or not isinstance(doc.get("meta"), dict) or not isinstance(doc.get("ops"), list):
            raise ValueError("the document must be {meta: {...}, ops: [...], arrays: [...]}")
        arrays = _read_arrays(doc.get("arrays"), data[HEAD.size + jlen:HEAD.size + jlen + plen], name, fver)
        im = IntModel(_unpack(doc["meta"], arrays, name), _unpack(doc["ops"], arrays, name))
    except FormatError:
        raise
    except (ValueError, KeyError, TypeError, RecursionError, OverflowError) as e:
        raise FormatError(f"{name}: malformed graph: {e}", exit_code=EXIT_INVALID) from e
    try:
        validate(im, name)
        if im.meta.get("contract", cver) != cver:
            raise FormatError(f"{name}: meta field 'contract' is {im.meta.get('contract')!r} but the header says {cver}",
                              exit_code=EXIT_INVALID)
        if cver == 1 and any(op.get("kind") == "shift" or op.get("mode") == "shift2" for op in im.ops):
            raise FormatError(f"{name}: arithmetic contract version 1 has no shift activations or shift2 layers",
                              exit_code=EXIT_INVALID)
    except FormatError:
        raise
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, OverflowError) as e:
        # every check above names its field; this is the net under them, so a corrupt file never crashes
        raise FormatError(f"{name}: malformed graph: {type(e).__name__}: {e}", exit_code=EXIT_INVALID) from e
    return im


def load(path) -> IntModel:
    p = Path(path)
    if not p.is_file():
        # a path that names no file is a bad argument (exit 2), not a bad file
        raise ConfigError(f"model file {p} is a directory, not an .rsq file" if p.is_dir()
                          else f"model file {p} does not exist")
    return from_bytes(p.read_bytes(), str(p))


def _bad(name, op, field, why):
    return FormatError(f"{name}: op {op.get('name', op.get('op'))!r} field {field!r}: {why}", exit_code=EXIT_INVALID)


def _fail(name, why):
    return FormatError(f"{name}: {why}", exit_code=EXIT_INVALID)


def _shape(op, field, arr, shape, name):
    a = _array(op, field, arr, name)
    if list(a.shape) != list(shape):
        raise _bad(name, op, field, f"shape {list(a.shape)} does not match the expected {list(shape)}")
    return a


def _array(op, field, arr, name):
    """An integer ndarray (a ``{"$array": i}`` reference in the file), else a named error."""
    if not isinstance(arr, np.ndarray) or not np.issubdtype(arr.dtype, np.integer):
        raise _bad(name, op, field, f"must be an integer array, not {type(arr).__name__}")
    return arr


def _ints(op, field, name, lo, hi):
    v = op.get(field)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise _bad(name, op, field, f"must be an integer in {lo}..{hi}, not {v!r}")
    return v


def _bounded(op, field, arr, name, limit):
    """Every ``|value| <= limit`` (docs/arithmetic.md, "Bounds": what keeps int64 from wrapping)."""
    a = _array(op, field, arr, name)
    top = int(np.abs(a.astype(object)).max(initial=0)) if a.size else 0
    if top > limit:
        raise _bad(name, op, field, f"|value| {top} exceeds the contract bound {limit}")
    return a


def _str(op, field, name):
    v = op.get(field)
    if not isinstance(v, str) or not v:
        raise _bad(name, op, field, f"must be a tensor name, not {v!r}")
    return v


def _absent(op, fields, name, why):
    for f in fields:
        if f in op:
            raise _bad(name, op, f, f"must be absent: {why}")


# tensor kinds: the `input` op's pixel codes, a quant op's activation codes, and fine tensors
PIXELS, CODES, FINE = "pixel codes", "activation codes", "fine"


def validate(im: IntModel, name="model"):
    """Check every op against the contract (docs/export-format.md, "What the loader checks").

    Graph references and tensor kinds, shapes by shape inference from ``input.shape``, code ranges, and
    every integer bound of docs/arithmetic.md ("Bounds") that keeps the int64 golden model from wrapping.
    A failure is a :class:`FormatError` naming the op and field.
    """
    meta, ops = im.meta, im.ops
    if not isinstance(meta, dict) or not isinstance(ops, list):
        raise _fail(name, "malformed graph: meta must be an object and ops a list")
    if not ops or not isinstance(ops[0], dict) or ops[0].get("op") != "input":
        raise _fail(name, "the graph must start with an input op")
    tensors = {}        # name -> (kind, shape)
    producer = {}       # code tensor -> the quant op that wrote it
    names = set()
    for i, op in enumerate(ops):
        if not isinstance(op, dict):
            raise _fail(name, f"op {i} is not an object")
        kind = op.get("op")
        if kind not in ("input", "quant", "conv", "linear", "add_relu", "maxpool", "avgpool"):
            raise _fail(name, f"unsupported op {kind!r}")
        if kind == "input" and i > 0:
            raise _bad(name, op, "op", "a graph has exactly one input op, the first")
        if kind != "input":
            opname = op.get("name")
            if not isinstance(opname, str) or not opname:
                raise _fail(name, f"op {i} ({kind}) has no name")
            if opname in names:
                raise _bad(name, op, "name", "op names must be unique")
            names.add(opname)
            ins = op.get("in")
            for t in (ins if kind == "add_relu" and isinstance(ins, list) else [ins]):
                if not isinstance(t, str):
                    raise _bad(name, op, "in", f"must be a tensor name, not {t!r}")
                if t not in tensors:
                    raise _bad(name, op, "in", f"tensor {t!r} is used before it is defined")
        out = _str(op, "out", name)
        if out in tensors:
            raise _bad(name, op, "out", f"tensor {out!r} is defined twice")
        if kind == "input":
            tensors[out] = (PIXELS, _validate_input(op, meta, name))
        elif kind == "quant":
            tensors[out] = (CODES, _validate_quant(op, tensors, name))
            producer[out] = op
        elif kind in ("conv", "linear"):
            tensors[out] = (FINE, _validate_layer(op, tensors, producer, name))
        elif kind == "add_relu":
            ins = op["in"]
            if not isinstance(ins, list) or len(ins) != 2:
                raise _bad(name, op, "in", "add_relu takes exactly two tensors")
            (ka, a), (kb, b) = (tensors[t] for t in ins)
            if ka != FINE or kb != FINE:
                raise _bad(name, op, "in", "add_relu adds two fine tensors")
            if a != b:
                raise _bad(name, op, "in", f"operand shapes {list(a)} and {list(b)} differ")
            tensors[out] = (FINE, a)
        else:
            k, s = tensors[op["in"]]
            if k != FINE or len(s) != 3:
                raise _bad(name, op, "in", f"{kind} takes a fine (C, H, W) tensor, not {k} {list(s)}")
            if kind == "maxpool":
                ker = _ints(op, "kernel", name, 1, C.DIM_MAX)
                st = _ints(op, "stride", name, 1, C.DIM_MAX)
                pad = _ints(op, "pad", name, 0, ker - 1)
                tensors[out] = (FINE, (s[0],) + _spatial(op, s, (ker, ker), st, pad, name))
            else:
                tensors[out] = (FINE, (s[0],))
    _validate_meta(meta, tensors, name)


def _validate_meta(meta, tensors, name):
    out = meta.get("output")
    if not isinstance(out, str) or out not in tensors or tensors[out][0] != FINE:
        raise _fail(name, f"output tensor {out!r} is not produced")
    shape = tensors[out][1]
    if len(shape) != 1:
        raise _fail(name, f"output tensor {out!r} must be a vector of logits, not shape {list(shape)}")
    ncls = meta.get("num_classes", shape[0])
    if ncls != shape[0]:
        raise _fail(name, f"meta field 'num_classes': {ncls!r} but the output has {shape[0]} logits")
    if meta.get("mode", "dual") not in ("dual", "lut"):
        raise _fail(name, f"meta field 'mode': {meta.get('mode')!r} is not dual or lut")
    ref = meta.get("float_reference")
    if ref is not None:
        top1 = ref.get("top1") if isinstance(ref, dict) else None
        if not isinstance(top1, np.ndarray) or top1.ndim != 1 or not np.issubdtype(top1.dtype, np.integer) or \
                (top1.size and (top1.min() < 0 or top1.max() >= shape[0])):
            raise _fail(name, "meta field 'float_reference.top1' must be a vector of class indices")
        acc = ref.get("test_acc")
        if isinstance(acc, bool) or not isinstance(acc, (int, float)) or not 0 <= acc <= 1:
            raise _fail(name, f"meta field 'float_reference.test_acc' must be in 0..1, not {acc!r}")
        if not isinstance(ref.get("data"), str):
            raise _fail(name, "meta field 'float_reference.data' must be a dataset spec")


def _validate_input(op, meta, name):
    if op.get("bits") != 8:
        raise _bad(name, op, "bits", f"pixels are 8-bit codes, not {op.get('bits')!r}")
    shape = op.get("shape")
    if not isinstance(shape, list) or len(shape) != 3 or any(
            isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= C.DIM_MAX for v in shape):
        raise _bad(name, op, "shape", f"must be [C, H, W] with each in 1..{C.DIM_MAX}, not {shape!r}")
    if meta.get("input_shape", shape) != shape:
        raise _fail(name, f"meta field 'input_shape' {meta.get('input_shape')!r} differs from the input op's {shape}")
    return tuple(shape)


def _validate_quant(op, tensors, name):
    qkind = op.get("kind")
    if qkind not in ("input8", "lsq", "asq", "shift"):
        raise _bad(name, op, "kind", f"unknown activation quantizer {qkind!r}")
    src_kind, src = tensors[op["in"]]
    if qkind == "input8":
        _ints(op, "bits", name, 8, 8)
        if src_kind != PIXELS:
            raise _bad(name, op, "in", "an input8 quant op reads the input op's pixel codes")
        _absent(op, ("k_step", "adapter"), name, "input8 passes the pixel codes on unchanged")
        return src
    bits = _ints(op, "bits", name, 2, 8)
    if src_kind != FINE:
        raise _bad(name, op, "in", f"a {qkind} quant op reads a fine tensor, not {src_kind}")
    if qkind == "shift":  # docs/arithmetic.md, "Shift activations and the shift2 product"
        _absent(op, ("k_step", "adapter"), name, "shift activations are powers of two: no step, beta = 1")
        _ints(op, "log2_alpha", name, -C.LOG2_ALPHA_MAX, C.LOG2_ALPHA_MAX)
        _ints(op, "max_exponent", name, 0, 2**bits - 2)
        return src
    _ints(op, "k_step", name, 1, C.K_STEP_MAX)
    if qkind == "lsq":
        _absent(op, ("adapter",), name, "lsq has a fixed step")
        return src
    ad = op.get("adapter")
    if not isinstance(ad, dict):
        raise _bad(name, op, "adapter", "an asq quant op needs its adapter")
    ch = src[0]
    for f in ("f1", "f2"):
        if f in ad or f == "f2":
            v = ad.get(f)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= C.ADAPTER_F_MAX:
                raise _bad(name, op, f"adapter.{f}", f"must be an integer in 0..{C.ADAPTER_F_MAX}, not {v!r}")
    if ch >= 8:
        hid = ch // 4
        if "w1" not in ad:
            raise _bad(name, op, "adapter.w1", f"missing: an input of {ch} >= 8 channels has a hidden layer")
        _shape(op, "adapter.w1", ad["w1"], [hid, ch], name)
        _shape(op, "adapter.b1", ad.get("b1"), [hid], name)
        _shape(op, "adapter.w2", ad.get("w2"), [1, hid], name)
        if "f1" not in ad:
            raise _bad(name, op, "adapter.f1", "missing")
    else:
        for f in ("w1", "b1", "f1"):
            if f in ad:
                raise _bad(name, op, f"adapter.{f}", f"must be absent: an input of {ch} < 8 channels has no hidden layer")
        _shape(op, "adapter.w2", ad.get("w2"), [1, ch], name)
    _shape(op, "adapter.b2", ad.get("b2"), [1], name)
    for f in ("w1", "w2"):
        if f in ad:
            _bounded(op, f"adapter.{f}", ad[f], name, C.ADAPTER_W_LIMIT - 1)
    for f in ("b1", "b2"):
        if f in ad:
            _bounded(op, f"adapter.{f}", ad[f], name, C.ADAPTER_SUM_MAX)
    hidden, out = C.adapter_worst_case(ad.get("w1"), ad.get("b1"), ad.get("f1"), ad["w2"], ad["b2"], ad["f2"])
    for field, v in (("adapter.w1", hidden), ("adapter.w2", out)):
        if v > C.ADAPTER_SUM_MAX:
            raise _bad(name, op, field, f"worst-case |W g + B| = {v} exceeds {C.ADAPTER_SUM_MAX} (2^62 - 1)")
    return src


def _spatial(op, src, kernel, stride, pad, name):
    out = tuple(C.conv_out_size(src[1 + i], kernel[i], stride, pad) for i in range(2))
    if min(out) < 1:
        raise _bad(name, op, "kernel", f"kernel {list(kernel)} with pad {pad} does not fit the input {list(src[1:])}")
    return out


def _validate_layer(op, tensors, producer, name):
    src_kind, src = tensors[op["in"]]
    if src_kind != CODES:
        raise _bad(name, op, "in", f"a {op['op']} layer reads activation codes, not {src_kind} tensor {op['in']!r}")
    q = producer[op["in"]]
    if op.get("beta_from") != q["name"]:
        raise _bad(name, op, "beta_from", f"is {op.get('beta_from')!r} but the quant op feeding the layer is {q['name']!r}")
    mode = op.get("mode")
    if mode not in C.MODES:
        raise _bad(name, op, "mode", f"unknown product mode {mode!r}")
    if (mode == "shift2") != (q["kind"] == "shift"):
        raise _bad(name, op, "mode", f"is {mode} but its quant op {q['name']!r} makes {q['kind']} codes "
                                     f"(shift2 layers, and only they, read shift activations)")
    act_e = None
    if mode == "shift2":
        act_e = op.get("act_max_exponent")
        if act_e != q["max_exponent"] or isinstance(act_e, bool):
            raise _bad(name, op, "act_max_exponent", f"is {act_e!r} but its quant op's window is {q['max_exponent']}")
    else:
        _absent(op, ("act_max_exponent",), name, f"a {mode} layer reads linear activation codes")
    wbits = _ints(op, "wbits", name, 2, 8)
    abits = _ints(op, "abits", name, 2, 8)
    if abits != q["bits"]:
        raise _bad(name, op, "abits", f"is {abits} but its quant op {q['name']!r} makes {q['bits']}-bit codes")
    cin, cout = _ints(op, "cin", name, 1, C.DIM_MAX), _ints(op, "cout", name, 1, C.DIM_MAX)
    codes = _array(op, "codes", op.get("codes"), name)
    if not isinstance(op.get("relu"), bool):
        raise _bad(name, op, "relu", f"must be true or false, not {op.get('relu')!r}")
    if not isinstance(op.get("scheme"), str):
        raise _bad(name, op, "scheme", f"must be a string, not {op.get('scheme')!r}")
    if op["op"] == "conv":
        kernel = op.get("kernel")
        if not isinstance(kernel, list) or len(kernel) != 2 or any(
                isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= C.DIM_MAX for v in kernel):
            raise _bad(name, op, "kernel", f"must be [kh, kw] with each in 1..{C.DIM_MAX}, not {kernel!r}")
        kh, kw = kernel
        stride = _ints(op, "stride", name, 1, C.DIM_MAX)
        pad = _ints(op, "pad", name, 0, min(kh, kw) - 1)
        _shape(op, "codes", codes, [cout, cin, kh, kw], name)
        if len(src) != 3:
            raise _bad(name, op, "in", f"a conv reads a (C, H, W) tensor, not shape {list(src)}")
        if src[0] != cin:
            raise _bad(name, op, "cin", f"layer takes {cin} channels but its input has {src[0]}")
        out_shape = (cout,) + _spatial(op, src, kernel, stride, pad, name)
    else:
        _absent(op, ("kernel", "stride", "pad"), name, "a linear layer has no kernel, stride or pad")
        _shape(op, "codes", codes, [cout, cin], name)
        if int(np.prod(src)) != cin:
            raise _bad(name, op, "cin", f"layer takes {cin} inputs but its input has {int(np.prod(src))}")
        out_shape = (cout,)
    if mode == "mult":
        lo, hi = -(2 ** (wbits - 1)), 2 ** (wbits - 1) - 1
        if codes.size and (codes.min() < lo or codes.max() > hi):
            raise _bad(name, op, "codes", f"integer weight out of range {lo}..{hi}")
        if op.get("base") is not None or "format" in op:
            raise _bad(name, op, "base", "a mult layer has integer weights: base null and no format")
        fmt = None
    else:
        f = op.get("format")
        if not isinstance(f, dict):
            raise _bad(name, op, "format", f"a {mode} layer needs its weight code format")
        try:
            fmt = PowerFormat(f["bits"], f["base"], f["max_exponent"], f["has_zero"])
            if fmt.bits != wbits:
                raise ValueError(f"format bits {fmt.bits} != wbits {wbits}")
            if not isinstance(fmt.has_zero, bool):
                raise ValueError(f"has_zero must be true or false, not {fmt.has_zero!r}")
            fmt.validate(codes, "codes")
        except (KeyError, ValueError) as e:
            raise _bad(name, op, "codes" if "code" in str(e) or "exponent" in str(e) else "format", str(e)) from e
        if op.get("base") != fmt.base:
            raise _bad(name, op, "base", f"is {op.get('base')!r} but the format's base is {fmt.base!r}")
        if (mode in ("shift", "shift2")) != (fmt.base == "2"):
            raise _bad(name, op, "mode", f"mode {mode} does not fit base {fmt.base}")
    keys = ["even", "odd"] if mode == "dual" else ["acc"]
    mb = op.get("m_base")
    if not isinstance(mb, dict) or sorted(mb) != sorted(keys):
        raise _bad(name, op, "m_base", f"expected multipliers {keys}, found {sorted(mb) if isinstance(mb, dict) else mb!r}")
    for k in keys:
        _shape(op, f"m_base.{k}", mb[k], [cout], name)
        _bounded(op, f"m_base.{k}", mb[k], name, C.M_BASE_MAX)
    _shape(op, "bias", op.get("bias"), [cout], name)
    _bounded(op, "bias", op["bias"], name, C.BIAS_MAX)
    _ints(op, "shift", name, C.SHIFT_MIN, C.SHIFT_MAX)
    k = int(np.prod(codes.shape[1:]))
    if op.get("k") != k:
        raise _bad(name, op, "k", f"is {op.get('k')!r} but the layer has K = {k} terms")
    bound = C.acc_bound(mode, k, abits, fmt, wbits, act_e)
    if op.get("acc_bound") != bound:
        raise _bad(name, op, "acc_bound", f"is {op.get('acc_bound')!r} but the worst case is {bound}")
    width = C.acc_width(bound)
    if op.get("acc_bits") != width:
        raise _bad(name, op, "acc_bits", f"is {op.get('acc_bits')!r} but the worst case needs {width}")
    if width > C.acc_max_bits(mode):
        raise _bad(name, op, "acc_bits", f"accumulator of {width} bits would overflow the contract's "
                                         f"{C.acc_max_bits(mode)} for mode {mode}")
    return out_shape
