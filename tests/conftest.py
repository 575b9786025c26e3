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
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "rootshift.sim.cli"]


@pytest.fixture(scope="session")
def cli():
    return rootshift_cmd()


@pytest.fixture(scope="session")
def cli_cmd():
    """The same as ``cli``, for modules that import :mod:`rootshift.sim.cli` under that name."""
    return rootshift_cmd()


os.environ.setdefault("PYTHONHASHSEED", "0")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A short post+asq W4A4 digits run shared by the export, golden and co-simulation tests."""
    from rootshift.sw.train import TrainConfig, train

    out = tmp_path_factory.mktemp("run") / "postasq"
    train(TrainConfig(epochs=6, out=str(out)), progress=False)
    return out


@pytest.fixture(scope="session")
def exported(trained_run, tmp_path_factory):
    from rootshift.sw import rsq
    from rootshift.sw.export import export_checkpoint
    from rootshift.sw.train import load_checkpoint

    path = tmp_path_factory.mktemp("rsq") / "model.rsq"
    im = export_checkpoint(load_checkpoint(trained_run))
    rsq.save(im, path)
    return path
