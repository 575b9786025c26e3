"""Host driver: runs an exported ``.rsq`` model on a generated accelerator through its stream protocol.

The driver is sans-IO: :meth:`HostDriver.run` is a generator that yields :class:`Request` s (words to
send, how many words to read back) and receives the answers, so the same code drives cocotb, an
``amaranth.sim`` test bench or a serial link to a board (:func:`run_sync` / :func:`run_async`).
On the host it does only what docs/arithmetic.md assigns to the host, with the contract's own
functions: im2col and tiling, quant ops and the ASQ adapter, per-sample multipliers, residual adds
and pooling. Every conv/linear layer's MACs and requantization run on the accelerator.
"""

from dataclasses import dataclass, field

import numpy as np

from rootshift.hw import protocol as P
from rootshift.hw.params import BIAS_BITS, PROTOCOL_VERSION, ArrayParams
from rootshift.sw import contract as C
from rootshift.sw import golden
from rootshift.sw.errors import ConfigError, RootshiftError


class DeviceFlagError(RootshiftError):
    """The device's ``STATUS`` flags a protocol error (docs/hardware.md, "Flags"), or its first word is not
    this protocol's: the host and the device disagree, so no output after it can be trusted.
    Members: ``flags`` (the flag bits, 0 for a wrong magic or version), ``where`` (layer, image)."""

    def __init__(self, message, flags=0, where=""):
        super().__init__(message)
        self.flags, self.where = flags, where


def check_status(word0, where):
    """Raise :class:`DeviceFlagError` unless ``word0`` (the first ``STATUS`` word) is this protocol's
    magic and version with no flag set; the message names every flag."""
    magic, version, flags = word0 >> 16, (word0 >> 8) & 0xFF, word0 & 0xFF
    if magic != P.MAGIC or version != PROTOCOL_VERSION:
        raise DeviceFlagError(f"{where}: the device's STATUS word {word0:#010x} is not protocol version "
                              f"{PROTOCOL_VERSION} (magic {P.MAGIC:#06x}): wrong device or a broken link", 0, where)
    if flags:
        names = [name for bit, name in P.FLAG_NAMES.items() if flags & bit]
        if flags & ~sum(P.FLAG_NAMES):
            names.append(f"unknown bits {flags & ~sum(P.FLAG_NAMES):#x}")
        raise DeviceFlagError(f"{where}: the device flagged a protocol error: {'; '.join(names)} (flags {flags:#x})",
                              flags, where)


@dataclass
class Request:
    words: list
    n_out: int
    info: dict = field(default_factory=dict)


@dataclass
class LayerMap:
    """How one conv/linear layer runs on the hardware (exactly; docs/hardware.md, "What the host does")."""

    codes: np.ndarray          # (Cout, K) in the hardware's code format
    d: int                     # E_hw - E_layer: extra left shift of every accumulator
    shift: int                 # S + d
    k: int                     # K as the hardware runs it (times ``expand``)
    expand: int = 1            # shift2 hardware, linear activation codes: one k-slice per code bit


def hardware_for(im, rows=8, cols=8, max_k=None):
    """The smallest :class:`ArrayParams` that runs every layer of ``im`` (one PE mode for the network)."""
    layers = im.layers()
    modes = {op["mode"] for op in layers}
    if "shift2" in modes and modes <= {"shift", "shift2"}:
        return _shift2_hardware(layers, rows, cols, max_k)
    if len(modes) != 1:
        raise ConfigError(f"the model mixes product modes {sorted(modes)}; one accelerator runs one mode")
    mode = modes.pop()
    bases = {op.get("base") for op in layers if op.get("base")}
    base = bases.pop() if bases else "sqrt2"
    wbits = max(op["wbits"] for op in layers)
    abits = max(op["abits"] for op in layers)
    if mode == "mult":
        max_shift = 7
    else:
        max_shift = max(golden.layer_format(op).max_shift for op in layers)
        max_shift = max(max_shift, 1)
        # the hardware window must hold every layer's exponents
        need = max(golden.layer_format(op).max_exponent for op in layers)
        window = (2 * max_shift + 1) if base == "sqrt2" else max_shift
        if min(2 ** (wbits - 1) - 2, window) < need:
            max_shift = (need + 1) // 2 if base == "sqrt2" else need
    k = max(op["k"] for op in layers)
    return ArrayParams(wbits=wbits, abits=abits, base=base, pe=mode, rows=rows, cols=cols,
                       max_k=max_k or k, max_shift=max_shift)


