"""Bad input and lost work (issue 11), as a new user meets them: every row of the table in
docs/verification.md ("Bad inputs") is a test here, named there. Each checks the exit code, the message
and that no traceback reaches the user.

"""

import json
import os
import pickle
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch



def run(cli, *args, timeout=300):
    r = subprocess.run(cli + [str(a) for a in args], capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    return r


def refused(r, code, *fragments):
    assert r.returncode == code, (r.returncode, r.stderr[-2000:])
    for f in fragments:
        assert f in r.stderr, (f, r.stderr[-2000:])
    return r


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A 1-epoch digits run (the existing-run and lock rows need one, not a good one)."""
    from rootshift.sw.train import TrainConfig, train

    out = tmp_path_factory.mktemp("small") / "run"
    train(TrainConfig(epochs=1, out=str(out)), progress=False)
    return out


def _cifar(root, labels=None, n=20):
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        lab = rng.integers(0, 10, size=n).tolist() if labels is None or name != "data_batch_1" else labels
        with open(d / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8), b"labels": lab}, f)
    return root


# ---------------------------------------------------------------- train: run directories

def test_train_into_a_run_directory_is_refused(cli, small_run):
    before = (small_run / "checkpoint.pt").read_bytes()
    refused(run(cli, "train", "--epochs", "1", "--out", small_run, "--quiet"), 2,
            f"--out {small_run} already holds a run (checkpoint.pt, metrics.json); pass --resume to continue it or --force")
    assert (small_run / "checkpoint.pt").read_bytes() == before


def test_train_force_replaces_and_a_killed_run_leaves_no_stale_metrics(cli, small_run, tmp_path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(small_run, out)
    p = subprocess.Popen(cli + ["train", "--epochs", "40", "--wbits", "3", "--out", str(out), "--force", "--quiet"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        m = {}
        while time.monotonic() < deadline and p.poll() is None:
            if (out / "metrics.json").exists():
                m = json.loads((out / "metrics.json").read_text())
                if m.get("status") == "running":
                    break
            time.sleep(0.5)
        assert p.poll() is None, p.stderr.read()
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    m = json.loads((out / "metrics.json").read_text())
    assert m["status"] == "running" and m["wbits"] == 3 and "test_acc" not in m  # the new run, never the old


def test_train_on_a_locked_run_directory_is_refused(cli, tmp_path):
    from rootshift.sw.train import RunLock

    (tmp_path / "run").mkdir()
    with RunLock(tmp_path / "run"):
        t0 = time.monotonic()
        r = run(cli, "train", "--epochs", "1", "--out", tmp_path / "run", "--quiet")
        refused(r, 2, f"--out {tmp_path / 'run'} is in use: a training run (pid {os.getpid()} on ")
        assert time.monotonic() - t0 < 60


def test_train_out_is_a_file(cli, tmp_path):
    (tmp_path / "f").write_text("x")
    refused(run(cli, "train", "--out", tmp_path / "f", "--quiet"), 2, f"--out {tmp_path / 'f'} exists and is not a directory")


def test_train_out_cannot_be_created(cli, tmp_path):
    # /proc refuses new directories even to root: found before the dataset is read (it does not exist either)
    refused(run(cli, "train", "--out", "/proc/rootshift-test/run", "--data", f"cifar10:{tmp_path / 'none'}", "--quiet"), 2,
            "--out /proc/rootshift-test/run cannot be created: No such file or directory")


def test_train_resume_without_a_checkpoint(cli, tmp_path):
    refused(run(cli, "train", "--resume", "--out", tmp_path / "new", "--quiet"), 2,
            f"--resume: no checkpoint at {tmp_path / 'new' / 'checkpoint.pt'}")


def test_checkpoint_write_failure_is_one_line(monkeypatch, tmp_path, capsys):
    """A full disk while a checkpoint is written: exit 2, one line naming the checkpoint and the OS error."""
    import errno
    import tempfile

    from rootshift.sim import cli as cli_mod
    from rootshift.sw import fileio

    real = tempfile.mkstemp

    def full(*a, prefix="", **kw):
        if prefix.startswith(".checkpoint.pt"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*a, prefix=prefix, **kw)

    monkeypatch.setattr(fileio.tempfile, "mkstemp", full)
    monkeypatch.setenv("ROOTSHIFT_QUIET", "1")
    code = cli_mod.main(["train", "--epochs", "1", "--out", str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == f"rootshift train: error: cannot write {tmp_path / 'r' / 'checkpoint.pt'}: No space left on device"


def test_train_out_not_writable_as_any_user(monkeypatch, tmp_path, capsys):
    """A read-only --out (the OS refusing the probe file, as it does for a non-root user): exit 2, one line,
    before any data is read. Root may write anywhere, so test_train.py's chmod version skips under root."""
    import errno
    import tempfile

    from rootshift.sim import cli as cli_mod
    from rootshift.sw import train as train_mod

    real = tempfile.mkstemp

    def denied(*a, prefix="", **kw):
        if prefix.startswith(".write-test."):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(*a, prefix=prefix, **kw)

    def no_data(*a, **kw):
        raise AssertionError("the dataset was read before --out was checked")

    monkeypatch.setattr(train_mod.tempfile, "mkstemp", denied)
    monkeypatch.setattr(train_mod, "load_dataset", no_data)
    monkeypatch.setenv("ROOTSHIFT_QUIET", "1")
    out = tmp_path / "ro"
    code = cli_mod.main(["train", "--epochs", "1", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == f"rootshift train: error: --out {out} is not writable: Permission denied"


# ---------------------------------------------------------------- train: options

def test_override_unknown_layer(cli, tmp_path):
    refused(run(cli, "train", "--override", '{"fc9": {"wbits": 4}}', "--out", tmp_path / "r", "--quiet"), 2,
            "--override: unknown layer 'fc9'; the layers of resnet8 are conv1,")


def test_override_unknown_key(cli, tmp_path):
    refused(run(cli, "train", "--override", '{"fc": {"bits": 4}}', "--out", tmp_path / "r", "--quiet"), 2,
            "--override 'fc': unknown setting(s) 'bits'; valid ones are wq, wbits, aq, abits, max_shift")


def test_override_bad_json(cli, tmp_path):
    refused(run(cli, "train", "--override", "{fc: 4", "--out", tmp_path / "r", "--quiet"), 2, "--override is not valid JSON")


def test_tensorboard_not_installed(cli, tmp_path):
    try:
        import torch.utils.tensorboard  # noqa: F401
        pytest.skip("tensorboard is installed here")
    except ImportError:
        pass
    refused(run(cli, "train", "--tensorboard", "--out", tmp_path / "r", "--quiet"), 2,
            "--tensorboard needs the tensorboard package")
    assert not (tmp_path / "r" / "metrics.json").exists()


# ---------------------------------------------------------------- train: dataset contents

def test_cifar_label_out_of_range(cli, tmp_path):
    root = _cifar(tmp_path / "c", labels=[0] * 7 + [10] + [0] * 12)
    refused(run(cli, "train", "--data", f"cifar10:{root}", "--out", tmp_path / "r", "--quiet"), 3,
            "data_batch_1: label 10 at index 7 is outside 0..9")


def test_cifar_labels_shorter_than_images(cli, tmp_path):
    root = _cifar(tmp_path / "c", labels=[1] * 10)
    refused(run(cli, "train", "--data", f"cifar10:{root}", "--out", tmp_path / "r", "--quiet"), 3,
            "data_batch_1 has 20 images but 10 labels")


def test_imagefolder_corrupt_image(cli, tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        for c in ("a", "b"):
            (tmp_path / "f" / split / c).mkdir(parents=True)
            Image.new("RGB", (12, 12), (10, 20, 30)).save(tmp_path / "f" / split / c / "0.png")
    bad = tmp_path / "f" / "train" / "b" / "1.jpg"
    bad.write_bytes(b"\xff\xd8 this is not a jpeg")
    refused(run(cli, "train", "--data", f"imagefolder:{tmp_path / 'f'}", "--image-size", "16", "--out", tmp_path / "r",
                "--quiet"), 3, f"image {bad} cannot be read")


def test_imagefolder_empty_class(cli, tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        for c in ("a", "b"):
            (tmp_path / "f" / split / c).mkdir(parents=True)
            Image.new("RGB", (12, 12)).save(tmp_path / "f" / split / c / "0.png")
    (tmp_path / "f" / "train" / "c").mkdir()
    refused(run(cli, "train", "--data", f"imagefolder:{tmp_path / 'f'}", "--out", tmp_path / "r", "--quiet"), 2,
            f"class directory {tmp_path / 'f' / 'train' / 'c'} holds no images")


# ---------------------------------------------------------------- export

def _poisoned(run_dir, tmp_path, pick, value):
    ck = torch.load(Path(run_dir) / "checkpoint.pt", weights_only=False)
    name = next(k for k in ck["model"] if pick(k))
    ck["model"][name] = ck["model"][name].clone()
    ck["model"][name].view(-1)[3] = value
    torch.save(ck, tmp_path / "poisoned.pt")
    return tmp_path / "poisoned.pt", name


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_export_non_finite_conv_weight(cli, small_run, tmp_path, value):
    ck, name = _poisoned(small_run, tmp_path, lambda k: k.startswith("stages.") and k.endswith("conv2.weight"), value)
    r = run(cli, "export", ck, "--out", tmp_path / "m.rsq")
    assert r.returncode in (2, 3) and name.removesuffix(".weight") in r.stderr, r.stderr
    assert not (tmp_path / "m.rsq").exists()


def test_export_nan_adapter_weight(cli, small_run, tmp_path):
    ck, name = _poisoned(small_run, tmp_path, lambda k: "adapter_beta.out.weight" in k, float("nan"))
    r = run(cli, "export", ck, "--out", tmp_path / "m.rsq", "--json")
    if r.returncode == 0:
        json.loads(r.stdout)  # never the invalid JSON token NaN
    assert r.returncode in (2, 3) and "adapter" in r.stderr, r.stderr


def test_export_out_is_a_directory(cli, small_run, tmp_path):
    (tmp_path / "d").mkdir()
    refused(run(cli, "export", small_run, "--out", tmp_path / "d"), 2, f"cannot write {tmp_path / 'd'}: Is a directory")


def test_export_out_not_writable(cli, small_run):
    refused(run(cli, "export", small_run, "--out", "/proc/rootshift-test/m.rsq"), 2,
            "cannot write /proc/rootshift-test/m.rsq: No such file or directory")


def test_export_disk_full(monkeypatch, small_run, tmp_path, capsys):
    import errno

    from rootshift.sim import cli as cli_mod
    from rootshift.sw import fileio

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fileio.os, "fsync", full)
    monkeypatch.setenv("ROOTSHIFT_QUIET", "1")
    code = cli_mod.main(["export", str(small_run), "--out", str(tmp_path / "m.rsq")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == f"rootshift export: error: cannot write {tmp_path / 'm.rsq'}: No space left on device"
    assert os.listdir(tmp_path) == []  # no half-written file, no temporary left behind


# ---------------------------------------------------------------- internal errors

def test_internal_error_has_its_own_exit_code(monkeypatch, tmp_path, capsys):
    from rootshift.sim import cli as cli_mod
    from rootshift.sw import train as train_mod

    def bug(*a, **kw):
        raise ZeroDivisionError("a planted bug")

    monkeypatch.setattr(train_mod, "train", bug)
    monkeypatch.setenv("ROOTSHIFT_QUIET", "1")
    code = cli_mod.main(["train", "--epochs", "1", "--out", str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 7 and "internal error" in err and "ZeroDivisionError: a planted bug" in err and "Traceback" not in err
    saved = err.strip().split()[-1]
    assert "Traceback" in Path(saved).read_text()
    Path(saved).unlink()


# ---------------------------------------------------------------- flow: everything checked before training

@pytest.mark.parametrize("args, message", [
    (["--sim", "bogus"], "bogus"),
    (["--wq", "apot"], "--wq apot cannot be exported"),
    (["--mode", "lut", "--wq", "lsq"], "--mode lut"),
    (["--images", "0"], "--images must be a positive integer"),
    (["--rows", "0"], "rows"),
])
def test_flow_refuses_before_training(cli, tmp_path, args, message):
    t0 = time.monotonic()
    refused(run(cli, "flow", "--epochs", "1", "--out", tmp_path / "f", *args), 2, message)
    assert time.monotonic() - t0 < 60
    assert not (tmp_path / "f" / "train" / "checkpoint.pt").exists()


# ---------------------------------------------------------------- generate

@pytest.mark.parametrize("args, message", [
    (["--wbits", "9"], "wbits must be an integer in 2..8, not 9"),
    (["--rows", "0"], "rows must be an integer in 1..64, not 0"),
    (["--pe", "bogus"], "invalid choice: 'bogus'"),
    (["--base", "3"], "invalid choice: '3'"),
])
def test_generate_bad_arguments(cli, tmp_path, args, message):
    refused(run(cli, "generate", "--out", tmp_path / "g", *args), 2, message)
    assert not (tmp_path / "g").exists()


def test_generate_out_under_a_file(cli, tmp_path):
    (tmp_path / "f").write_text("x")
    refused(run(cli, "generate", "--out", tmp_path / "f" / "rtl"), 2, f"{tmp_path / 'f'} is not a directory")


# ---------------------------------------------------------------- cosim

def test_cosim_missing_model(cli, tmp_path):
    refused(run(cli, "cosim", tmp_path / "none.rsq"), 2, f"{tmp_path / 'none.rsq'} does not exist")


def test_cosim_not_an_rsq_file(cli, tmp_path):
    (tmp_path / "junk.rsq").write_bytes(b"junk")
    r = run(cli, "cosim", tmp_path / "junk.rsq")
    assert 3 <= r.returncode <= 6 and str(tmp_path / "junk.rsq") in r.stderr, r.stderr


@pytest.mark.parametrize("args, message", [
    (["--sim", "bogus"], "invalid choice: 'bogus'"),
    (["--images", "0"], "--images"),
    (["--rows", "0"], "rows"),
])
def test_cosim_bad_arguments(cli, exported, args, message):
    t0 = time.monotonic()
    refused(run(cli, "cosim", exported, *args), 2, message)
    assert time.monotonic() - t0 < 60  # refused before any simulator build


def test_cosim_data_that_does_not_fit_the_model(cli, exported, tmp_path):
    t0 = time.monotonic()
    r = run(cli, "cosim", exported, "--data", f"cifar10:{_cifar(tmp_path / 'c')}", "--images", "1")
    refused(r, 2)
    assert "cifar10" in r.stderr or "channel" in r.stderr or "shape" in r.stderr, r.stderr
    assert time.monotonic() - t0 < 60  # before the Verilator build

