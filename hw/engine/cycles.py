"""The analytical cycle model of the engine (docs/engine.md, "Cycle model").

It describes the engine as designed: one k-slice per cycle into the array, operand memories double
buffered (the next tile's operands are fetched while this one computes), shadow accumulators drained
column-serially (``rows`` cycles per tile, through one requantizer per column) while the next tile
computes, and a vector unit of ``cols`` lanes for the element-wise steps. Every number below is a
named constant so the RTL's cycle counters can be checked against it step by step.
"""

from ..requantizer import Requantizer
from .beta_mult import BetaMultiplier
from .conv_unit import CAPTURE_STAGE, OPERAND_REG, OUTREG_STAGE
from .desc import tile_gap
from .params import check_lanes

SEQ_CYCLES = 3       # the Engine's FETCH, DISPATCH and NEXT around every step
SETUP_TAIL = 3 + BetaMultiplier.LATENCY   # MultSetup: memory read, BetaMultiplier latency, the word write, done
VEC_TAIL = 3         # VectorUnit: DISPATCH, the last write, DONE
VEC_PIPE = 2         # VectorUnit add_relu: the read words and the written word are registered
AVG_GROUP = 3        # VectorUnit avgpool, per channel group: the last sum through the read register, the write
READ_LATENCY = 1     # synchronous memory read
WRITE_LATENCY = 1
GAP_DIV = 1          # QuantStep / VectorUnit, per lane of a non-power-of-two GAP or pool: the GapDivider's start
QUANT_TAIL = -1      # measured against the QuantStep (tests/test_engine_quant.py)
ISSUE_REG = 1        # the ConvUnit's register between the address generator and the memories
GAP_WAIT = 2         # QuantStep GAP, per channel group: the last word through the read register into the sums
UNIT_TAIL = 2        # the ConvUnit: the last write, and the done cycle (tests/test_engine_conv.py checks the count)


DESC_REG = 1         # the parallel descriptor's read is registered before the units see it (FETCH: 2 cycles)
DESC_OUTREG = 1      # registered_reads: the descriptor word passes the block RAM's output register first
# ECP5 configuration (registered_reads): words that fan out far (the weight and code words into the array,
# the descriptor into every unit, the fine words into the VectorUnit's adders and the GAP's sums) pass the
# block RAM's output register and then the unit's own register: conv_unit.OUTREG_STAGE, DESC_OUTREG.
# A block-RAM word that feeds multipliers (the requantization word,
# the per-channel constants, the fine values into QuantLanes) passes the block RAM's output register
# (hw/engine/bram_outreg.py) and then the unit's own register next to its DSPs: one more cycle for a
# layer's requantizers, its MultSetup and a quant step's pass
DSP_OPERAND_REG = 1


def registered_reads(params):
    """Whether the engine for ``params`` (EngineParams) reads its block RAMs through ``RegisteredMemory``
    (the ECP5 configuration: a requantizer per column and the weights in block RAM; docs/engine.md,
    "Measured cost"); the iCE40 configuration (serial drain, SPRAM weights) does not."""
    return params.drain == "parallel" and params.weight_memory == "bram"


def fetch_cycles(params):
    """Cycles a step's descriptor fetch adds to ``SEQ_CYCLES``: ``DESC_REG``, or ``words`` with
    ``desc_fetch="serial"`` (:class:`~rootshift.hw.engine.desc_fetch.DescFetch`, whose shift register is
    the register)."""
    from .engine import desc_words

    if params.desc_fetch == "serial":
        return desc_words()
    return DESC_REG + (DESC_OUTREG if registered_reads(params) else 0)


def _pow2(n):
    return n > 0 and n & (n - 1) == 0


def gap_div_cycles():
    """The :class:`~rootshift.hw.engine.gap_divider.GapDivider`'s ``start`` to ``done`` for fine values."""
    from .gap_divider import GapDivider

    return GapDivider.cycles(32)


