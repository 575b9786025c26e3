"""The engine program: layer descriptors, tensor placements, constants and the weight image.

A :class:`Program` is what the compiler (:mod:`.compiler`) produces and what the engine (and the reference
executor, :mod:`.reference`) runs. Its bytes are deterministic and versioned (docs/engine.md, "Program
format")::

    0   8  magic b"RSPROGRM"
    8   2  program format version (u16)
    10  2  arithmetic contract version (u16)
    12  4  JSON length J (u32)
    16  8  payload length P (u64)
    24  J  JSON {"program": ..., "arrays": [...]}, keys sorted; arrays written {"$array": i}
    ..  P  payload: the weight image, then the int64 arrays
    ..  32 SHA-256 of every byte before it
"""

import hashlib
import json
import struct
from dataclasses import dataclass, field

import numpy as np

from rootshift.sw import contract as C
from rootshift.sw.errors import FormatError

from .params import EngineParams

MAGIC = b"RSPROGRM"
PROGRAM_VERSION = 3    # 2: k-slices over the real channels only (k_eff = kh * kw * cin), weight images without padded lanes;
                       # 3: conv descriptors with gap 0 (no bubble between tiles: the ConvUnit captures the adders)
HEAD = struct.Struct("<8sHHIQ")
EXIT_TRUNCATED, EXIT_CHECKSUM, EXIT_VERSION, EXIT_INVALID = 3, 4, 5, 6
STEP_KINDS = ("input", "quant", "conv", "linear", "add_relu", "maxpool", "avgpool")
BETA_ONE = -1   # beta slot of input8 / LSQ inputs: beta_fx = 2^16, so M = M_base


@dataclass
class Program:
    """Members: ``params`` (EngineParams), ``steps`` (descriptors in execution order), ``tensors``
    (name -> placement), ``weights`` (the weight image, bytes), ``output`` (the logits tensor),
    ``model_sha256`` (of the ``.rsq`` bytes it was compiled from), ``plan`` (bytes per buffer)."""

    params: EngineParams
    steps: list
    tensors: dict
    weights: bytes
    output: str
    model_sha256: str
    plan: dict = field(default_factory=dict)
    version: int = PROGRAM_VERSION

    # -- layout helpers shared by the compiler, the executor and the cycle model --------------------
    @property
    def wgt_word_bytes(self):
        a = self.params.array
        return (a.cols * a.wbits + 7) // 8

    def weight_lanes(self, step):
        """The layer's weight image unpacked: (tiles_c * k_eff, cols) codes, lane ``c`` of word ``i`` at
        bits ``[c*wbits +: wbits]`` of the little-endian word (docs/engine.md, "Weight image")."""
        a = self.params.array
        nb = self.wgt_word_bytes
        raw = self.weights[step["wgt_addr"] * nb:(step["wgt_addr"] + step["wgt_words"]) * nb]
        bits = np.unpackbits(np.frombuffer(raw, np.uint8).reshape(-1, nb), axis=1, bitorder="little")
        bits = bits[:, :a.cols * a.wbits].reshape(-1, a.cols, a.wbits).astype(np.int64)
        return bits @ (np.int64(1) << np.arange(a.wbits, dtype=np.int64))

    # -- bytes -------------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        arrays = []
        doc = {"program": _pack({"version": self.version, "params": self.params.to_dict(), "steps": self.steps,
                                 "tensors": self.tensors, "output": self.output,
                                 "model_sha256": self.model_sha256, "plan": self.plan,
                                 "weights_bytes": len(self.weights)}, arrays),
               "arrays": []}
        payload, off = [self.weights], len(self.weights)
        for a in arrays:
            b = a.tobytes()
            doc["arrays"].append({"shape": list(a.shape), "offset": off, "nbytes": len(b)})
            payload.append(b)
            off += len(b)
        js = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        body = HEAD.pack(MAGIC, PROGRAM_VERSION, C.CONTRACT_VERSION, len(js), off) + js + b"".join(payload)
        return body + hashlib.sha256(body).digest()

    @classmethod
    def from_bytes(cls, data: bytes, name="program"):
        if len(data) < HEAD.size + 32:
            raise FormatError(f"{name}: truncated ({len(data)} bytes, not even a header)", exit_code=EXIT_TRUNCATED)
        magic, ver, cver, jlen, plen = HEAD.unpack_from(data)
        if magic != MAGIC:
            raise FormatError(f"{name}: not a rootshift program (magic {magic!r})", exit_code=EXIT_TRUNCATED)
        expected = HEAD.size + jlen + plen + 32
        if len(data) != expected:
            raise FormatError(f"{name}: truncated or padded ({len(data)} of {expected} bytes)", exit_code=EXIT_TRUNCATED)
        if hashlib.sha256(data[:-32]).digest() != data[-32:]:
            raise FormatError(f"{name}: checksum mismatch: the file is corrupt", exit_code=EXIT_CHECKSUM)
        if ver != PROGRAM_VERSION:
            raise FormatError(f"{name}: program format version {ver}; this rootshift reads version {PROGRAM_VERSION}",
                              exit_code=EXIT_VERSION)
        if cver != C.CONTRACT_VERSION:
            raise FormatError(f"{name}: arithmetic contract version {cver}; this rootshift implements "
                              f"{C.CONTRACT_VERSION}", exit_code=EXIT_VERSION)
        try:
            doc = json.loads(data[HEAD.size:HEAD.size + jlen])
            payload = data[HEAD.size + jlen:HEAD.size + jlen + plen]
            arrays = []
            for i, a in enumerate(doc["arrays"]):
                n = int(np.prod(a["shape"]))
                if a["offset"] + a["nbytes"] > plen or a["nbytes"] != 8 * n:
                    raise FormatError(f"{name}: array {i} has an inconsistent size", exit_code=EXIT_INVALID)
                arrays.append(np.frombuffer(payload, "<i8", n, a["offset"]).reshape(a["shape"]).astype(np.int64))
            p = _unpack(doc["program"], arrays)
            prog = cls(params=EngineParams.from_dict(p["params"]), steps=p["steps"], tensors=p["tensors"],
                       weights=bytes(payload[:p["weights_bytes"]]), output=p["output"],
                       model_sha256=p["model_sha256"], plan=p["plan"], version=p["version"])
        except FormatError:
            raise
        except (ValueError, KeyError, TypeError) as e:
            raise FormatError(f"{name}: malformed program: {e}", exit_code=EXIT_INVALID) from e
        for s in prog.steps:
            if s.get("kind") not in STEP_KINDS:
                raise FormatError(f"{name}: step {s.get('name')!r} has unknown kind {s.get('kind')!r}",
                                  exit_code=EXIT_INVALID)
        return prog


def _pack(obj, arrays):
    if isinstance(obj, np.ndarray):
        arrays.append(np.ascontiguousarray(obj, dtype="<i8"))
        return {"$array": len(arrays) - 1}
    if isinstance(obj, dict):
        return {str(k): _pack(obj[k], arrays) for k in sorted(obj)}
    if isinstance(obj, (list, tuple)):
        return [_pack(v, arrays) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _unpack(obj, arrays):
    if isinstance(obj, dict):
        if set(obj) == {"$array"}:
            return arrays[obj["$array"]]
        return {k: _unpack(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unpack(v, arrays) for v in obj]
    return obj
