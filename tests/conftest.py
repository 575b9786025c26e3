import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def root():
    return ROOT


def rootshift_cmd():
    """The installed console script, next to the running interpreter."""
    exe = Path(sys.executable).parent / "rootshift"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "sim.cli"]


@pytest.fixture(scope="session")
def cli():
    return rootshift_cmd()


os.environ.setdefault("PYTHONHASHSEED", "0")