def _shift2_hardware(layers, rows, cols, max_k):
    """A shift2 network (shift activations) whose layers on linear codes (the ``input8`` stem: mode
    ``shift``) run bit-serially on the same PEs: see :func:`map_layer`."""
    s2 = [op for op in layers if op["mode"] == "shift2"]
    abits = max(op["abits"] for op in s2)
    while 2**abits - 2 < max(op["act_max_exponent"] for op in s2):
        abits += 1
    lin = [op for op in layers if op["mode"] == "shift"]
    while lin and 2**abits - 2 < max(op["abits"] for op in lin) - 1:
        abits += 1   # an expanded layer's bit j needs the activation exponent E_a - j >= 0
    wbits = max(op["wbits"] for op in layers)
    max_shift = max(1, max(golden.layer_format(op).max_exponent for op in layers))
    k = max(op["k"] * (op["abits"] if op["mode"] == "shift" else 1) for op in layers)
    return ArrayParams(wbits=wbits, abits=abits, base="2", pe="shift2", rows=rows, cols=cols, max_k=max_k or k,
                       max_shift=max_shift)


def expand_bits(cols, bits, act_exponent):
    """shift2 hardware, linear activation codes ``a`` (P, K): column ``k`` becomes ``bits`` columns, one per
    bit ``j`` of ``a``, holding the shift code ``E_a + 1 - j`` (the factor ``2^j``) where the bit is set
    and the zero code elsewhere, so ``sum_j f(c_j) = a`` exactly."""
    a = np.asarray(cols, np.int64)
    j = np.arange(bits, dtype=np.int64)
    set_ = (a[..., None] >> j) & 1
    return np.where(set_ == 1, act_exponent + 1 - j, 0).reshape(a.shape[0], -1)


def map_layer(op, p: ArrayParams):
    """Re-encode a layer's codes for the hardware and derive its shift correction; errors name the layer."""
    name = op["name"]
    codes = np.asarray(op["codes"], np.int64).reshape(op["cout"], -1)
    k = codes.shape[1]
    if k > p.max_k:
        raise ConfigError(f"layer {name}: K = {k} exceeds the hardware's max_k {p.max_k}")
    if p.pe == "shift2":
        return _map_shift2(op, p, codes, k)
    if op["abits"] > p.abits or op["wbits"] > p.wbits:
        raise ConfigError(f"layer {name}: W{op['wbits']}A{op['abits']} does not fit W{p.wbits}A{p.abits} hardware")
    if op["mode"] != p.pe:
        raise ConfigError(f"layer {name}: product mode {op['mode']} but the hardware PE is {p.pe}")
    if p.pe == "mult":
        return LayerMap(codes & ((1 << p.wbits) - 1), 0, op["shift"], k)
    lf, hf = golden.layer_format(op), p.format
    if lf.base != hf.base:
        raise ConfigError(f"layer {name}: base {lf.base} but the hardware decodes base {hf.base}")
    sign, zero, kk, odd = lf.decode(codes)
    e = kk * 2 + odd if lf.base == "sqrt2" else kk
    if (e[~zero] > hf.max_exponent).any() if (~zero).any() else False:
        raise ConfigError(f"layer {name}: exponent {int(e[~zero].max())} outside the hardware window 0..{hf.max_exponent}")
    field_ = np.where(zero, hf.zero_field, e)
    hw_codes = np.where(sign < 0, 1 << (p.wbits - 1), 0) | field_
    d = hf.max_shift - lf.max_shift
    if op["shift"] + d > 63:
        raise ConfigError(f"layer {name}: requantization shift {op['shift']} + {d} exceeds 63")
    return LayerMap(hw_codes, d, op["shift"] + d, k)