def conv_unit_cycles(step, rows, drain=None, registered=False):
    """The ConvUnit from ``start`` to ``done`` (hw/engine/conv_unit.py), exactly: ``rows - 1`` cycles
    placing the rows, ``k_eff + gap`` per tile (the drain of a tile overlaps the next one's MACs; ``gap``
    is 0 unless the tile is shorter than its drain or ``desc.MIN_TILE``), then the last tile's capture
    (at the PEs' stage-2 edge: ``CAPTURE_STAGE``), drain (``drain`` cycles: ``rows``, or ``rows * cols``
    with one shared requantizer) and requantizer pipeline (``registered``: ``OUTREG_STAGE +
    DSP_OPERAND_REG`` more)."""
    drain = rows if drain is None else drain
    tiles = step["tiles_p"] * step["tiles_c"]
    tail = ISSUE_REG + READ_LATENCY + OPERAND_REG + CAPTURE_STAGE + drain + Requantizer.DEEP_LATENCY + UNIT_TAIL
    tail += DSP_OPERAND_REG + OUTREG_STAGE if registered else 0
    return (rows - 1) + tiles * (step["k_eff"] + tile_gap(step["k_eff"], drain)) + tail


def adapter_cycles(channels, hidden, lanes, registered=False):
    """The AdapterUnit from ``start`` to ``done`` (hw/engine/adapter.py), exactly: layer 1 ``lanes`` hidden
    outputs at a time, ``max(C, lanes)`` cycles per block of them, then the last block's drain (one cycle
    per output) and ``LANE_TAIL`` (``registered``: two ``DSP_OPERAND_REG``, the operands' and the drain's
    bias read); layer 2 (or the single-layer adapter, ``hidden = 0``) one term per cycle and
    ``LAYER_TAIL``; one DONE cycle."""
    from .adapter import AdapterUnit

    check_lanes(lanes)
    extra = DSP_OPERAND_REG if registered else 0
    cyc = (hidden or channels) + AdapterUnit.LAYER_TAIL + extra + 1
    if hidden:
        blocks = -(-hidden // lanes)
        last = hidden - (blocks - 1) * lanes
        cyc += blocks * max(channels, lanes) + last + AdapterUnit.LANE_TAIL + 2 * extra
    return cyc


def quant_step_cycles(step, tensor, lanes, registered=False):
    """The QuantStep from ``start`` to ``done`` (hw/engine/quant_step.py): the GAP (per channel group,
    ``H*W`` reads, a cycle for the last sum, ``lanes`` writes; ``H*W`` not a power of two: each lane
    ``GAP_DIV + GapDivider.CYCLES``), the adapter (its layer 1 ``lanes`` outputs at a time), the step
    divider, and the pass; a
    shift quant op only the pass (``registered``: ``DSP_OPERAND_REG`` more per pass and adapter layer,
    ``OUTREG_STAGE`` per GAP group)."""
    from .divider import StepDivider
    from .quant_lanes import QuantLanes

    ad = step["adapter"]
    c, h, w = tensor["shape"]
    extra = DSP_OPERAND_REG if registered else 0
    per_lane = 1 if _pow2(h * w) else GAP_DIV + gap_div_cycles()   # a rounding shift, or the GapDivider
    if step.get("scheme") == "shift":     # start -> PASS: no divider, no adapter
        return 1 + tensor["words"] + QuantLanes.LATENCY + 2 + QUANT_TAIL + extra
    cyc = 1 + 1 + StepDivider.CYCLES + tensor["words"] + QuantLanes.LATENCY + 2 + QUANT_TAIL + extra
    if ad:
        gap_wait = GAP_WAIT + (OUTREG_STAGE if registered else 0)
        cyc += tensor["groups"] * (h * w + gap_wait + lanes * per_lane) + adapter_cycles(c, ad["hidden"], lanes,
                                                                                            registered)
    return cyc


def avgpool_cycles(words, groups, n, lanes, registered=False):
    """The VectorUnit's global average pool from ``start`` to ``done`` (hw/engine/vector_unit.py): one
    read per word, ``AVG_GROUP`` per channel group (``registered``: ``OUTREG_STAGE`` more); ``n = H*W``
    not a power of two: ``lanes`` divisions of ``GAP_DIV + GapDivider.CYCLES`` before the group's
    write."""
    group = AVG_GROUP + (OUTREG_STAGE if registered else 0)
    if not _pow2(n):
        group += lanes * (GAP_DIV + gap_div_cycles())
    return words + group * groups + VEC_TAIL


def input_cycles(tensor):
    """Cycles of an ``INFER``'s pixel phase with a stream that is always valid: the
    :class:`~rootshift.hw.engine.pixel_unpack.PixelUnpacker` takes one code per cycle, so ``C*H*W``
    (the packed words arrive while the codes of the word before are unpacked)."""
    c, h, w = tensor["shape"]
    return c * h * w


def step_cycles(step, tensors, params):
    """``{"cycles", "macs", "io"}`` of one step for one image, as the :class:`Engine` runs it: the
    sequencer's ``FETCH``, ``DISPATCH`` and ``NEXT`` (``SEQ_CYCLES``) plus the unit's own count
    (``io``: host words the step waits for, the pixels)."""
    a = params.array
    kind = step["kind"]
    seq = SEQ_CYCLES + fetch_cycles(params)
    reg = registered_reads(params)
    if kind == "input":     # the HostPort's PixelUnpacker: one cycle per pixel code (C*H*W), host protocol v4
        return {"cycles": seq, "macs": 0, "io": input_cycles(tensors[step["out"]])}
    if kind in ("conv", "linear"):
        setup = step["tiles_c"] * a.cols + SETUP_TAIL + (DSP_OPERAND_REG if reg else 0)   # one channel per cycle
        macs = step["ho"] * step["wo"] * step["cout"] * step["k"]
        return {"cycles": seq + setup + conv_unit_cycles(step, a.rows, params.drain_cycles, reg), "macs": macs,
                "io": 0}
    src = tensors[step.get("in")] if isinstance(step.get("in"), str) else tensors[step["in"][0]]
    words = src["words"]
    if kind == "quant":
        return {"cycles": seq + quant_step_cycles(step, src, params.lanes, reg), "macs": 0, "io": 0}
    if kind == "add_relu":
        return {"cycles": seq + words + VEC_TAIL + VEC_PIPE + (OUTREG_STAGE if reg else 0), "macs": 0, "io": 0}
    if kind == "avgpool":
        return {"cycles": seq + avgpool_cycles(words, src["groups"], step["n"], params.lanes, reg), "macs": 0, "io": 0}
    if kind == "maxpool":       # MaxPoolUnit.cycles counts its start cycle, the sequencer's DISPATCH
        from .max_pool import MaxPoolUnit

        return {"cycles": seq + MaxPoolUnit.cycles(tensors[step["out"]]["words"], step["k"], reg) - 1, "macs": 0,
                "io": 0}
    raise ValueError(f"unknown step kind {kind!r}")


def cycle_report(program):
    """Per-step cycles and utilization, and the totals for one image (the input load counted apart)."""
    a = program.params.array
    pes = a.rows * a.cols
    layers, total, macs, io = [], 0, 0, 0
    for s in program.steps:
        c = step_cycles(s, program.tensors, program.params)
        row = {"name": s["name"], "kind": s["kind"], "cycles": c["cycles"], "macs": c["macs"]}
        if s["kind"] in ("conv", "linear"):
            row.update(k=s["k"], k_eff=s["k_eff"], kernel=[s["kh"], s["kw"]], tiles=s["tiles_p"] * s["tiles_c"],
                       utilization=round(c["macs"] / (pes * c["cycles"]), 4))
        io += c["io"]
        total += c["cycles"]
        macs += c["macs"]
        layers.append(row)
    return {"cycles_per_image": total, "input_cycles": io, "macs_per_image": macs,
            "utilization": round(macs / (pes * total), 4) if total else 0.0, "layers": layers}
