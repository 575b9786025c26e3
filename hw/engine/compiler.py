"""The compiler: an exported ``.rsq`` model + :class:`EngineParams` -> :class:`Program` (issue 9).

It re-encodes every layer's weight codes into the array's format and word layout, folds the exponent
window difference into bias and shift exactly (docs/hardware.md, "What the host does"), places every
tensor in the engine's memories (a liveness plan), and refuses, naming the layer, the quantity, the need
and the limit, anything the hardware cannot run. Nothing is silently truncated.
"""

import hashlib
from pathlib import Path

import numpy as np

from rootshift.sw import contract as C
from rootshift.sw import rsq
from rootshift.sw.errors import ConfigError
from rootshift.sw.intmodel import IntModel
from rootshift.sw.numfmt import PowerFormat

from .desc import conv_fields, pool_fields, quant_fields, vec_fields
from .params import EngineParams
from .program import BETA_ONE, Program

ADDR_LIMIT = 1 << 16     # words of the fine and code buffers (hw/engine/conv_unit.ADDR_BITS)
WGT_ADDR_LIMIT = 1 << 24  # weight-image words (the ConvUnit's weight address)
FIELD_LIMIT = 1 << 16   # descriptor fields (H, W, C, K_eff, tiles) are 16-bit in the engine
MAX_SHIFT = 63          # requantization shift register: 6 bits
BIAS_LIMIT = 1 << 62    # |B * 2^d| < 2^62: acc*M + B stays in 64 bits, and so does B + 2^(S-1) (S <= 63)


def _refuse(layer, quantity, need, limit):
    return ConfigError(f"layer {layer}: {quantity} needs {need}, the hardware's limit is {limit}")


def _fmt(op):
    f = op.get("format")
    return PowerFormat(f["bits"], f["base"], f["max_exponent"], f["has_zero"]) if f else None


def map_codes(op, array, expand=1):
    """``(hw_codes (Cout, K), d)``: the layer's codes in the hardware's format and the extra left shift
    ``d = E_hw - E_layer`` of every accumulator (folded into bias and shift by the caller). ``expand`` > 1:
    the layer reads bit-plane pixels on a shift2 array (:func:`expand_pixels`)."""
    name = op["name"]
    codes = np.asarray(op["codes"], np.int64).reshape(op["cout"], -1)
    if array.pe == "shift2":
        return _map_shift2(op, array, codes, expand)
    if op["mode"] not in ("dual", "lut", "shift", "mult"):
        raise _refuse(name, "product mode", op["mode"], f"the array's PE mode {array.pe}")
    if op["mode"] != array.pe:
        raise _refuse(name, "product mode", op["mode"], f"the array's PE mode {array.pe}")
    if op["wbits"] > array.wbits:
        raise _refuse(name, "weight bits", op["wbits"], array.wbits)
    if op["abits"] > array.abits:
        raise _refuse(name, "activation bits", op["abits"], array.abits)
    if array.pe == "mult":
        return codes & ((1 << array.wbits) - 1), 0
    lf, hf = _fmt(op), array.format
    if lf.base != hf.base:
        raise _refuse(name, "weight base", lf.base, f"base {hf.base}")
    sign, zero, k, odd = lf.decode(codes)
    e = k * 2 + odd if lf.base == "sqrt2" else k
    if (~zero).any() and int(e[~zero].max()) > hf.max_exponent:
        raise _refuse(name, "weight exponent", int(e[~zero].max()), f"the window 0..{hf.max_exponent}")
    hw = np.where(sign < 0, 1 << (array.wbits - 1), 0) | np.where(zero, hf.zero_field, e)
    return hw.astype(np.int64), hf.max_shift - lf.max_shift


