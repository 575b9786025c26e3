"""`rootshift build --auto`: the largest array that fits and closes timing, tried from twice the board's
default down; every refused size is reported with its numbers, and "nothing fits" is a named error.
The place-and-route step is replaced by a stand-in that refuses above a size (the real builds are in
tests/test_board_build.py), so this checks the search, not the tools."""

import json

import pytest

from rootshift.hw.board.boards import get_board
from rootshift.sim import board as B
from rootshift.sw.errors import ConfigError


@pytest.fixture
def fake_flow(monkeypatch):
    tried = []

    def design(model_path, b, rows, cols, engine):
        return (rows, cols, engine)

    def build(design, b, out, seed):
        rows, cols, engine = design
        tried.append((rows, cols))
        if rows * cols > fake_flow.limit:
            raise B.BoardBuildRefused(f"LUT {rows * cols * 1000} of {fake_flow.limit * 1000}")
        return {"board": b.name, "rows": rows, "cols": cols, "engine": engine}

    monkeypatch.setattr(B, "board_design", design)
    monkeypatch.setattr(B, "build_design", build)
    fake_flow.tried = tried
    return fake_flow


def test_auto_keeps_the_largest_size_that_builds(fake_flow, tmp_path):
    b = get_board("icebreaker")
    fake_flow.limit = b.rows * b.cols               # exactly the board's default fits
    rep = B.build("m.rsq", "icebreaker", tmp_path, auto=True)
    assert (rep["rows"], rep["cols"]) == (b.rows, b.cols)
    n = 2 * max(b.rows, b.cols)
    assert fake_flow.tried[0] == (n, n)             # started above the default, largest first
    assert all(r * c > fake_flow.limit for r, c in fake_flow.tried[:-1])
    assert [s.split(":")[0] for s in rep["auto_refused"]] == [f"{r}x{c}" for r, c in fake_flow.tried[:-1]]
    assert all("LUT" in s for s in rep["auto_refused"])
    assert json.loads((tmp_path / B.REPORT).read_text())["auto_refused"] == rep["auto_refused"]


def test_auto_with_nothing_that_fits_names_every_refusal(fake_flow, tmp_path):
    fake_flow.limit = 0
    with pytest.raises(ConfigError, match="no array size fits icebreaker") as e:
        B.build("m.rsq", "icebreaker", tmp_path, auto=True)
    assert str(e.value).count("LUT") == len(fake_flow.tried) >= 3
    assert fake_flow.tried[-1][1] >= 2               # never a 1-column array (zero-width wires)


def test_auto_goes_on_past_a_size_the_tools_fail_on(fake_flow, tmp_path, monkeypatch):
    """A tool crash at one size (YoWASP Yosys's ABC9 assertion on the 8x8 engine for ECP5) is that size's
    refusal, named with the tool's error; the next size is tried."""
    from rootshift.hw.tools import ToolError

    b = get_board("icebreaker")
    fake_flow.limit = b.rows * b.cols
    inner = B.build_design

    def crash_above_default(design, board, out, seed):
        if design[0] * design[1] > b.rows * b.cols:
            raise ToolError("yosys failed (exit 1):\nERROR: Assert `GetSize(conn.first) == GetSize(conn.second)' failed")
        return inner(design, board, out, seed)
    monkeypatch.setattr(B, "build_design", crash_above_default)
    rep = B.build("m.rsq", "icebreaker", tmp_path, auto=True)
    assert (rep["rows"], rep["cols"]) == (b.rows, b.cols)
    assert rep["auto_refused"] and all("yosys failed" in s and "Assert" in s for s in rep["auto_refused"])
