"""Training: smoke run on digits, deterministic resume, bad arguments, run-directory protection, overrides,
history and TensorBoard, DDP (sampler, BatchNorm sync, one report) with two gloo processes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rootshift.sw.errors import ConfigError, RootshiftError
from rootshift.sw.layers import QConv2d, QLinear, layer_schemes, quantize_model
from rootshift.sw.models import build_model
from rootshift.sw.train import TrainConfig, train


def test_models_build_and_run():
    for name, shape, cin in (("resnet8", (2, 1, 8, 8), 1), ("resnet8", (2, 1, 28, 28), 1), ("resnet20", (2, 3, 32, 32), 3)):
        m = build_model(name, cin, 10)
        assert m(torch.rand(shape)).shape == (2, 10)
    m = build_model("resnet18", 3, 1000)
    assert m(torch.rand(1, 3, 64, 64)).shape == (1, 1000)
    assert sum(p.numel() for p in build_model("resnet34", 3, 1000).parameters()) > 21_000_000


def test_every_layer_is_quantized_with_defaults():
    m = build_model("resnet8", 1, 10)
    schemes = layer_schemes(m, "post", "asq", 4, 4)
    quantize_model(m, schemes)
    layers = [(n, l) for n, l in m.named_modules()
              if isinstance(l, (torch.nn.Conv2d, torch.nn.Linear)) and "adapter_beta" not in n]
    assert all(isinstance(l, (QConv2d, QLinear)) and l.wq is not None and l.aq is not None for _, l in layers)
    assert layers[0][1].aq.scheme == "input8" and layers[0][1].wq.bits == 8
    assert layers[-1][0] == "fc" and layers[-1][1].wq.bits == 8
    assert layers[1][1].wq.bits == 4 and layers[1][1].aq.scheme == "asq"


def test_smoke_train_digits(tmp_path):
    m = train(TrainConfig(epochs=3, out=str(tmp_path / "r")), progress=False)
    assert m["test_acc"] > 0.8
    saved = json.loads((tmp_path / "r" / "metrics.json").read_text())
    for key in ("test_acc", "train_loss", "epochs", "wq", "aq", "wbits", "abits"):
        assert key in saved
    assert saved["wq"] == "post" and saved["aq"] == "asq" and saved["epochs"] == 3
    assert not [p for p in (tmp_path / "r").iterdir() if p.name.endswith(".tmp")]


def test_resume_reaches_the_same_final_metrics(tmp_path):
    cfg = dict(epochs=3, wq="lsq", aq="lsq", wbits=3, abits=3)
    full = train(TrainConfig(out=str(tmp_path / "a"), **cfg), progress=False)
    assert train(TrainConfig(out=str(tmp_path / "b"), **cfg), progress=False, stop_after=1) is None
    assert json.loads(json.dumps(torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["epoch"])) == 1
    resumed = train(TrainConfig(out=str(tmp_path / "b"), resume=True, **cfg), progress=False)
    assert resumed["test_acc"] == full["test_acc"]
    assert resumed["train_loss"] == full["train_loss"]


def test_resume_refuses_other_settings(tmp_path):
    train(TrainConfig(out=str(tmp_path / "a"), epochs=2), progress=False, stop_after=1)
    with pytest.raises(ValueError, match="wbits=4 .now 3"):
        train(TrainConfig(out=str(tmp_path / "a"), epochs=2, wbits=3, resume=True), progress=False)


def test_finetune_from_float_checkpoint(tmp_path):
    train(TrainConfig(out=str(tmp_path / "fp"), wq="fp", aq="fp", epochs=2), progress=False)
    m = train(TrainConfig(out=str(tmp_path / "sh"), wq="shift", aq="shift", epochs=2,
                          init=str(tmp_path / "fp" / "checkpoint.pt")), progress=False)
    assert m["test_acc"] > 0.5


@pytest.mark.parametrize("args, message", [
    (["--wbits", "9"], "--wbits must be an integer in 2..8, not 9"),
    (["--abits", "1"], "--abits must be an integer in 2..8, not 1"),
    (["--wq", "ternary"], ("unknown weight scheme --wq 'ternary'", "--wq: invalid choice: 'ternary'")),
    (["--aq", "pact"], ("unknown activation scheme --aq 'pact'", "--aq: invalid choice: 'pact'")),
    (["--data", "cifar10:/nonexistent/cifar"], "dataset path /nonexistent/cifar does not exist"),
    (["--data", "cifar10"], "needs a path"),
    (["--model", "resnet99"], ("unknown model 'resnet99'", "--model: invalid choice: 'resnet99'")),
])
def test_bad_arguments_fail_fast(cli, tmp_path, args, message):
    r = subprocess.run(cli + ["train", "--epochs", "1", "--out", str(tmp_path / "x"), "--quiet"] + args,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert any(m in r.stderr for m in ((message,) if isinstance(message, str) else message)), r.stderr
    assert "Traceback" not in r.stderr


def test_init_from_another_model_is_refused(cli, tmp_path):
    train(TrainConfig(out=str(tmp_path / "fp"), wq="fp", aq="fp", epochs=1), progress=False)
    r = subprocess.run(cli + ["train", "--model", "resnet20", "--init", str(tmp_path / "fp" / "checkpoint.pt"),
                              "--epochs", "1", "--out", str(tmp_path / "y"), "--quiet"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "is a resnet8" in r.stderr and "resnet20" in r.stderr


def test_ddp_two_gloo_processes(tmp_path, root):
    torchrun = Path(sys.executable).parent / "torchrun"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_port", "29533", "-m", "rootshift.sim.cli", "train",
                        "--epochs", "2", "--out", str(tmp_path / "ddp"), "--quiet"],
                       capture_output=True, text=True, timeout=300, env=env, cwd=root)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert m["world_size"] == 2 and m["test_acc"] > 0.5 and m["status"] == "done"
    assert r.stdout.count("test_acc") == 1, r.stdout  # one report, from rank 0


# ---------------------------------------------------------------- run directories (issue 11: no lost work)

def _digits(tmp_path, name="r", **kw):
    return TrainConfig(out=str(tmp_path / name), **({"epochs": 1} | kw))


def test_a_run_directory_is_refused_without_resume_or_force(tmp_path):
    train(_digits(tmp_path), progress=False)
    before = (tmp_path / "r" / "checkpoint.pt").read_bytes()
    with pytest.raises(ConfigError, match="already holds a run .checkpoint.pt, metrics.json.; pass --resume"):
        train(_digits(tmp_path, wbits=3), progress=False)
    assert (tmp_path / "r" / "checkpoint.pt").read_bytes() == before
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["wbits"] == 4


def test_force_replaces_and_metrics_never_describe_the_old_run(tmp_path):
    train(_digits(tmp_path), progress=False)
    # the new run stops before its first epoch ends (as if killed): nothing of the old run remains
    assert train(_digits(tmp_path, wbits=3, force=True), progress=False, stop_after=0) is None
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert m["status"] == "stopped" and m["wbits"] == 3 and m["epochs_done"] == 0 and "test_acc" not in m
    assert not (tmp_path / "r" / "checkpoint.pt").exists()
    with pytest.raises(ConfigError, match="already holds a run .metrics.json."):
        train(_digits(tmp_path, wbits=3), progress=False)


def test_metrics_say_running_while_training(tmp_path, monkeypatch):
    from rootshift.sw import train as T

    seen = []
    real = T.evaluate

    def spy(*a, **kw):
        seen.append(json.loads((tmp_path / "r" / "metrics.json").read_text()))
        return real(*a, **kw)

    monkeypatch.setattr(T, "evaluate", spy)
    m = train(_digits(tmp_path, epochs=2), progress=False)
    assert [s["status"] for s in seen] == ["running", "running"] and [s["epochs_done"] for s in seen] == [0, 1]
    saved = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert saved["status"] == "done" and saved["test_acc"] == m["test_acc"]


def test_resume_and_force_together_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="pass one of them"):
        train(_digits(tmp_path, resume=True, force=True), progress=False)


def test_a_locked_run_directory_is_refused_naming_the_holder(tmp_path):
    from rootshift.sw.train import RunLock

    (tmp_path / "r").mkdir()
    with RunLock(tmp_path / "r"):
        with pytest.raises(ConfigError, match=f"is in use: a training run .pid {os.getpid()} on "):
            train(_digits(tmp_path), progress=False)
    # released: the lock file alone does not make a run
    train(_digits(tmp_path), progress=False, stop_after=0)


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_text("x"), "exists and is not a directory"),
    (lambda p: p.parent.joinpath("file").write_text("x"), "cannot be created: Not a directory"),
])
def test_out_is_checked_before_any_data_is_read(tmp_path, make, message):
    out = tmp_path / "out"
    make(out)
    target = out if out.exists() else tmp_path / "file" / "sub"
    # the dataset path does not exist either: the --out problem must be found first
    with pytest.raises(ConfigError, match=message):
        train(TrainConfig(out=str(target), data="cifar10:/nonexistent/cifar"), progress=False)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_out_is_refused(tmp_path):
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o500)
    try:
        with pytest.raises(ConfigError, match="is not writable: Permission denied"):
            train(TrainConfig(out=str(tmp_path / "ro")), progress=False)
    finally:
        (tmp_path / "ro").chmod(0o700)


def test_checkpoint_write_failure_is_one_line_naming_the_file(tmp_path, monkeypatch):
    import errno
    import tempfile

    from rootshift.sw import fileio

    real = tempfile.mkstemp

    def full_disk(*a, prefix="", **kw):
        if prefix.startswith(".checkpoint.pt"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*a, prefix=prefix, **kw)

    monkeypatch.setattr(fileio.tempfile, "mkstemp", full_disk)
    with pytest.raises(RootshiftError) as e:
        train(_digits(tmp_path), progress=False)
    assert str(e.value) == f"cannot write {tmp_path / 'r' / 'checkpoint.pt'}: No space left on device"
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["status"] == "failed"


# ---------------------------------------------------------------- --override

@pytest.mark.parametrize("overrides, message", [
    ({"fc2": {"wbits": 4}}, "unknown layer 'fc2'; the layers of resnet8 are conv1, .*, fc"),
    ({"fc": {"bits": 4}}, "--override 'fc': unknown setting.s. 'bits'; valid ones are wq, wbits, aq, abits, max_shift"),
    ({"fc": {"wbits": 9}}, "--override 'fc': weight bits must be an integer in 2..8, not 9"),
    ({"fc": 4}, "must map layer names to settings"),
    ('{"fc": ', "--override is not valid JSON"),
])
def test_bad_overrides_are_named_before_training(overrides, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(overrides=overrides).validate()


def test_override_applies():
    cfg = TrainConfig(overrides='{"fc": {"wbits": 4}}').validate()
    assert cfg.overrides == {"fc": {"wbits": 4}}


# ---------------------------------------------------------------- history and TensorBoard

def test_history_records_loss_acc_lr_and_temperature(tmp_path):
    m = train(_digits(tmp_path, wq="shift", aq="shift", epochs=2), progress=False)
    h = m["history"]
    assert [e["epoch"] for e in h] == [1, 2]
    for e in h:
        assert set(e) >= {"train_loss", "train_acc", "test_acc", "lr", "temperature"}
        assert 0 <= e["train_acc"] <= 1 and e["lr"] > 0
    assert h[0]["lr"] == 0.05 and h[1]["lr"] < 0.05  # the rate each epoch starts with
    assert h[0]["temperature"] < h[1]["temperature"]  # annealed upward
    fp = train(_digits(tmp_path, name="fp", wq="fp", aq="fp"), progress=False)
    assert fp["history"][0]["temperature"] is None  # no shift quantizer, no temperature


def test_tensorboard_missing_is_a_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ConfigError, match="--tensorboard needs the tensorboard package"):
        TrainConfig(tensorboard=True).validate()


def test_tensorboard_logs_every_epoch(tmp_path, monkeypatch):
    import types

    logged = []

    class Writer:
        def __init__(self, log_dir):
            logged.append(("dir", log_dir))

        def add_scalar(self, tag, value, step):
            logged.append((tag, step))

        def flush(self):
            pass

        def close(self):
            logged.append(("closed", None))

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=Writer))
    train(_digits(tmp_path, wq="shift", aq="shift", epochs=2, tensorboard=True), progress=False)
    assert logged[0] == ("dir", str(tmp_path / "r" / "tensorboard")) and logged[-1] == ("closed", None)
    for tag in ("train/loss", "train/acc", "test/acc", "lr", "shift/temperature"):
        assert [s for t, s in logged if t == tag] == [1, 2]


# ---------------------------------------------------------------- DDP pieces

@pytest.mark.parametrize("n, world", [(7, 1), (7, 2), (10, 3), (64, 4)])
def test_rank_sampler_gives_every_rank_the_same_number_of_distinct_samples(n, world):
    from rootshift.sw.train import RankSampler

    for epoch in range(3):
        parts = [RankSampler(n, world, r, seed=1).indices(epoch).tolist() for r in range(world)]
        assert {len(p) for p in parts} == {n // world}
        flat = sum(parts, [])
        assert len(set(flat)) == len(flat) == n - n % world
    if world == 1:  # one process: the plain shuffled epoch
        assert sorted(RankSampler(n).indices(0).tolist()) == list(range(n))


def test_rank_sampler_refuses_fewer_samples_than_ranks():
    from rootshift.sw.train import RankSampler

    with pytest.raises(ConfigError, match="3 training samples cannot be shared by 4 processes"):
        RankSampler(3, 4, 0)


SYNC_SCRIPT = """
import sys, torch
from rootshift.sw.train import _dist, _end_dist, sync_model
rank, world = _dist()
torch.manual_seed(rank)  # every rank starts from different parameters and sees different data
m = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 1), torch.nn.BatchNorm2d(3)).train()
m(torch.randn(8, 2, 4, 4) * (rank + 1) + rank)
before = m[1].running_mean.clone()
sync_model(m, world)
torch.save({"before": before, "state": m.state_dict()}, f"{sys.argv[1]}/rank{rank}.pt")
_end_dist()
"""


def test_sync_model_averages_batchnorm_and_equalises_ranks(tmp_path, root):
    script = tmp_path / "sync.py"
    script.write_text(SYNC_SCRIPT)
    torchrun = Path(sys.executable).parent / "torchrun"
    r = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_port", "29541", str(script), str(tmp_path)],
                       capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"), cwd=root)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = (torch.load(tmp_path / f"rank{i}.pt") for i in range(2))
    assert not torch.equal(a["before"], b["before"])
    for k in a["state"]:
        assert torch.equal(a["state"][k], b["state"][k]), k
    assert torch.allclose(a["state"]["1.running_mean"], (a["before"] + b["before"]) / 2)


def test_divergence_is_named(tmp_path, monkeypatch):
    from rootshift.sw import train as T

    real = T.F.cross_entropy
    monkeypatch.setattr(T.F, "cross_entropy", lambda *a, **kw: real(*a, **kw) * float("nan"))
    with pytest.raises(RootshiftError, match=r"training diverged: the loss is nan in epoch 1; try a lower --lr \(now 0.05\)"):
        train(_digits(tmp_path), progress=False)
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["status"] == "failed"