def _map_shift2(op, array, codes, expand):
    """A shift2 array (docs/arithmetic.md, "shift2"): a ``shift2`` layer runs as is, its accumulator
    ``2^d`` larger with ``d = (E_w - E_w,L) + (E_a - E_a,L)`` (codes unchanged: code ``c`` is ``2^(E_a - c + 1)``
    on the array). A ``shift`` layer (base-2 weights on linear codes) runs only on the bit-plane pixels,
    each weight repeated per bit by the caller; there ``d = E_w - E_w,L``. The shift2 PE has no zero weight
    code, so a zero code is refused."""
    name = op["name"]
    if op["mode"] not in ("shift", "shift2"):
        raise _refuse(name, "product mode", op["mode"], "shift or shift2 on the array's PE mode shift2")
    if op["mode"] == "shift" and expand == 1:
        raise _refuse(name, "input", "linear activation codes", "shift codes or the bit-plane pixels (a shift2 array)")
    if op["wbits"] > array.wbits:
        raise _refuse(name, "weight bits", op["wbits"], array.wbits)
    lf, hf = _fmt(op), array.format
    if lf.base != "2":
        raise _refuse(name, "weight base", lf.base, "base 2")
    sign, zero, k, _ = lf.decode(codes)
    if zero.any():
        raise _refuse(name, "weight code", "a zero code", "shift weights (the shift2 PE has no zero code)")
    if int(k.max(initial=0)) > hf.max_exponent:
        raise _refuse(name, "weight exponent", int(k.max()), f"the window 0..{hf.max_exponent}")
    d = hf.max_shift - lf.max_shift
    if op["mode"] == "shift2":
        if op["abits"] > array.abits:
            raise _refuse(name, "activation bits", op["abits"], array.abits)
        if op["act_max_exponent"] > array.act_exponent:
            raise _refuse(name, "activation exponent window", op["act_max_exponent"], f"0..{array.act_exponent}")
        d += array.act_exponent - op["act_max_exponent"]
    hw = np.where(sign < 0, 1 << (array.wbits - 1), 0) | k
    return hw.astype(np.int64), d


def expand_pixels(pixels, act_exponent, bits=8):
    """Pixel codes (C, H, W) as a shift2 array reads them: channel ``c*bits + j`` holds bit ``j`` of channel
    ``c`` as the shift code ``E_a + 1 - j`` (the factor ``2^j``) where the bit is set, the zero code elsewhere,
    so ``sum_j f(code_j) = pixel`` exactly (the tile driver's ``expand_bits``; needs ``E_a >= bits - 1``)."""
    px = np.asarray(pixels, np.int64)
    j = np.arange(bits, dtype=np.int64)
    planes = np.where((px[:, None] >> j[None, :, None, None]) & 1 == 1, act_exponent + 1 - j[None, :, None, None], 0)
    return planes.reshape(px.shape[0] * bits, *px.shape[1:])


def input_codes(program, pixels):
    """The input tensor's codes for one image's pixel codes (C, H, W): the pixels themselves, or on a shift2
    array their bit planes (:func:`expand_pixels`; the input step's ``expand``). This is what ``INFER``
    carries; codes already in the tensor's shape are returned unchanged."""
    step = program.steps[0]
    px = np.asarray(pixels, np.int64)
    t = program.tensors[step["out"]]
    if step.get("expand", 1) == 1 or list(px.shape) == list(t["shape"]):
        return px.reshape(t["shape"])
    return expand_pixels(px, step["act_exponent"], step["expand"])


def _pack_words(lanes, bits, nbytes):
    """(n, L) lane values -> bytes of n little-endian words, lane ``c`` at bits ``[c*bits +: bits]``."""
    n, L = lanes.shape
    b = ((lanes[:, :, None] >> np.arange(bits)) & 1).astype(np.uint8).reshape(n, L * bits)
    b = np.concatenate([b, np.zeros((n, nbytes * 8 - L * bits), np.uint8)], axis=1)
    return np.packbits(b, axis=1, bitorder="little").tobytes()


