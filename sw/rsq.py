"""The ``.rsq`` integer-model file (docs/export-format.md): header, JSON graph, arrays, SHA-256 trailer.

Layout (little endian)::

    0   8  magic  b"RSQMODEL"
    8   2  format version (u16) = 1
    10  2  contract version (u16)
    12  4  JSON length J (u32)
    16  8  payload length P (u64)
    24  J  JSON: {"meta", "ops", "arrays"}; arrays in ops are {"$array": index}
    ..  P  payload: the arrays, raw, each at its recorded offset
    ..  32 SHA-256 of every byte before it

The loader checks, in order: size and magic, the declared lengths, the checksum, the versions, and then
every op's fields (shapes, code ranges, widths), naming the op and field that is wrong.
"""

import hashlib
import json
import struct
from pathlib import Path

import numpy as np

from . import contract as C
from .errors import FormatError
from .intmodel import IntModel
from .fileio import atomic_write_bytes
from .numfmt import PowerFormat

MAGIC = b"RSQMODEL"
FORMAT_VERSION = 1
HEAD = struct.Struct("<8sHHIQ")
EXIT_TRUNCATED, EXIT_CHECKSUM, EXIT_VERSION, EXIT_INVALID = 3, 4, 5, 6


def _pack(obj, arrays):
    if isinstance(obj, np.ndarray):
        arrays.append(np.ascontiguousarray(obj, dtype="<i8"))
        return {"$array": len(arrays) - 1}
    if isinstance(obj, dict):
        return {k: _pack(obj[k], arrays) for k in sorted(obj) if not k.startswith("_")}
    if isinstance(obj, (list, tuple)):
        return [_pack(v, arrays) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    return obj


def to_bytes(im: IntModel) -> bytes:
    arrays = []
    doc = {"meta": _pack(im.meta, arrays), "ops": _pack(im.ops, arrays), "arrays": []}
    payload, off = [], 0
    for a in arrays:
        b = a.tobytes()
        doc["arrays"].append({"dtype": "<i8", "shape": list(a.shape), "offset": off, "nbytes": len(b)})
        payload.append(b)
        off += len(b)
    js = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    body = HEAD.pack(MAGIC, FORMAT_VERSION, C.CONTRACT_VERSION, len(js), off) + js + b"".join(payload)
    return body + hashlib.sha256(body).digest()


def save(im: IntModel, path):
    validate(im)
    atomic_write_bytes(path, to_bytes(im))


def _unpack(obj, arrays):
    if isinstance(obj, dict):
        if set(obj) == {"$array"}:
            return arrays[obj["$array"]]
        return {k: _unpack(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unpack(v, arrays) for v in obj]
    return obj


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
    if fver != FORMAT_VERSION:
        raise FormatError(f"{name}: format version {fver}; this rootshift reads version {FORMAT_VERSION}",
                          exit_code=EXIT_VERSION)
    if cver != C.CONTRACT_VERSION:
        raise FormatError(f"{name}: arithmetic contract version {cver}; this rootshift implements "
                          f"{C.CONTRACT_VERSION}", exit_code=EXIT_VERSION)
    try:
        doc = json.loads(data[HEAD.size:HEAD.size + jlen])
        payload = data[HEAD.size + jlen:HEAD.size + jlen + plen]
        arrays = []
        for i, a in enumerate(doc["arrays"]):
            if a["dtype"] != "<i8" or a["offset"] + a["nbytes"] > plen or a["nbytes"] != 8 * int(np.prod(a["shape"])):
                raise FormatError(f"{name}: array {i} has an inconsistent size or dtype", exit_code=EXIT_INVALID)
            arrays.append(np.frombuffer(payload, "<i8", int(np.prod(a["shape"])), a["offset"]).reshape(a["shape"]).copy())
        im = IntModel(_unpack(doc["meta"], arrays), _unpack(doc["ops"], arrays))
    except FormatError:
        raise
    except (ValueError, KeyError, TypeError) as e:
        raise FormatError(f"{name}: malformed graph: {e}", exit_code=EXIT_INVALID) from e
    validate(im, name)
    return im


def load(path) -> IntModel:
    p = Path(path)
    if not p.is_file():
        raise FormatError(f"model file {p} does not exist", exit_code=EXIT_TRUNCATED)
    return from_bytes(p.read_bytes(), str(p))


def _bad(name, op, field, why):
    return FormatError(f"{name}: op {op.get('name', op.get('op'))!r} field {field!r}: {why}", exit_code=EXIT_INVALID)


def _shape(op, field, arr, shape, name):
    a = np.asarray(arr)
    if list(a.shape) != list(shape):
        raise _bad(name, op, field, f"shape {list(a.shape)} does not match the expected {list(shape)}")


def _ints(op, field, name, lo, hi):
    v = op.get(field)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise _bad(name, op, field, f"must be an integer in {lo}..{hi}, not {v!r}")
    return v


def validate(im: IntModel, name="model"):
    """Check every op against the contract: graph references, shapes (by shape inference), ranges, widths."""
    shapes = {}
    ops = im.ops
    if not ops or ops[0].get("op") != "input":
        raise FormatError(f"{name}: the graph must start with an input op", exit_code=EXIT_INVALID)
    for op in ops:
        kind = op.get("op")
        ins = op.get("in")
        for i in ([ins] if isinstance(ins, str) else ins or []):
            if i not in shapes:
                raise _bad(name, op, "in", f"tensor {i!r} is used before it is defined")
        if kind == "input":
            shapes[op["out"]] = tuple(op["shape"]) if op.get("shape") else None
        elif kind == "quant":
            _ints(op, "bits", name, 2 if op.get("kind") != "input8" else 8, 8)
            if op.get("kind") not in ("input8", "lsq", "asq"):
                raise _bad(name, op, "kind", f"unknown activation quantizer {op.get('kind')!r}")
            if op["kind"] != "input8":
                _ints(op, "k_step", name, 1, 2**62 - 1)
            if op["kind"] == "asq":
                ad = op.get("adapter") or {}
                src = shapes[ins]
                ch = src[0] if src else None
                w2 = np.asarray(ad.get("w2"))
                if "w1" in ad:
                    w1 = np.asarray(ad["w1"])
                    if ch is not None:
                        _shape(op, "adapter.w1", w1, [ch // 4, ch], name)
                    _shape(op, "adapter.b1", ad["b1"], [w1.shape[0]], name)
                    _shape(op, "adapter.w2", w2, [1, w1.shape[0]], name)
                elif ch is not None:
                    _shape(op, "adapter.w2", w2, [1, ch], name)
                _shape(op, "adapter.b2", ad.get("b2"), [1], name)
            shapes[op["out"]] = shapes[ins]
        elif kind in ("conv", "linear"):
            _validate_layer(op, shapes, name)
        elif kind == "add_relu":
            a, b = (shapes[i] for i in ins)
            if a is not None and b is not None and a != b:
                raise _bad(name, op, "in", f"operand shapes {list(a)} and {list(b)} differ")
            shapes[op["out"]] = a
        elif kind == "maxpool":
            s = shapes[ins]
            k, st, p = op["kernel"], op["stride"], op["pad"]
            shapes[op["out"]] = None if s is None else (s[0], (s[1] + 2 * p - k) // st + 1, (s[2] + 2 * p - k) // st + 1)
        elif kind == "avgpool":
            s = shapes[ins]
            shapes[op["out"]] = None if s is None else (s[0],)
        else:
            raise FormatError(f"{name}: unsupported op {kind!r}", exit_code=EXIT_INVALID)
    if im.meta.get("output") not in shapes:
        raise FormatError(f"{name}: output tensor {im.meta.get('output')!r} is not produced", exit_code=EXIT_INVALID)


def _validate_layer(op, shapes, name):
    mode = op.get("mode")
    if mode not in C.MODES:
        raise _bad(name, op, "mode", f"unknown product mode {mode!r}")
    wbits = _ints(op, "wbits", name, 2, 8)
    abits = _ints(op, "abits", name, 2, 8)
    cin, cout = _ints(op, "cin", name, 1, 1 << 20), _ints(op, "cout", name, 1, 1 << 20)
    src = shapes[op["in"]]
    codes = np.asarray(op["codes"])
    if op["op"] == "conv":
        kh, kw = op["kernel"]
        _shape(op, "codes", codes, [cout, cin, kh, kw], name)
        if src is not None:
            if src[0] != cin:
                raise _bad(name, op, "cin", f"layer takes {cin} channels but its input has {src[0]}")
            s, p = op["stride"], op["pad"]
            shapes[op["out"]] = (cout, (src[1] + 2 * p - kh) // s + 1, (src[2] + 2 * p - kw) // s + 1)
        else:
            shapes[op["out"]] = None
    else:
        _shape(op, "codes", codes, [cout, cin], name)
        if src is not None and int(np.prod(src)) != cin:
            raise _bad(name, op, "cin", f"layer takes {cin} inputs but its input has {int(np.prod(src))}")
        shapes[op["out"]] = (cout,)
    if mode == "mult":
        lo, hi = -(2 ** (wbits - 1)), 2 ** (wbits - 1) - 1
        if codes.size and (codes.min() < lo or codes.max() > hi):
            raise _bad(name, op, "codes", f"integer weight out of range {lo}..{hi}")
        fmt = None
    else:
        f = op.get("format") or {}
        try:
            fmt = PowerFormat(f["bits"], f["base"], f["max_exponent"], f["has_zero"])
            if fmt.bits != wbits:
                raise ValueError(f"format bits {fmt.bits} != wbits {wbits}")
            fmt.validate(codes, "codes")
        except (KeyError, ValueError) as e:
            raise _bad(name, op, "codes" if "code" in str(e) or "exponent" in str(e) else "format", str(e)) from e
        if (mode == "shift") != (fmt.base == "2"):
            raise _bad(name, op, "mode", f"mode {mode} does not fit base {fmt.base}")
    keys = ["even", "odd"] if mode == "dual" else ["acc"]
    mb = op.get("m_base") or {}
    if sorted(mb) != sorted(keys):
        raise _bad(name, op, "m_base", f"expected multipliers {keys}, found {sorted(mb)}")
    for k in keys:
        _shape(op, f"m_base.{k}", mb[k], [cout], name)
        if np.abs(mb[k]).max(initial=0) >= 2 ** (C.M_BASE_BITS - 1):
            raise _bad(name, op, f"m_base.{k}", f"exceeds {C.M_BASE_BITS}-bit signed range")
    _shape(op, "bias", op["bias"], [cout], name)
    _ints(op, "shift", name, 1, 62)
    k = int(np.prod(codes.shape[1:]))
    width = C.acc_width(C.acc_bound(mode, k, abits, fmt, wbits))
    if op.get("acc_bits") != width:
        raise _bad(name, op, "acc_bits", f"is {op.get('acc_bits')!r} but the worst case needs {width}")
    if width > C.ACC_MAX_BITS:
        raise _bad(name, op, "acc_bits", f"accumulator of {width} bits would overflow the contract's {C.ACC_MAX_BITS}")
