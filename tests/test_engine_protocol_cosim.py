"""Host protocol v4 under cocotb (sim/engine_cosim.py): a small random network on an engine built with
``baked=False`` (its program memories start empty, as SPRAM would), the program loaded over the stream
with ``LOAD`` through the same driver a board uses, then images: logits and every tensor equal to the
golden model, STATUS flags 0 after the load, cycles equal to the model. Verilator (and Icarus, slow)."""

import numpy as np
import pytest

from rootshift.hw.engine.cycles import cycle_report
from rootshift.sim.engine_cosim import compare, run_job

from test_engine_protocol import rtl_model


def _load_and_run(sim, tmp_path):
    im, prog, rng = rtl_model(7)
    px = rng.integers(0, 256, [2] + list(im.meta["input_shape"]))
    res = run_job(prog, px, sim=sim, cache=tmp_path, baked=False)
    bad, compared, first, _ = compare(prog, im, px, res["images"])
    assert bad == 0 and first is None, first
    assert compared == 2 * (sum(int(np.prod(prog.tensors[s["out"]]["shape"])) for s in prog.steps)
                            + prog.tensors[prog.output]["shape"][0])
    assert res["load"]["flags"] == 0 and res["load"]["words"] > 0
    assert all(r["status"].image_cycles == cycle_report(prog)["cycles_per_image"] for r in res["images"])
    return res


@pytest.mark.slow
def test_load_program_then_infer_under_verilator(tmp_path):
    _load_and_run("verilator", tmp_path)


@pytest.mark.slow
def test_load_program_then_infer_under_icarus(tmp_path):
    _load_and_run("icarus", tmp_path)
