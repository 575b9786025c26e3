"""docs/verification.md's bad-input tables name a test for every row: each named test must exist, so a
row cannot claim a test that was renamed or never written, and every test of tests/test_bad_inputs.py
has its row. (The tests themselves check the exit codes and messages.)"""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "verification.md"


def _section():
    text = DOC.read_text()
    return text[text.index("<!-- bad-inputs:begin -->"):text.index("<!-- bad-inputs:end -->")]


def named_tests():
    """``(row, file, test)`` for every test named in the last column of the section's tables. A bare name
    is in the file named before it in the same cell, else in tests/test_bad_inputs.py."""
    out = []
    for line in _section().splitlines():
        if not line.startswith("|") or line.startswith("|---") or line.startswith("| input"):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        f = "test_bad_inputs.py"
        names = re.findall(r"`([^`]+)`", cells[-1])
        assert names, f"a row without a test: {line}"
        for name in names:
            if "::" in name:
                f, name = name.split("::")
            out.append((cells[0], f, name))
    return out


def _defined(file):
    tree = ast.parse((ROOT / "tests" / file).read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def test_every_row_names_a_test_that_exists():
    rows = named_tests()
    assert len(rows) >= 40
    missing = [(row, f, name) for row, f, name in rows if name not in _defined(f)]
    assert not missing, missing


def test_every_bad_input_test_has_a_row():
    named = {name for _, f, name in named_tests() if f == "test_bad_inputs.py"}
    tests = {n for n in _defined("test_bad_inputs.py") if n.startswith("test_")}
    assert tests <= named, sorted(tests - named)
