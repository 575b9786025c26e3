"""``rootshift flow`` end to end (what ``make demo`` runs), on the network engine, and its report."""

import json

import pytest


@pytest.mark.slow
def test_flow_on_the_network_engine(tmp_path, cli):
    import subprocess

    out = tmp_path / "demo"
    r = subprocess.run([*cli, "flow", "--epochs", "2", "--images", "1", "--rows", "4", "--cols", "4",
                        "--out", str(out), "--json"], capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads(r.stdout)
    assert s["rtl_mismatches"] == 0 and s["rtl_images"] == 1 and s["hardware"] == "network engine"
    assert s["rtl_compared_values"] > 10_000 and s["utilization"] > 0.5
    cs = json.loads((out / "cosim.json").read_text())
    assert cs["cycles_per_image"] == cs["cycles_model"]
    for f in ("summary.json", "eval.json", "model.rsq", "train/checkpoint.pt"):
        assert (out / f).is_file(), f
    r = subprocess.run([*cli, "report", str(out), "--json"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert {"cosim", "agreement", "codes"} <= set(json.loads(r.stdout)["sections"])
