"""The step descriptors as the engine's sequencer sees them (conv/linear, quant, vector, max pool), in one
place. The conv/linear one: the derived fields that let the address generator run on adders and compares
only (docs/engine.md, "im2col by address generation").

Positions are visited tile by tile (``rows`` consecutive output positions per tile, row-major over
``(oy, ox)``); inside a tile k runs over ``(i, j, g, lane)``. For a row at output ``(oy, ox)`` the input
word of k-slice ``(i, j, g)`` is ``in_addr + ab + off`` with ``ab = ((oy*s - pad) * W + ox*s - pad) * G``
(per row, updated when the tile moves) and ``off = (i*W + j) * G + g`` (shared by every row).
"""

from amaranth.hdl import signed, unsigned
from amaranth.lib import data

# (field, bits, signed); 16-bit unsigned sizes, signed word offsets (padding makes them negative)
FIELDS = [
    ("h", 16, False), ("w", 16, False), ("cin", 16, False), ("groups", 16, False),
    ("kh", 16, False), ("kw", 16, False), ("stride", 16, False), ("pad", 16, False),
    ("wo", 16, False), ("npos", 24, False), ("tiles_p", 16, False), ("tiles_c", 16, False),
    ("k_eff", 16, False), ("gap", 16, False), ("adv_x", 16, False),
    ("adv_by", 24, True), ("adv_bx", 24, True), ("wo_s", 24, True),
    ("ab_adv", 32, True), ("ab_wrap", 32, True), ("ab_wrap1", 32, True), ("sg", 32, True),
    ("row_skip", 32, True), ("ab0", 32, True),
    # where the layer's data sit, and its requantization controls
    ("in_addr", 16, False), ("out_addr", 16, False), ("w_addr", 24, False), ("c_addr", 16, False),
    ("out_tile", 24, False), ("shift", 6, False), ("relu", 1, False),
]

ConvDesc = data.StructLayout({name: signed(b) if s else unsigned(b) for name, b, s in FIELDS})


MIN_TILE = 2     # cycles from a tile's first slice to the next tile's (see tile_gap)


def tile_gap(k_eff, drain):
    """Bubble cycles after a tile, 0 for most layers. The PEs need none: the shadow registers take the
    adders' outputs at the edge that adds a tile's last term and ``clear`` acts at that same edge, so the
    next tile's first term may be in stage 1 then (``ProcessingElement(capture_next=True)``). Two
    constraints remain on a tile's length ``k_eff + gap``:

    * ``>= drain``: the ``drain``-cycle drain of the shadow registers (``rows`` cycles, or ``rows * cols``
      with one shared requantizer: ``EngineParams.drain_cycles``) ends before the next capture, which
      comes ``k_eff + gap`` cycles after this one;
    * ``>= MIN_TILE = 2``: the ConvUnit takes a tile's bookkeeping (output address, column tile, live rows)
      with its last slice two cycles before its capture, and the next tile's last slice must not overwrite
      it before then; the address generator's registered compares (``ox + adv_x``, the tile counters) see
      a change a cycle late. So a 1x1 conv on one channel (``k_eff = 1``) keeps one bubble."""
    return max(0, drain - k_eff, MIN_TILE - k_eff)


def conv_fields(step, rows, in_addr=0, out_addr=0, c_addr=0, drain=None):
    """The descriptor fields of a conv/linear step (a dict of ints) for an array of ``rows`` rows;
    ``in_addr``/``out_addr`` the input code / output fine tensor's first word, ``c_addr`` the layer's
    first word in the requantization-constant memory (one word per column tile), ``drain`` the drain
    cycles per tile (default ``rows``: one requantizer per column)."""
    s, pad, w, g, wo = step["stride"], step["pad"], step["w"], step["groups"], step["wo"]
    adv_y, adv_x = divmod(rows, wo)
    return {
        "h": step["h"], "w": w, "cin": step["cin"], "groups": g, "kh": step["kh"], "kw": step["kw"],
        "stride": s, "pad": pad, "wo": wo, "npos": step["ho"] * wo, "tiles_p": step["tiles_p"],
        "tiles_c": step["tiles_c"], "k_eff": step["k_eff"], "gap": tile_gap(step["k_eff"], rows if drain is None else drain), "adv_x": adv_x,
        "adv_by": adv_y * s, "adv_bx": adv_x * s, "wo_s": wo * s,
        "ab_adv": (adv_y * s * w + adv_x * s) * g, "ab_wrap": (s * w - wo * s) * g,
        "ab_wrap1": (s * w - (wo - 1) * s) * g, "sg": s * g, "row_skip": (w - step["kw"]) * g + 1,
        "ab0": (-pad * w - pad) * g,
        "in_addr": in_addr, "out_addr": out_addr, "w_addr": step.get("wgt_addr", 0), "c_addr": c_addr,
        "out_tile": rows * step["tiles_c"], "shift": step.get("shift", 1), "relu": int(step.get("relu", False)),
    }


QUANT_FIELDS = [
    ("in_addr", 16, False), ("out_addr", 16, False), ("words", 24, False), ("positions", 24, False),
    ("groups", 16, False), ("channels", 16, False), ("gap_shift", 6, False), ("gap_div", 1, False), ("asq", 1, False),
    ("hidden", 16, False), ("f1", 6, False), ("f2", 6, False), ("k_step", 62, False), ("qmax", 8, False),
    ("aw_addr", 24, False), ("ab_addr", 16, False),
    # shift activations (docs/arithmetic.md, "Quantizing a fine value to a shift code"): T = log2_alpha + 16, n
    ("shift_act", 1, False), ("t", 8, True), ("n", 8, False),
]

