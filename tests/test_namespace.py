"""The three folders install as one namespace (rootshift.sw, rootshift.hw, rootshift.sim)."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"sw": "rootshift.sw", "hw": "rootshift.hw", "sim": "rootshift.sim"}


def _sources():
    for top in ("sw", "hw", "sim", "tests", "bench"):
        yield from (ROOT / top).rglob("*.py")


def test_no_bare_top_level_imports():
    bad = re.compile(r"^\s*(from|import)\s+(sw|hw|sim)(\.|\s|$)", re.M)
    offenders = [f"{p.relative_to(ROOT)}:{m.group(0).strip()}" for p in _sources() for m in bad.finditer(p.read_text())]
    for doc in list((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]:
        offenders += [f"{doc.relative_to(ROOT)}:{m.group(0).strip()}" for m in bad.finditer(doc.read_text())]
    assert not offenders, offenders


def test_every_package_is_listed():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert cfg["package-dir"] == {v: k for k, v in FOLDERS.items()}
    found = set()
    for folder, name in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((name, *rel)))
    assert found == set(cfg["packages"]), f"pyproject's packages differ from the folders: {sorted(found ^ set(cfg['packages']))}"


def test_generic_names_are_not_importable(tmp_path):
    """Installed, only ``rootshift.*`` exists: ``import sw`` fails outside the checkout."""
    import subprocess
    import sys

    code = ("import importlib.util, rootshift.sw as s; assert s.__name__ == 'rootshift.sw'; "
            "print([n for n in ('sw', 'hw', 'sim') if importlib.util.find_spec(n)])")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
