"""The reference executor: runs a :class:`Program` in pure integers, through the engine's memories.

It reads nothing but the program (weight image, descriptors, constants, placements) and the pixels, and
computes with :mod:`rootshift.sw.contract`'s functions, so agreeing with :func:`rootshift.sw.golden.run`
on every tensor proves the program carries everything the contract needs. Tensors live in word arrays
laid out as the engine's (docs/engine.md, "Memory plan"), so a placement error (two live tensors sharing
words) shows up as a wrong value. The Amaranth engine's tests use it as their oracle.
"""

import numpy as np

from rootshift.sw import contract as C
from rootshift.sw.errors import ConfigError

from .program import BETA_ONE

FLAG_M_OVERFLOW = 1 << 2   # a per-sample multiplier did not fit 32 bits (the engine's error flag)


def conv_addresses(step, tensor, lanes):
    """im2col by address generation: for every output position ``p`` and k-slice ``k`` (order
    ``(i, j, c)`` over the ``cin`` real channels: word ``g = c // lanes``, lane ``c % lanes``), the input
    word address (relative to the tensor's base), its lane, and whether it is inside the image (padding
    reads as code 0). Returns (word (P, K_eff), lane (K_eff,), valid), ``K_eff = kh * kw * cin``."""
    ho, wo, s, pad = step["ho"], step["wo"], step["stride"], step["pad"]
    kh, kw, g_n, w = step["kh"], step["kw"], step["groups"], step["w"]
    oy, ox = np.divmod(np.arange(ho * wo), wo)
    i, j, c = np.meshgrid(np.arange(kh), np.arange(kw), np.arange(step["cin"]), indexing="ij")
    i, j, c = (v.reshape(-1) for v in (i, j, c))
    g, lane = np.divmod(c, lanes)
    y = oy[:, None] * s + i[None, :] - pad
    x = ox[:, None] * s + j[None, :] - pad
    valid = (y >= 0) & (y < step["h"]) & (x >= 0) & (x < w)
    word = np.where(valid, (y * w + x) * g_n + g[None, :], 0)
    return word, lane, valid


