"""The iCEBreaker bitstream for a small array through amaranth-boards and the YoWASP tools: the report's
fields, and the same bitstream from a second build with the same seed (issue 12)."""

import json

import pytest

from rootshift.hw.board.boards import get_board
from rootshift.hw.params import ArrayParams
from rootshift.sim.board import REPORT, BoardBuildRefused, build_params, estimate_params, flash

PARAMS = ArrayParams(wbits=4, abits=4, rows=2, cols=2, max_k=64, max_shift=3)


@pytest.mark.slow
def test_icebreaker_build_report_and_reproducibility(tmp_path):
    board = get_board("icebreaker")
    a = build_params(PARAMS, board, tmp_path / "a", seed=3)
    assert a["board"] == "icebreaker" and a["seed"] == 3 and a["clock_mhz"] == board.clock_mhz == 18   # PLL
    assert a["fmax_mhz"] >= a["clock_mhz"]
    for name in ("LUT", "FF", "BRAM", "DSP", "SPRAM"):
        r = a["resources"][name]
        assert 0 <= r["used"] <= r["available"], name
    assert a["resources"]["LUT"]["available"] == a["resources"]["LC"]["available"] == 5280
    assert a["resources"]["LUT"]["used"] <= a["resources"]["LC"]["used"]
    assert a["resources"]["DSP"]["used"] >= 1          # the requantizer's multipliers went to SB_MAC16 (-dsp)
    assert a["resources"]["BRAM"]["used"] >= 1         # buffers and the request buffer in EBR
    assert json.loads((tmp_path / "a" / REPORT).read_text()) == a
    b = build_params(PARAMS, board, tmp_path / "b", seed=3)
    assert b["sha256"] == a["sha256"]
    assert flash(tmp_path / "a", dry_run=True)["command"] == ["iceprog", a["bitstream"]]
    # the estimate (synthesis only) reads the same LUT/FF/BRAM/DSP on iCE40
    e = estimate_params(PARAMS, board)
    assert e["fits"] and {k: v["used"] for k, v in e["resources"].items()} == \
        {k: a["resources"][k]["used"] for k in e["resources"]}


@pytest.mark.slow
def test_a_design_too_large_is_refused_with_the_numbers(tmp_path):
    big = ArrayParams(wbits=4, abits=8, rows=8, cols=8, max_k=64, max_shift=3)
    with pytest.raises(BoardBuildRefused, match=r"does not fit icebreaker: .*ICESTORM_LC \d+/5280"):
        build_params(big, get_board("icebreaker"), tmp_path / "big")