def _map_shift2(op, p, codes, k):
    """shift2 hardware: a shift2 layer runs as is, its accumulator ``2^d`` larger with
    ``d = (E_w - E_w,L) + (E_a - E_a,L)``. A ``shift`` layer (base-2 weights on linear activation codes)
    runs bit-serially: K grows by ``abits`` and bit j of each code is the shift code for ``2^j``
    (:func:`expand_bits`), exact because ``sum_j 2^j bit_j(a) = a``; there ``d = E_w - E_w,L``."""
    name = op["name"]
    if op["mode"] not in ("shift", "shift2"):
        raise ConfigError(f"layer {name}: product mode {op['mode']} but the hardware PE is shift2")
    lf, hf = golden.layer_format(op), p.format
    if lf.base != "2":
        raise ConfigError(f"layer {name}: base {lf.base} but the hardware decodes base 2")
    if op["wbits"] > p.wbits:
        raise ConfigError(f"layer {name}: W{op['wbits']} does not fit W{p.wbits} hardware")
    sign, zero, kk, _ = lf.decode(codes)
    if zero.any():
        raise ConfigError(f"layer {name}: a zero weight code, which shift2 hardware (shift weights, no zero code) "
                          "cannot encode")
    if kk.max(initial=0) > hf.max_exponent:
        raise ConfigError(f"layer {name}: exponent {int(kk.max())} outside the hardware window 0..{hf.max_exponent}")
    hw_codes = np.where(sign < 0, 1 << (p.wbits - 1), 0) | kk
    d = hf.max_shift - lf.max_shift
    expand = 1
    if op["mode"] == "shift2":
        if op["abits"] > p.abits or op["act_max_exponent"] > p.act_exponent:
            raise ConfigError(f"layer {name}: shift activations A{op['abits']} with window {op['act_max_exponent']} "
                              f"do not fit the hardware's A{p.abits} (window {p.act_exponent})")
        d += p.act_exponent - op["act_max_exponent"]
    else:
        expand = op["abits"]
        if expand - 1 > p.act_exponent:
            raise ConfigError(f"layer {name}: {expand}-bit activation codes need an activation window of "
                              f"{expand - 1}, the hardware has {p.act_exponent}")
        hw_codes = np.repeat(hw_codes, expand, axis=1)
    if k * expand > p.max_k:
        raise ConfigError(f"layer {name}: K = {k}" + (f" x {expand} bits" if expand > 1 else "")
                          + f" exceeds the hardware's max_k {p.max_k}")
    if op["shift"] + d > 63:
        raise ConfigError(f"layer {name}: requantization shift {op['shift']} + {d} exceeds 63")
    return LayerMap(hw_codes, d, op["shift"] + d, k * expand, expand)


def hardware_bias(op, lm: LayerMap):
    """The layer's bias as the hardware takes it: ``B * 2^d + 2^(S+d-1)``, the window correction and the
    rounding half folded in (docs/hardware.md, "What the host does"; :func:`hw.requantizer.fold_rounding`).

    Checked in exact integers *before* any int64 arithmetic: a value that leaves the hardware's signed
    64-bit bias register is refused, naming the layer and channel, instead of wrapping (issue 11).
    Returns Python ints (the folded values fit int64 by construction of the check).
    """
    lo, hi = -(1 << (BIAS_BITS - 1)), (1 << (BIAS_BITS - 1)) - 1
    out = []
    for c, b in enumerate(np.asarray(op["bias"]).reshape(-1).tolist()):
        v = (int(b) << lm.d) + (1 << (lm.shift - 1))
        if not lo <= v <= hi:
            raise ConfigError(f"layer {op['name']}: bias[{c}] = {int(b)} times 2^{lm.d} (window correction) plus the "
                              f"rounding half 2^{lm.shift - 1} is {v}, outside the hardware's signed {BIAS_BITS}-bit bias")
        out.append(v)
    return out


def _s32(v):
    return int(v) - (1 << 32) if int(v) & (1 << 31) else int(v)


