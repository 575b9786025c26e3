"""Engine (hw/engine/engine.py): whole random networks on the RTL in amaranth.sim, pixels in, logits out,
with no host involvement in between; every layer compared through the debug read against the reference
executor (bit-exact with the golden model: tests/test_compiler.py), and the logits against sw.golden."""

import numpy as np
import pytest

from rootshift.hw.engine.compiler import compile_model
from rootshift.hw.engine.cycles import cycle_report
from rootshift.hw.engine.engine import MAGIC, OP_INFER, OP_READ_FINE, OP_STATUS, Engine, rtl_check
from rootshift.hw.engine.params import EngineParams
from rootshift.hw.testbench import engine_image
from rootshift.sim.engine_fuzz import first_rtl_model, fuzz_params_for, random_model, tensor_mismatches
from rootshift.sw import golden
from rootshift.sw.errors import ConfigError

BIG = dict(weights_kib=256, fine_kib=256, codes_kib=256, consts_kib=64)


def rtl_model(seed, mode, rows, cols, drain="parallel", desc_fetch="parallel", hw=(4, 8)):
    """The first random model from ``seed`` on that the RTL engine runs (no max pool), on ``hw`` pixels."""
    return first_rtl_model(seed, mode, rows, cols, hw, drain=drain, desc_fetch=desc_fetch, **BIG)


def run_engine(prog, pixels):
    return engine_image(prog, pixels)


@pytest.mark.parametrize("seed,mode,rows,cols,drain,fetch,hw", [
    (0, "dual", 2, 2, "parallel", "parallel", (4, 8)), (10, "lut", 3, 2, "parallel", "parallel", (4, 8)),
    (20, "mult", 2, 3, "parallel", "parallel", (4, 8)), (30, "dual", 2, 2, "serial", "serial", (4, 8)),
    (40, "mult", 3, 2, "serial", "parallel", (4, 8)), (50, "lut", 2, 3, "parallel", "serial", (4, 8)),
    (63, "dual", 2, 2, "parallel", "parallel", (5, 7)), (70, "mult", 2, 3, "serial", "parallel", (7, 7)),
    (65, "dual", 2, 2, "parallel", "parallel", (5, 7))])
def test_engine_runs_whole_networks_exactly(seed, mode, rows, cols, drain, fetch, hw):
    """``drain="serial"``: one requantizer shared by the columns; ``desc_fetch="serial"``: the descriptors
    in 32-bit words (the iCE40 build's choices). ``hw`` 5x7, 7x7: GAPs and average pools over
    ``H*W`` not a power of two (the GapDivider), in the ECP5 (``registered_reads``) and iCE40 configurations.
    Seed 65: a 1x1 stem on one channel, ``k_eff = 1`` (``desc.MIN_TILE``)."""
    im, prog, rng = rtl_model(seed, mode, rows, cols, drain, fetch, hw)
    if seed == 65:
        assert min(s["k_eff"] for s in prog.steps if s["kind"] in ("conv", "linear")) == 1
    if hw != (4, 8):
        pools = [s["desc"] for s in prog.steps if s["kind"] == "avgpool" or (s["kind"] == "quant" and s["adapter"])]
        assert any(d.get("div") or d.get("gap_div") for d in pools)
    px = rng.integers(0, 256, im.meta["input_shape"])
    res = run_engine(prog, px)
    assert res["logits"] == golden.run(im, px[None]).reshape(-1).tolist()
    assert tensor_mismatches(prog, res, px) == []      # every layer, through the debug read
    assert res["status"][0] >> 16 == MAGIC and res["status"][0] & 0xFF == 0
    # the cycle model is exact for the engine (docs/engine.md, "Cycle model")
    assert res["status"][1] == cycle_report(prog)["cycles_per_image"]


