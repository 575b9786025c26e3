"""bench/cosim.py's split of each layer's cycles (MACs, spatial idle, PEs wait) is a partition that
agrees with the cycle model (docs/engine.md), so the table it writes cannot drift from the engine."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from rootshift.hw.engine.compiler import compile_model
from rootshift.hw.engine.cycles import cycle_report
from rootshift.hw.engine.params import EngineParams
from rootshift.sim.engine_fuzz import fuzz_params_for, random_model

BIG = dict(weights_kib=256, fine_kib=256, codes_kib=256, consts_kib=64)


def _bench():
    spec = importlib.util.spec_from_file_location("bench_cosim", Path(__file__).parent.parent / "bench" / "cosim.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("seed", range(4))
def test_layer_split_is_a_partition_of_the_model_cycles(seed):
    rng = np.random.default_rng(seed)
    im = random_model(rng, ["dual", "lut", "mult", "shift2"][seed])
    r, c = int(rng.integers(2, 9)), int(rng.integers(2, 9))
    prog = compile_model(im, EngineParams(fuzz_params_for(im, r, c), **BIG))
    rep, rows, other = _bench().layer_split(prog)
    model = {x["name"]: x for x in cycle_report(prog)["layers"]}
    assert rep == cycle_report(prog)
    assert rows and {x["name"] for x in rows} == {n for n, x in model.items() if x["kind"] in ("conv", "linear")}
    for x in rows:
        assert x["util"] == pytest.approx(model[x["name"]]["utilization"], abs=1e-4)
        assert x["util"] + x["spatial"] + x["wait"] == pytest.approx(1.0)
        assert min(x["util"], x["spatial"], x["wait"]) >= 0
    busy = sum(x["cycles"] for x in rows)
    assert other == pytest.approx(1 - busy / rep["cycles_per_image"])


def test_the_utilization_plot_has_a_bar_per_layer_and_the_target(tmp_path, monkeypatch):
    """The figure docs/results.md shows beside the tables: one panel per engine, a bar per conv/linear layer
    (its utilization, from the same split as the table), the 90 % target and the network's line; written
    as a PNG beside the results file."""
    mod = _bench()
    im = random_model(np.random.default_rng(1), "dual")
    rep, rows, _ = mod.layer_split(compile_model(im, EngineParams(fuzz_params_for(im, 3, 4), **BIG)))
    fig = mod.plot([("a", rows, rep), ("b", rows, rep)])
    axes = fig.axes
    assert len(axes) == 2
    heights = [p.get_height() for p in axes[0].patches]
    assert heights == pytest.approx([100 * r["util"] for r in rows])
    lines = sorted(ln.get_ydata()[0] for ln in axes[0].get_lines())
    assert lines == pytest.approx(sorted([100 * mod.TARGET_CONV3, 100 * rep["utilization"]]))
    import _results

    monkeypatch.setattr(_results, "_target", tmp_path / "results.md")
    assert _results.write_figure("cosim", fig) == "img/cosim.png"
    assert (tmp_path / "img" / "cosim.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