class HostDriver:
    """Members: ``params`` (the hardware), ``im`` (the model), ``maps`` (per layer :class:`LayerMap`)."""

    def __init__(self, params: ArrayParams, im):
        self.params, self.im = params, im
        self.maps = {op["name"]: map_layer(op, params) for op in im.layers()}

    def run_layer(self, op, a, beta_fx, image):
        """Generator: one conv/linear layer for one image's codes ``a`` (1, C, H, W) or (1, C)."""
        p, lm = self.params, self.maps[op["name"]]
        if op["op"] == "conv":
            kh, kw = op["kernel"]
            cols, ho, wo = C.im2col(a, kh, kw, op["stride"], op["pad"])
            cols = cols[0]
        else:
            cols, ho, wo = a.reshape(1, -1), 1, 1
        if lm.expand > 1:
            cols = expand_bits(cols, lm.expand, p.act_exponent)
        n_pos, cout = cols.shape[0], op["cout"]
        keys, mults = golden.layer_multipliers(op, beta_fx)
        mults = [m[0] for m in mults]
        bias = hardware_bias(op, lm)
        y = np.zeros((n_pos, cout), np.int64)
        yield Request([P.config(lm.k, lm.shift, op["relu"])], 0, {"layer": op["name"], "image": image})
        for c0 in range(0, cout, p.cols):
            c = min(p.cols, cout - c0)
            head = [P.header(P.OP_LOAD_WGT, lm.k)] + P.slice_words(lm.codes[c0:c0 + c], p.cols, p.wbits,
                                                                   (p.format.zero_field or 0) if p.format else 0)
            head += [P.header(P.OP_LOAD_REQ, p.cols)] + P.req_words([m[c0:c0 + c] for m in mults], bias[c0:c0 + c], p.cols, 0)  # already folded
            for p0 in range(0, n_pos, p.rows):
                r = min(p.rows, n_pos - p0)
                words = head + [P.header(P.OP_LOAD_ACT, lm.k)] + P.slice_words(cols[p0:p0 + r], p.rows, p.abits)
                words += [P.header(P.OP_START), P.header(P.OP_READ, r * p.cols)]
                head = []
                out = yield Request(words, r * p.cols, {"layer": op["name"], "image": image, "tile": (p0 // p.rows, c0 // p.cols),
                                                       "p0": p0, "c0": c0, "rows": r, "cols": c})
                v = np.array([_s32(x) for x in out], np.int64).reshape(r, p.cols)[:, :c]
                y[p0:p0 + r, c0:c0 + c] = v
        if op["op"] == "linear":
            return y.reshape(1, cout)
        return y.reshape(1, ho, wo, cout).transpose(0, 3, 1, 2)

    def run(self, pixels, record=None):
        """Generator over every image: returns logits (N, classes); ``record`` (dict) gets every layer's
        hardware output per image and the per-layer cycle counts read from the device."""
        pixels = np.asarray(pixels, np.int64)
        logits = []
        for n in range(len(pixels)):
            env, betas = {}, {}
            yield Request([P.header(P.OP_CLEAR)], 0, {"image": n})
            cycles = {}
            for op in self.im.ops:
                kind = op["op"]
                if kind == "input":
                    env[op["out"]] = pixels[n:n + 1]
                elif kind == "quant":
                    env[op["out"]], betas[op["name"]] = golden.quant_forward(op, env[op["in"]])
                elif kind in ("conv", "linear"):
                    before = yield Request([P.header(P.OP_STATUS)], 3, {"image": n})
                    check_status(before[0], f"before layer {op['name']}, image {n}")
                    env[op["out"]] = yield from self.run_layer(op, env[op["in"]], betas[op["beta_from"]], n)
                    after = yield Request([P.header(P.OP_STATUS)], 3, {"image": n})
                    check_status(after[0], f"layer {op['name']}, image {n}")
                    cycles[op["name"]] = {"total": after[1] - before[1], "busy": after[2] - before[2]}
                    if record is not None:
                        record.setdefault("outputs", {}).setdefault(op["name"], []).append(env[op["out"]][0])
                elif kind == "add_relu":
                    a, b = (env[i] for i in op["in"])
                    env[op["out"]] = C.saturate(a + b, 0, C.FINE_MAX)
                elif kind == "maxpool":
                    env[op["out"]] = golden.maxpool(env[op["in"]], op["kernel"], op["stride"], op["pad"])
                elif kind == "avgpool":
                    env[op["out"]] = golden.avgpool(env[op["in"]])
                else:
                    raise ConfigError(f"unsupported op {kind!r}")
            status = yield Request([P.header(P.OP_STATUS)], 3, {"image": n})
            if record is not None:
                record.setdefault("cycles", []).append({"image_total": status[1], "image_busy": status[2], "layers": cycles})
            logits.append(env[self.im.meta["output"]][0])
        return np.stack(logits)


def run_sync(gen, transact):
    """Drive a driver generator with a blocking ``transact(request) -> list of words``."""
    try:
        req = next(gen)
        while True:
            req = gen.send(transact(req))
    except StopIteration as stop:
        return stop.value


async def run_async(gen, transact):
    """Drive a driver generator with an async ``transact(request) -> list of words`` (cocotb)."""
    try:
        req = next(gen)
        while True:
            req = gen.send(await transact(req))
    except StopIteration as stop:
        return stop.value