class _Builder:
    def __init__(self, im, ep: EngineParams):
        self.im, self.ep, self.a = im, ep, ep.array
        self.steps, self.tensors, self.alias = [], {}, {}
        self.beta = {}           # quant op name -> beta slot
        self.n_slots = 0
        self.wimg, self.wwords = [], 0

    def tensor(self, name, kind, shape, bits=None):
        c, h, w = shape
        for q, v in (("channels", c), ("height", h), ("width", w)):
            if v >= FIELD_LIMIT:
                raise _refuse(name, q, v, FIELD_LIMIT - 1)
        groups = -(-c // self.ep.lanes)
        self.tensors[name] = {"kind": kind, "shape": [c, h, w], "groups": groups, "words": h * w * groups,
                              "bits": bits}
        return self.tensors[name]

    def resolve(self, name):
        return self.alias.get(name, name)

    def build(self):
        shape0 = self.im.meta.get("input_shape")
        for op in self.im.ops:
            kind = op["op"]
            if kind == "input":
                shape = op.get("shape") or shape0
                if not shape or len(shape) != 3:
                    raise ConfigError(f"layer input: the engine needs a [C, H, W] input shape, not {shape!r}")
                if self.a.pe == "shift2":   # 8-bit pixels as 8 bit planes of shift codes (expand_pixels)
                    if self.a.act_exponent < 7:
                        raise _refuse("input", "activation exponent window", "7 (8-bit pixels, one shift code per bit)",
                                      f"0..{self.a.act_exponent}")
                    self.tensor(op["out"], "codes", [shape[0] * 8] + list(shape[1:]), 8)["expand"] = 8
                    self.steps.append({"kind": "input", "name": "input", "out": op["out"], "expand": 8,
                                       "act_exponent": self.a.act_exponent})
                    continue
                if self.a.abits < 8:
                    raise _refuse("input", "pixel bits", 8, f"{self.a.abits}-bit activation lanes")
                self.tensor(op["out"], "codes", shape, 8)
                self.steps.append({"kind": "input", "name": "input", "out": op["out"]})
            elif kind == "quant":
                self.quant(op)
            elif kind in ("conv", "linear"):
                self.layer(op)
            elif kind == "add_relu":
                a, b = (self.resolve(i) for i in op["in"])
                self.tensor(op["out"], "fine", self.tensors[a]["shape"])
                self.steps.append({"kind": "add_relu", "name": op["name"], "in": [a, b], "out": op["out"]})
            elif kind == "maxpool":
                src = self.resolve(op["in"])
                c, h, w = self.tensors[src]["shape"]
                k, s, p = op["kernel"], op["stride"], op["pad"]
                self.tensor(op["out"], "fine", [c, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1])
                self.steps.append({"kind": "maxpool", "name": op["name"], "in": src, "out": op["out"],
                                   "k": k, "stride": s, "pad": p})
            elif kind == "avgpool":
                src = self.resolve(op["in"])
                c, h, w = self.tensors[src]["shape"]
                self.tensor(op["out"], "fine", [c, 1, 1])
                self.steps.append({"kind": "avgpool", "name": op["name"], "in": src, "out": op["out"], "n": h * w})
            else:
                raise _refuse(op.get("name", kind), "op", repr(kind), "conv, linear, quant, add_relu, maxpool, avgpool")

    def quant(self, op):
        src = self.resolve(op["in"])
        if op["kind"] == "input8":
            if self.tensors[src]["kind"] != "codes" or self.tensors[src]["bits"] != 8:
                raise _refuse(op["name"], "input8 source", f"pixel codes, not {src!r}", "the input tensor")
            self.alias[op["out"]] = src
            self.beta[op["name"]] = BETA_ONE
            return
        shift2 = self.a.pe == "shift2"
        if op["kind"] not in (("shift",) if shift2 else ("lsq", "asq")):
            raise _refuse(op["name"], "activation quantizer", op["kind"],
                          "input8 or shift on a shift2 array" if shift2 else "input8, lsq or asq in the engine")
        if op["bits"] > self.a.abits:
            raise _refuse(op["name"], "activation bits", op["bits"], self.a.abits)
        shape = self.tensors[src]["shape"]
        self.tensor(op["out"], "codes", shape, op["bits"])
        if shift2:     # shift activations: beta = 1, no step; T and n go into the QuantStep's descriptor
            if op["max_exponent"] > self.a.act_exponent:
                raise _refuse(op["name"], "activation exponent window", op["max_exponent"], f"0..{self.a.act_exponent}")
            step = {"kind": "quant", "name": op["name"], "in": src, "out": op["out"], "bits": op["bits"],
                    "scheme": "shift", "log2_alpha": int(op["log2_alpha"]), "max_exponent": int(op["max_exponent"]),
                    "k_step": 0, "adapter": None, "beta_slot": BETA_ONE}
            self.beta[op["name"]] = BETA_ONE
            self.steps.append(step)
            return
        step = {"kind": "quant", "name": op["name"], "in": src, "out": op["out"], "bits": op["bits"],
                "scheme": "linear", "k_step": int(op["k_step"]), "adapter": None, "beta_slot": BETA_ONE}
        if op["kind"] == "asq":
            ad = op["adapter"]
            hidden = "w1" in ad and ad["w1"] is not None
            step["adapter"] = {"hidden": int(np.asarray(ad["w1"]).shape[0]) if hidden else 0,
                               "w1": np.asarray(ad["w1"], np.int64) if hidden else None,
                               "b1": np.asarray(ad["b1"], np.int64) if hidden else None,
                               "f1": int(ad["f1"]) if hidden else 0,
                               "w2": np.asarray(ad["w2"], np.int64), "b2": np.asarray(ad["b2"], np.int64),
                               "f2": int(ad["f2"]), "gap_n": shape[1] * shape[2]}
            step["beta_slot"] = self.n_slots
            self.n_slots += 1
        self.beta[op["name"]] = step["beta_slot"]
        self.steps.append(step)

    def layer(self, op):
        name, a = op["name"], self.a
        src = self.resolve(op["in"])
        t = self.tensors[src]
        if t["kind"] != "codes":
            raise _refuse(name, "input", f"a code tensor, not fine {src!r}", "conv/linear read codes")
        c_in, h, w = t["shape"]
        if op["op"] == "conv":
            (kh, kw), stride, pad = op["kernel"], op["stride"], op["pad"]
        else:  # a linear layer is a conv whose kernel covers its whole (C, H, W) input: same K order
            kh, kw, stride, pad = h, w, 1, 0
        expand = t.get("expand", 1)    # bit-plane pixels on a shift2 array: each input channel is expand planes
        if c_in != op["cin"] * expand:
            raise _refuse(name, "input channels", op["cin"] * expand, f"{c_in} in tensor {src!r}")
        ho, wo = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
        k = c_in * kh * kw
        if k > a.max_k:
            raise _refuse(name, "K", k, f"max_k {a.max_k}")
        if op["abits"] != t["bits"]:
            raise _refuse(name, "activation bits", f"{op['abits']} (the layer)", f"{t['bits']} (its input codes)")
        hw, d = map_codes(op, a, expand)
        if expand > 1:
            hw = np.repeat(hw.reshape(op["cout"], op["cin"], -1), expand, axis=1).reshape(op["cout"], -1)
        shift = int(op["shift"]) + d
        if shift > MAX_SHIFT:
            raise _refuse(name, "requantization shift", f"{op['shift']} + {d}", MAX_SHIFT)
        bias = np.asarray(op["bias"], np.int64)
        if np.abs(bias).max(initial=0) >= BIAS_LIMIT >> d:
            raise _refuse(name, "bias", f"|B| * 2^{d} = {int(np.abs(bias).max())} * 2^{d}", "2^62")
        groups, cout = t["groups"], op["cout"]
        k_eff = kh * kw * c_in      # k-slices per tile: the padded lanes of a tap's last word are skipped
        tiles_c = -(-cout // a.cols)
        if k_eff >= FIELD_LIMIT or tiles_c >= FIELD_LIMIT:
            raise _refuse(name, "K", k_eff, FIELD_LIMIT - 1)
        zero = a.format.zero_field if a.format and a.format.has_zero else 0   # columns past cout: weight 0
        img = np.full((tiles_c * a.cols, kh, kw, c_in), zero, np.int64)
        img[:cout] = hw.reshape(cout, c_in, kh, kw).transpose(0, 2, 3, 1)
        lanes_img = img.reshape(tiles_c, a.cols, k_eff).transpose(0, 2, 1).reshape(-1, a.cols)
        nb = (a.cols * a.wbits + 7) // 8
        self.wimg.append(_pack_words(lanes_img, a.wbits, nb))
        keys = ["even", "odd"] if op["mode"] == "dual" else ["acc"]
        self.tensor(op["out"], "fine", [cout, ho, wo])
        self.steps.append({
            "kind": op["op"], "name": name, "in": src, "out": op["out"], "cin": c_in, "cout": cout,
            "h": h, "w": w, "ho": ho, "wo": wo, "kh": kh, "kw": kw, "stride": stride, "pad": pad,
            "k": k, "k_eff": k_eff, "groups": groups, "expand": expand, "tiles_c": tiles_c, "tiles_p": -(-ho * wo // a.rows),
            "wgt_addr": self.wwords, "wgt_words": tiles_c * k_eff, "d": d, "shift": shift,
            "relu": bool(op["relu"]), "beta_slot": self.beta[op["beta_from"]],
            "m_base": [np.asarray(op["m_base"][key], np.int64) for key in keys],
            "bias": bias << np.int64(d)})
        self.wwords += tiles_c * k_eff


def _uses(step):
    ins = step.get("in")
    return [] if ins is None else ([ins] if isinstance(ins, str) else list(ins))


def plan_memory(steps, tensors, output, debug=False):
    """Place every tensor (word addresses per buffer) by liveness: a tensor lives from the step that
    writes it to the last step that reads it (the logits to the end). An output never shares words with
    the step's inputs. ``debug`` keeps every tensor (no reuse), so any layer can be read back after a run.
    Returns ``{buffer: (peak words, name of the step at the peak)}``."""
    last = {}
    for i, s in enumerate(steps):
        for t in _uses(s):
            last[t] = i
    last[output] = len(steps)
    free = {"fine": [], "codes": []}       # sorted (addr, words) holes
    top = {"fine": 0, "codes": 0}
    peak = {"fine": (0, None), "codes": (0, None)}
    for i, s in enumerate(steps):
        t = tensors[s["out"]]
        buf, n = t["kind"], t["words"]
        holes = free[buf]
        for j, (addr, size) in enumerate(holes):
            if size >= n:
                t["addr"] = addr
                holes[j:j + 1] = [(addr + n, size - n)] if size > n else []
                break
        else:
            t["addr"] = top[buf]
            top[buf] += n
        if top[buf] > peak[buf][0]:
            peak[buf] = (top[buf], s["name"])
        if debug:
            continue
        for name in set(_uses(s)):
            if last.get(name) == i:
                u = tensors[name]
                free[u["kind"]] = _merge(free[u["kind"]] + [(u["addr"], u["words"])])
    return peak


def _merge(holes):
    out = []
    for a, n in sorted(holes):
        if out and out[-1][0] + out[-1][1] == a:
            out[-1] = (out[-1][0], out[-1][1] + n)
        else:
            out.append((a, n))
    return out


def _adapter_words(ad, lanes):
    """Adapter weight words (``lanes`` weights each) of a step's adapter: hw/engine/adapter.py's layout."""
    from .adapter import adapter_weight_count

    w2 = int(ad["w2"].size)
    return adapter_weight_count(int(ad["w1"].shape[1]) if ad["hidden"] else w2, ad["hidden"], lanes)


def _consts_bytes(steps, n_acc, lanes):
    """Constant memory: per layer M_base (4 B per accumulator) and B (8 B) per channel plus a 16 B
    header; per quant 8 B (K_s); per adapter 2 B per weight (|Wq| < 2^15) in words of ``lanes`` weights,
    padding included (``adapter_weight_count``), and 8 B per bias."""
    total = 0
    for s in steps:
        if s["kind"] in ("conv", "linear"):
            total += s["cout"] * (4 * n_acc + 8) + 16
        elif s["kind"] == "quant":
            total += 8
            ad = s["adapter"]
            if ad:
                total += 2 * lanes * _adapter_words(ad, lanes) + 8 + 16
                if ad["hidden"]:
                    total += 8 * int(ad["b1"].size)
    return total


def compile_model(model, params, debug=False) -> Program:
    """Compile an ``.rsq`` file (path) or a loaded :class:`IntModel` for ``params`` (ArrayParams or
    EngineParams). Raises ConfigError (naming layer, quantity, need, limit) if the hardware cannot run it."""
    ep = EngineParams.of(params)
    if isinstance(model, IntModel):
        im, data = model, rsq.to_bytes(model)
    else:
        data = Path(model).read_bytes() if Path(model).is_file() else None
        if data is None:
            im = rsq.load(model)  # raises the loader's "does not exist" FormatError
        im = rsq.from_bytes(data, str(model))
    b = _Builder(im, ep)
    b.build()
    output = b.resolve(im.meta["output"])
    peak = plan_memory(b.steps, b.tensors, output, debug)
    a = ep.array
    plan = {"weights": b.wwords * ((a.cols * a.wbits + 7) // 8),
            "fine": peak["fine"][0] * ep.lanes * 4,
            "codes": peak["codes"][0] * ((ep.lanes * a.abits + 7) // 8) * a.rows,
            "consts": _consts_bytes(b.steps, a.n_acc, ep.lanes)}
    where = {"weights": "the weight image", "fine": f"step {peak['fine'][1]}", "codes": f"step {peak['codes'][1]}",
             "consts": "the constants"}
    for buf, words in (("fine", peak["fine"]), ("codes", peak["codes"])):
        if words[0] > ADDR_LIMIT:     # the engine's activation addresses are 16 bits
            raise ConfigError(f"memory plan at step {words[1]}: buffer {buf!r} needs {words[0]} words, "
                              f"the hardware's limit is {ADDR_LIMIT} words (16-bit addresses)")
    if b.wwords > WGT_ADDR_LIMIT:
        raise ConfigError(f"memory plan at the weight image: buffer 'weights' needs {b.wwords} words, "
                          f"the hardware's limit is {WGT_ADDR_LIMIT} words (24-bit addresses)")
    for buf, need in plan.items():
        limit = ep.limits[buf]
        if need > limit:
            raise ConfigError(f"memory plan at {where[buf]}: buffer {buf!r} needs {need} bytes, "
                              f"the hardware's limit is {limit} bytes ({buf}_kib = {limit // 1024})")
    c_addr = aw_addr = ab_addr = m_addr = 0
    for s in b.steps:    # the engine's descriptor fields, now that every tensor has its address
        if s["kind"] in ("conv", "linear"):
            s["desc"] = conv_fields(s, a.rows, b.tensors[s["in"]]["addr"], b.tensors[s["out"]]["addr"], c_addr,
                                   drain=ep.drain_cycles)
            s["m_addr"] = m_addr
            c_addr += s["tiles_c"]
            m_addr += s["cout"]
        elif s["kind"] in ("add_relu", "avgpool"):
            s["desc"] = vec_fields(s, b.tensors)
        elif s["kind"] == "maxpool":
            s["desc"] = pool_fields(s, b.tensors)
        elif s["kind"] == "quant":
            src = b.tensors[s["in"]]
            s["desc"] = quant_fields(s, src, src["addr"], b.tensors[s["out"]]["addr"], aw_addr, ab_addr)
            ad = s["adapter"]
            if ad:
                aw_addr += _adapter_words(ad, ep.lanes)
                ab_addr += 1 + ad["hidden"]
    prog = Program(params=ep, steps=b.steps, tensors=b.tensors, weights=b"".join(b.wimg), output=output,
                   model_sha256=hashlib.sha256(data).hexdigest(), plan=plan)
    return prog


def summary(program) -> dict:
    """The JSON-able summary ``rootshift compile --json`` prints: the memory plan (bytes per buffer), the
    cycle model's cycles per image and per-layer rows (docs/engine.md, "Cycle model")."""
    from .cycles import cycle_report

    rep = cycle_report(program)
    a = program.params.array
    return {"program_version": program.version, "contract_version": C.CONTRACT_VERSION,
            "array": {"rows": a.rows, "cols": a.cols, "pe": a.pe, "wbits": a.wbits, "abits": a.abits,
                      "max_k": a.max_k, "max_shift": a.max_shift, "act_exponent": a.act_exponent},
            "memory": dict(program.plan), "memory_limits": program.params.limits,
            "program_bytes": len(program.to_bytes()), "model_sha256": program.model_sha256,
            "cycles_per_image": rep["cycles_per_image"], "input_cycles": rep["input_cycles"],
            "macs_per_image": rep["macs_per_image"], "utilization": rep["utilization"], "layers": rep["layers"]}
