"""The self-sequencing engine under cocotb + Verilator, through host protocol v2 (sim/engine_cosim.py):
the trained digits ResNet-8 on a 4x4 engine, every layer's tensor (debug reads) and the logits against
sw.golden, the cycle count against the compiler's model, and a planted fault that must be reported."""

import numpy as np
import pytest

from rootshift.sim.engine_cosim import compile_for_cosim, engine_cosim_model, pixel_words, report, run_job
from rootshift.sw import rsq
from rootshift.sw.errors import ConfigError


def test_bad_arguments_are_refused_before_the_build(exported, tmp_path):
    with pytest.raises(ConfigError, match="--images must be a positive integer, not 0"):
        engine_cosim_model(exported, images=0, cache=tmp_path)
    with pytest.raises(ConfigError, match="--sim must be one of"):
        engine_cosim_model(exported, sim="xsim", cache=tmp_path)
    with pytest.raises(ConfigError, match=r"dataset mnist5k has \[1, 28, 28\] inputs but the model was exported for \[1, 8, 8\]"):
        engine_cosim_model(exported, images=1, data="mnist5k", cache=tmp_path)
    assert not any(tmp_path.iterdir())      # nothing was generated or built


def test_pixel_words_pack_codes(exported):
    """Host protocol v4: a digits image's 64 8-bit codes, (y, x, c) order, 4 to a 32-bit word, low first."""
    prog = compile_for_cosim(rsq.load(exported), 4, 4)
    px = np.arange(64).reshape(1, 8, 8)
    words = pixel_words(prog, px)
    assert len(words) == 16 and words[0] == 0x03020100 and words[15] == 0x3F3E3D3C


@pytest.mark.slow
def test_digits_resnet8_on_the_engine_under_verilator(exported, monkeypatch):
    """0 mismatches over every tensor and the logits, cycles equal to the model (56,793; 57,142 with a
    bubble per tile), and
    a flipped bit in one debug-read word is reported with its layer, image and index."""
    im = rsq.load(exported)
    rep = engine_cosim_model(exported, images=2, rows=4, cols=4)
    assert rep["mismatches"] == 0 and "first_mismatch" not in rep, rep.get("first_mismatch")
    prog = compile_for_cosim(im, 4, 4)
    assert rep["compared_values"] == 2 * (sum(int(np.prod(prog.tensors[s["out"]]["shape"])) for s in prog.steps) + 10)
    assert rep["cycles_per_image"] == rep["cycles_model"]
    assert rep["steps_off_model"] == []
    assert rep["utilization"] >= 0.8 and rep["rtl_acc"] == rep["integer_acc"]
    assert set(rep["utilization_per_layer"]) == {s["name"] for s in prog.steps if s["kind"] in ("conv", "linear")}

    # plant a fault: bit 0 of one received word of image 1, inside the first conv's output
    from rootshift.sw.data import load_dataset

    px = load_dataset("digits", 8).test.batch(range(2))[0].numpy().astype(np.int64)
    step = next(s for s in prog.steps if s["kind"] == "conv")
    t = prog.tensors[step["out"]]
    L = prog.params.lanes
    classes = prog.tensors[prog.output]["shape"][0]
    n_fine = max(x["addr"] + x["words"] for x in prog.tensors.values() if x["kind"] == "fine")
    n_codes = max(x["addr"] + x["words"] for x in prog.tensors.values() if x["kind"] == "codes")
    per_image = classes + (n_fine + n_codes) * L + 3
    word, lane = t["addr"] + 2 * t["groups"], 1                       # position (0, 2), channel 1
    monkeypatch.setenv("ROOTSHIFT_INJECT_FAULT", str(per_image + classes + word * L + lane))
    res = run_job(prog, px)
    bad = report(prog, im, px, res, "verilator", np.zeros(2, np.int64))
    assert bad["mismatches"] == 1
    fm = bad["first_mismatch"]
    assert (fm["layer"], fm["image"], fm["index"], fm["buffer"]) == (step["name"], 1, [1, 0, 2], "fine")
    assert fm["got"] == fm["expected"] ^ 1 and step["name"] in fm["message"]