@pytest.mark.slow
def test_digits_resnet8_on_the_rtl_engine(exported):
    """The trained digits ResNet-8 on a 4x4 engine: logits, every tensor, and the cycle count
    (56,793 cycles, 84.0 % utilization, = the model; 57,142 with a bubble per tile (before issue 9's
    capture of the adders' outputs), 58,870 before the k-slices over real channels only,
    58,698 before the block RAMs' output registers, 58,307 before the Fmax pipeline registers;
    docs/engine.md)."""
    from rootshift.hw.params import ArrayParams
    from rootshift.sw import rsq

    im = rsq.load(exported)
    params = EngineParams(ArrayParams(wbits=8, abits=8, rows=4, cols=4, max_k=576, max_shift=7),
                          weights_kib=128, fine_kib=128, codes_kib=128)
    prog = compile_model(im, params, debug=True)
    px = np.random.default_rng(0).integers(0, 256, im.meta["input_shape"])
    res = run_engine(prog, px)
    assert res["logits"] == golden.run(im, px[None]).reshape(-1).tolist()
    assert tensor_mismatches(prog, res, px) == []
    rep = cycle_report(prog)
    assert res["status"][1] == rep["cycles_per_image"]
    assert rep["utilization"] >= 0.8


def test_device_model_answers_like_the_rtl():
    """sim/engine_device.py answers INFER, the debug reads and STATUS (flags, image cycles) as the RTL."""
    from rootshift.sim.engine_device import EngineDevice

    im, prog, rng = rtl_model(0, "dual", 2, 2)
    px = rng.integers(0, 256, im.meta["input_shape"])
    res = run_engine(prog, px)
    dev = EngineDevice(prog)
    L = prog.params.lanes
    # host protocol v4: the codes in (y, x, c) order, 8-bit codes packed 4 to a 32-bit word (2x2 array)
    flat = px.transpose(1, 2, 0).reshape(-1)
    words = [sum(int(v) << (8 * i) for i, v in enumerate(flat[k:k + 4])) for k in range(0, len(flat), 4)]
    assert len(words) == -(-px.size // 4)
    logits = dev.transact([OP_INFER << 28] + words)
    assert [v - (1 << 32) if v >> 31 else v for v in logits] == res["logits"]
    n_fine = len(res["fine"])
    fine = dev.transact([OP_READ_FINE << 28 | n_fine, 0])
    assert np.array_equal(np.array([v - (1 << 32) if v >> 31 else v for v in fine]).reshape(-1, L), res["fine"])
    status = dev.transact([OP_STATUS << 28])
    assert status[:2] == res["status"][:2]
    assert dev.transact([0xF << 28, OP_STATUS << 28])[0] & 0xFF == 1   # unknown opcode flag


def test_engine_refuses_what_it_cannot_run():
    with pytest.raises(TypeError, match="program must be a compiled Program"):
        Engine("prog.bin")
    for s in range(50):   # a max pool past the MaxPoolUnit's 4-bit window fields is refused, naming the layer
        im = random_model(np.random.default_rng(s), "dual", max_channels=4)
        if any(op["op"] == "maxpool" for op in im.ops):
            break
    prog = compile_model(im, EngineParams(fuzz_params_for(im, 2, 2), **BIG))
    Engine(prog)
    next(st for st in prog.steps if st["kind"] == "maxpool")["k"] = 16
    with pytest.raises(ConfigError, match="layer mp: max pool window must be 1..15, not 16"):
        Engine(prog)


def _unnamed_signals(verilog_text):
    """The ``$signal`` names Amaranth gives a signal it could not name after a variable."""
    import re

    return sorted(set(re.findall(r"\\\$signal\S*", verilog_text)))


@pytest.mark.parametrize("mode,drain,fetch", [("dual", "parallel", "parallel"), ("mult", "serial", "serial"),
                                              ("shift2", "parallel", "parallel")])
def test_engine_converts_to_verilog_with_every_signal_named(mode, drain, fetch):
    """The whole engine, in its board top's core, elaborates to Verilog, and every register and wire has
    a name: Amaranth names a signal after the variable of a lone assignment only (``a, b = Signal(),
    Signal()`` gives two ``$signal``), and a critical path or a waveform that says ``$signal`` tells the
    user nothing (the ECP5 engine's worst path read ``engine.conv.signal -> engine.conv.signal``)."""
    from amaranth.back import verilog

    from rootshift.hw.board.core import BoardCore

    im, prog, rng = rtl_model(0, mode, 2, 2, drain=drain, desc_fetch=fetch)
    assert prog.params.array.pe == mode
    v = verilog.convert(BoardCore(Engine(prog), 12_000_000, 3_000_000, 512, 400), name="rootshift_board")
    assert "module rootshift_board" in v and "bank1" in v
    assert _unnamed_signals(v) == []


@pytest.mark.parametrize("pe", ["dual", "lut", "mult", "shift", "shift2"])
def test_tile_engine_converts_to_verilog_with_every_signal_named(pe):
    """The same for the tile engine (``Accelerator``), which the iCEBreaker and the Tang boards carry, in
    the same board core: every PE kind."""
    from amaranth.back import verilog

    from rootshift.hw.accelerator import Accelerator
    from rootshift.hw.board.core import BoardCore
    from rootshift.hw.params import ArrayParams

    p = ArrayParams(wbits=4, abits=4, rows=2, cols=2, max_k=12, max_shift=3, pe=pe,
                    base="2" if pe.startswith("shift") else "sqrt2")
    v = verilog.convert(BoardCore(Accelerator(p), 12_000_000, 3_000_000, 512, 400), name="rootshift_board")
    assert "module rootshift_board" in v and "requant" in v
    assert _unnamed_signals(v) == []


def test_rtl_fuzz_runs_random_networks_exactly(capsys):
    """``python -m rootshift.sim.engine_fuzz --rtl`` (sim/engine_fuzz.py): random networks on H x W mostly not
    powers of two, with max pools, every tensor, the logits and the cycles; the summary line and exit 0."""
    import json

    from rootshift.sim.engine_fuzz import main

    assert main(["--rtl", "0", "2"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert all(r["ok"] for r in lines[:-1]) and lines[-1]["models"] == 2 and lines[-1]["mismatched_seeds"] == []
    assert lines[-1]["divided_steps"] > 0 and lines[-1]["max_pools"] >= 1      # seed 0: a 2x2 pool, stride 1, pad 1


def test_engine_refuses_a_descriptor_field_its_bits_cannot_hold():
    """``StepDesc.const`` truncates silently: ``rtl_check`` names the layer, the field and its range first
    (e.g. a pool over ``H*W = 2^24`` positions, one past the 24-bit field)."""
    import copy

    im, prog, rng = rtl_model(63, "dual", 2, 2, "parallel", "parallel", (5, 7))
    rtl_check(prog)
    for kind, field, value, msg in (("avgpool", "positions", 1 << 24, r"layer pool: descriptor field 'positions' is "
                                     r"16777216, the engine's 24-bit field holds 0\.\.16777215"),
                                    ("conv", "ab0", -(1 << 31) - 1, r"layer conv1: descriptor field 'ab0' is -2147483649"),
                                    ("conv", "k_eff", 3, r"layer conv1: descriptor field 'k_eff' is 3, the layer's "
                                     r"k-slices per tile are 2")):
        bad = copy.deepcopy(prog)
        next(s for s in bad.steps if s["kind"] == kind)["desc"][field] = value
        with pytest.raises(ConfigError, match=msg):
            Engine(bad)


def test_engine_refuses_a_tile_gap_shorter_than_its_drain():
    """A hand-made or edited program whose tiles follow too closely would clear the accumulators before the
    previous tile's capture (wrong words, no flag): ``rtl_check`` refuses a ``gap`` below ``desc.tile_gap``."""
    import copy

    im, prog, rng = rtl_model(63, "dual", 2, 2, "serial", "parallel", (5, 7))   # a 4-cycle drain
    stem = next(s for s in prog.steps if s["name"] == "conv1")
    assert (stem["k_eff"], stem["desc"]["gap"]) == (2, 2)
    bad = copy.deepcopy(prog)
    next(s for s in bad.steps if s["name"] == "conv1")["desc"]["gap"] = 1
    with pytest.raises(ConfigError, match=r"layer conv1: descriptor field 'gap' is 1, a tile of 2 k-slices with a "
                                          r"4-cycle drain needs 2 \(desc.tile_gap\)"):
        rtl_check(bad)
