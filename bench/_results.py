"""Where a benchmark's tables go: a scratch file by default, docs/results.md only with ``--write``.

Each benchmark owns one section (between its begin/end markers) and replaces it atomically. Every
section records the torch thread count, because results depend on it (same seed: 98.06 % at 1
thread, 97.78 % at 2).
"""

import argparse
import os
from pathlib import Path

from rootshift.sw.fileio import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results.md"
SCRATCH = Path(os.environ.get("ROOTSHIFT_BENCH_OUT", ROOT / "build" / "bench" / "results.md"))
_target = SCRATCH


def add_common_args(parser: argparse.ArgumentParser):
    """``--quick`` (minutes, the default of ``make bench``) and ``--write`` (update docs/results.md)."""
    parser.add_argument("--quick", action="store_true", help="a small version that runs in minutes (default: full)")
    parser.add_argument("--write", action="store_true",
                        help=f"write the tables into docs/results.md (default: {SCRATCH.relative_to(ROOT) if SCRATCH.is_relative_to(ROOT) else SCRATCH})")
    return parser


def configure(args):
    """Pick the output file from parsed ``--write``; returns its path."""
    global _target
    _target = RESULTS if getattr(args, "write", False) else SCRATCH
    return _target


def threads_line():
    import torch

    return f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {os.cpu_count()} CPU(s)"


def pyplot():
    """matplotlib's pyplot on the Agg backend (files only: no display on a build machine)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_figure(name, fig):
    """Save a matplotlib figure as ``img/<name>.png`` beside the results file (docs/img/ with ``--write``),
    atomically; returns the path to put in the section's Markdown (``img/<name>.png``)."""
    import io

    from rootshift.sw.fileio import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    pyplot().close(fig)
    path = Path(_target).parent / "img" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    print(f"bench: wrote figure {name!r} to {path}")
    return f"img/{name}.png"


def write_section(name, body, path=None):
    path = Path(path or _target)
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else "# Results\n\nEvery table below was written by the command shown with it.\n"
    block = f"{begin}\n{body.rstrip()}\n\nMeasured with {threads_line()}.\n{end}"
    if begin in text and end in text:
        pre, rest = text.split(begin, 1)
        text = pre + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    atomic_write_text(path, text)
    print(f"bench: wrote section {name!r} to {path}")
