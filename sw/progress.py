"""Progress for every step longer than about two seconds (builds, simulation, synthesis, training).

Shown on stderr only when stderr is a terminal and ``ROOTSHIFT_QUIET`` is unset (the CLI sets it under
``--json``), so machine-readable output and logs stay clean. Each step shows its elapsed time.

    with task("building the Verilator model") as t:      # spinner + elapsed time
        ...
    with task("co-simulating", total=16) as t:           # bar + count + elapsed time
        for image in images:
            ...
            t.advance()
"""

import contextlib
import os
import sys
import time


def enabled():
    return not os.environ.get("ROOTSHIFT_QUIET") and sys.stderr.isatty()


class _Quiet:
    def advance(self, n=1):
        pass

    def update(self, description=None, completed=None):
        pass


class _Rich:
    def __init__(self, prog, tid):
        self._p, self._t = prog, tid

    def advance(self, n=1):
        self._p.advance(self._t, n)

    def update(self, description=None, completed=None):
        kw = {k: v for k, v in (("description", description), ("completed", completed)) if v is not None}
        self._p.update(self._t, **kw)


_active = []  # rich allows one live display at a time: a step inside a step prints a line instead


@contextlib.contextmanager
def task(description, total=None, done_message=True):
    """A progress display for one step; ``total=None`` shows a spinner, otherwise a bar with a count."""
    if not enabled():
        yield _Quiet()
        return
    if _active:
        _active[-1].console.print(f"[dim]{description} ...[/dim]")
        yield _Quiet()
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    cols = [SpinnerColumn(), TextColumn("{task.description}")]
    if total is not None:
        cols += [BarColumn(), MofNCompleteColumn()]
    cols.append(TimeElapsedColumn())
    t0 = time.perf_counter()
    with Progress(*cols, console=console, transient=True) as prog:
        tid = prog.add_task(description, total=total)
        _active.append(prog)
        try:
            yield _Rich(prog, tid)
        finally:
            _active.pop()
    if done_message:
        console.print(f"[dim]{description}: done in {time.perf_counter() - t0:.1f} s[/dim]")