QuantDesc = data.StructLayout({name: signed(b) if s else unsigned(b) for name, b, s in QUANT_FIELDS})


def quant_fields(step, tensor, in_addr=0, out_addr=0, aw_addr=0, ab_addr=0):
    """The descriptor fields of a quant step. The adapter's GAP ``rdiv(sum, H*W)`` (``H*W`` = ``positions``)
    is a rounding shift by ``gap_shift = log2(H*W)`` for a power of two, else ``gap_div`` (``gap_shift`` 0)
    has the :class:`~rootshift.hw.engine.gap_divider.GapDivider` divide by ``positions``. A ``shift`` step
    (shift activations) sets ``shift_act``, ``t = log2_alpha + 16`` and ``n = max_exponent``."""
    c, h, w = tensor["shape"]
    ad = step["adapter"]
    shift = step.get("scheme") == "shift"
    return {"shift_act": int(shift), "t": step["log2_alpha"] + 16 if shift else 0, "n": step["max_exponent"] if shift else 0,
            "in_addr": in_addr, "out_addr": out_addr, "words": tensor["words"], "positions": h * w,
            "groups": tensor["groups"], "channels": c, "gap_shift": gap_shift(h * w) or 0,
            "gap_div": int(bool(ad) and gap_shift(h * w) is None), "asq": int(bool(ad)),
            "hidden": ad["hidden"] if ad else 0, "f1": ad["f1"] if ad else 0, "f2": ad["f2"] if ad else 0,
            "k_step": step["k_step"], "qmax": 2 ** step["bits"] - 1, "aw_addr": aw_addr, "ab_addr": ab_addr}


def gap_shift(n):
    """``log2(n)`` for a power of two, else None."""
    return n.bit_length() - 1 if n > 0 and n & (n - 1) == 0 else None


VEC_FIELDS = [
    ("avg", 1, False), ("a_addr", 16, False), ("b_addr", 16, False), ("out_addr", 16, False),
    ("words", 24, False), ("positions", 24, False), ("groups", 16, False), ("shift", 6, False), ("div", 1, False),
]

VecDesc = data.StructLayout({name: signed(b) if s else unsigned(b) for name, b, s in VEC_FIELDS})


def vec_fields(step, tensors):
    """Descriptor fields of an ``add_relu`` or (global) ``avgpool`` step; the pool's ``rdiv(sum, H*W)``
    (``H*W`` = ``positions``) is a rounding shift by ``shift`` for a power of two, else ``div`` (the
    :class:`~rootshift.hw.engine.gap_divider.GapDivider`)."""
    if step["kind"] == "add_relu":
        a, b = (tensors[n] for n in step["in"])
        return {"avg": 0, "a_addr": a["addr"], "b_addr": b["addr"], "out_addr": tensors[step["out"]]["addr"],
                "words": a["words"], "positions": 0, "groups": a["groups"], "shift": 0, "div": 0}
    src = tensors[step["in"]]
    return {"avg": 1, "a_addr": src["addr"], "b_addr": 0, "out_addr": tensors[step["out"]]["addr"],
            "words": src["words"], "positions": step["n"], "groups": src["groups"], "shift": gap_shift(step["n"]) or 0,
            "div": int(gap_shift(step["n"]) is None)}


# (field, bits, signed): the window and the address steps, all derived by the compiler (pool_fields), so
# the unit runs on adders and compares only, like the AddressGenerator
POOL_FIELDS = [
    ("in_addr", 16, False), ("out_addr", 16, False), ("h", 16, False), ("w", 16, False),
    ("groups", 16, False), ("wo", 16, False), ("outs", 24, False), ("k", 4, False), ("stride", 4, False),
    ("pad", 4, False), ("ab0", 24, True), ("row_skip", 24, True), ("adv_x", 24, True), ("adv_y", 24, True),
]

PoolDesc = data.StructLayout({name: signed(b) if s else unsigned(b) for name, b, s in POOL_FIELDS})

POOL_MAX_K = 15       # the 4-bit window fields


def pool_fields(step, tensors):
    """The descriptor fields (a dict of ints) of a ``maxpool`` step. The window of output ``(oy, ox)``,
    group ``g`` starts at input word ``((oy*s - pad) * W + ox*s - pad) * G + g`` (``ab0`` for the first);
    ``row_skip`` steps from
    a window row's last word to the next row's first, ``adv_x`` / ``adv_y`` from one output's first word
    (group ``G - 1``) to the next output's (group 0) along a row / at a row's wrap."""
    src, dst = tensors[step["in"]], tensors[step["out"]]
    c, h, w = src["shape"]
    _, ho, wo = dst["shape"]
    k, s, p, g = step["k"], step["stride"], step["pad"], src["groups"]
    return {"in_addr": src["addr"], "out_addr": dst["addr"], "h": h, "w": w, "groups": g, "wo": wo,
            "outs": ho * wo * g, "k": k, "stride": s, "pad": p, "ab0": (-p * w - p) * g, "row_skip": (w - k + 1) * g,
            "adv_x": s * g - (g - 1), "adv_y": (s * w - (wo - 1) * s) * g - (g - 1)}


def check_pool(step):
    """The unit's limits (ValueError naming the field): ``k <= 15``, ``stride <= 15``, ``pad <= k - 1``."""
    k, s, p = step["k"], step["stride"], step["pad"]
    if not 1 <= k <= POOL_MAX_K:
        raise ValueError(f"max pool window must be 1..{POOL_MAX_K}, not {k}")
    if not 1 <= s <= POOL_MAX_K:
        raise ValueError(f"max pool stride must be 1..{POOL_MAX_K}, not {s}")
    if not 0 <= p <= k - 1:
        raise ValueError(f"max pool padding must be 0..{k - 1} (every window holds an input), not {p}")
