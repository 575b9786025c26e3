"""The README's commands, exactly as written, on a fresh clone (the quick tour), and its claims that
can be checked without running for minutes (the two set-up commands exist, the exit-code table)."""

import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def quick_tour():
    block = README.split("<!-- quick-tour:begin -->", 1)[1].split("<!-- quick-tour:end -->", 1)[0]
    body = block.split("```sh", 1)[1].split("```", 1)[0]
    return [ln for ln in body.strip().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def test_readme_opens_with_the_two_commands():
    first = README.split("```sh", 1)[1].split("```", 1)[0].strip().splitlines()
    assert [ln.split()[0:2] for ln in first] == [["make", "demo"], ["make", "test"]]
    make = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", make, re.M) and re.search(r"^test:", make, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_exit_code_table_matches_the_cli():
    from rootshift.sim import cli

    for code in (cli.EXIT_OK, cli.EXIT_CHECK_FAILED, cli.EXIT_USAGE, cli.EXIT_INTERNAL):
        assert f"* `{code}`:" in README


@pytest.mark.slow
def test_quick_tour_on_a_fresh_clone(tmp_path):
    """Clone the committed tree, give it the environment `make setup` made, run the tour line by line."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    (clone / ".venv").symlink_to(ROOT / ".venv")
    for line in quick_tour():
        r = subprocess.run(["bash", "-c", "set -eo pipefail; . .venv/bin/activate; " + line], cwd=clone,
                           capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, f"README command failed: {line}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    cosim = json.loads((clone / "runs/quick/cosim.json").read_text())
    assert cosim["mismatches"] == 0 and cosim["images"] == 2
    report = (clone / "runs/quick/report.html").read_text()
    for section in ("training", "weights", "codes", "beta", "agreement", "cosim"):
        assert f'id="{section}"' in report, section