class ReferenceEngine:
    """Members: ``program``; ``fine`` and ``codes`` (word arrays, ``lanes`` values per word); ``flags``."""

    def __init__(self, program):
        self.program = program
        self.lanes = program.params.lanes
        words = {"fine": 0, "codes": 0}
        for t in program.tensors.values():
            words[t["kind"]] = max(words[t["kind"]], t["addr"] + t["words"])
        self.fine = np.zeros((words["fine"], self.lanes), np.int64)
        self.codes = np.zeros((words["codes"], self.lanes), np.int64)
        self.flags = 0
        self.beta = {}

    # -- memories ----------------------------------------------------------------------------------
    def _mem(self, name):
        return self.fine if self.program.tensors[name]["kind"] == "fine" else self.codes

    def read(self, name):
        """A tensor (C, H, W) as it sits in memory now: the debug read."""
        t = self.program.tensors[name]
        c, h, w = t["shape"]
        block = self._mem(name)[t["addr"]:t["addr"] + t["words"]]
        return block.reshape(h, w, t["groups"] * self.lanes)[:, :, :c].transpose(2, 0, 1).copy()

    def write(self, name, x):
        t = self.program.tensors[name]
        c, h, w = t["shape"]
        full = np.zeros((h, w, t["groups"] * self.lanes), np.int64)
        full[:, :, :c] = np.asarray(x, np.int64).reshape(c, h, w).transpose(1, 2, 0)
        self._mem(name)[t["addr"]:t["addr"] + t["words"]] = full.reshape(-1, self.lanes)

    # -- steps -------------------------------------------------------------------------------------
    def run(self, pixels, trace=None):
        """Logits (classes,) for one image's pixel codes (C, H, W) (or the input tensor's codes: a shift2
        array's bit planes, :func:`~.compiler.input_codes`); ``trace`` gets every step's output tensor
        (C, H, W) by name and every ASQ beta."""
        self.beta = {}
        for step in self.program.steps:
            self.step(step, pixels)
            if trace is not None:
                trace[step["out"]] = self.read(step["out"])
        if trace is not None:
            trace["beta"] = dict(self.beta)
        return self.read(self.program.output).reshape(-1)

    def step(self, step, pixels=None):
        """Run one step (``pixels`` (C, H, W) for the input step)."""
        kind = step["kind"]
        if kind == "input":
            from .compiler import input_codes

            self.write(step["out"], input_codes(self.program, pixels))
        elif kind == "quant":
            self.quant(step)
        elif kind in ("conv", "linear"):
            self.layer(step)
        elif kind == "add_relu":
            a, b = (self.read(n) for n in step["in"])
            self.write(step["out"], C.saturate(a + b, 0, C.FINE_MAX))
        elif kind == "maxpool":
            x = self.read(step["in"])
            cols, ho, wo = C.im2col(x[:, None], step["k"], step["k"], step["stride"], step["pad"], C.FINE_MIN)
            self.write(step["out"], cols.max(-1).reshape(x.shape[0], ho, wo))
        elif kind == "avgpool":
            x = self.read(step["in"])
            self.write(step["out"], C.rdiv(x.reshape(x.shape[0], -1).sum(-1), step["n"]))
        else:
            raise ConfigError(f"unknown step kind {kind!r}")

    def multipliers(self, step):
        """Per-sample requantization multipliers of a layer, one (Cout,) array per accumulator."""
        beta = 1 << C.FINE_FRAC if step["beta_slot"] == BETA_ONE else self.beta[step["beta_slot"]]
        try:
            mults = [C.beta_multiplier(m, np.array([beta], np.int64))[0] for m in step["m_base"]]
            bad = any(np.abs(m).max(initial=0) >= 2 ** (C.M_BITS - 1) for m in mults)
        except ConfigError:
            bad = True
        if bad:
            self.flags |= FLAG_M_OVERFLOW
            raise ConfigError(f"layer {step['name']}: per-sample multiplier overflows {C.M_BITS} bits "
                              f"(beta = {beta / 2**C.FINE_FRAC:.3g})")
        return mults

    def quant(self, step):
        x = self.read(step["in"])
        if step.get("scheme") == "shift":   # shift activations: beta = 1 (docs/arithmetic.md, "Shift activations")
            self.write(step["out"], C.shift_act_codes(x, step["log2_alpha"], step["max_exponent"]))
            return
        ad = step["adapter"]
        beta = np.array([1 << C.FINE_FRAC], np.int64)
        if ad:
            w1 = ad["w1"] if ad["hidden"] else None
            beta = C.adapter_beta_int(x[None], w1, ad["b1"], ad["f1"], ad["w2"], ad["b2"], ad["f2"])
            self.beta[step["name"]] = int(beta[0])
            self.beta[step["beta_slot"]] = int(beta[0])
        r = C.step_multiplier(step["k_step"], beta)
        self.write(step["out"], C.quant_codes(x, r[0], 2 ** step["bits"] - 1))

    def layer(self, step):
        p, a = self.program, self.program.params.array
        t = p.tensors[step["in"]]
        word, lane, valid = conv_addresses(step, t, self.lanes)
        acts = np.where(valid, self.codes[t["addr"] + word, lane[None, :]], 0)          # (P, K_eff)
        w = p.weight_lanes(step).reshape(step["tiles_c"], step["k_eff"], a.cols)
        codes = w.transpose(0, 2, 1).reshape(-1, step["k_eff"])[:step["cout"]]          # (Cout, K_eff)
        if a.pe == "mult":
            terms = {"acc": codes - ((codes >> (a.wbits - 1)) & 1) * (1 << a.wbits)}
        else:
            terms = C.weight_terms(codes, a.format, a.pe)
        accs = C.accumulate(acts, terms, a.pe, a.abits, a.act_exponent)
        keys = ["even", "odd"] if a.pe == "dual" else ["acc"]
        mults = self.multipliers(step)
        lo = 0 if step["relu"] else C.FINE_MIN
        y = C.requantize([accs[k] for k in keys], mults, step["bias"], step["shift"], lo, C.FINE_MAX)
        self.write(step["out"], y.reshape(step["ho"], step["wo"], step["cout"]).transpose(2, 0, 1))


def run_program(program, pixels, trace=None):
    """Logits (N, classes) for pixel codes (N, C, H, W); ``trace`` (dict) gets per-image step outputs."""
    eng = ReferenceEngine(program)
    out = []
    for n, img in enumerate(np.asarray(pixels, np.int64)):
        t = {} if trace is not None else None
        out.append(eng.run(img, t))
        if trace is not None:
            for k, v in t.items():
                trace.setdefault(k, []).append(v)
    return np.stack(out)
