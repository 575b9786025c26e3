"""Training: smoke run on digits, deterministic resume, bad arguments, DDP with two gloo processes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

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
    (["--wq", "ternary"], "unknown weight scheme --wq 'ternary'"),
    (["--aq", "pact"], "unknown activation scheme --aq 'pact'"),
    (["--data", "cifar10:/nonexistent/cifar"], "dataset path /nonexistent/cifar does not exist"),
    (["--data", "cifar10"], "needs a path"),
    (["--model", "resnet99"], "unknown model 'resnet99'"),
])
def test_bad_arguments_fail_fast(cli, tmp_path, args, message):
    r = subprocess.run(cli + ["train", "--epochs", "1", "--out", str(tmp_path / "x"), "--quiet"] + args,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
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
    assert m["world_size"] == 2 and m["test_acc"] > 0.5
