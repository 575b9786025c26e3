"""QAT training loop: SGD + cosine, seeded, atomic per-epoch checkpoints, resume, DDP under torchrun."""

import math
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import __version__
from .data import augment_batch, load_dataset, to_input
from .errors import ConfigError, FormatError, check_bits
from .fileio import atomic_torch_save, atomic_write_json
from .layers import calibrate, layer_schemes, quantize_model
from .models import build_model
from .quant import ACT_SCHEMES, WEIGHT_SCHEMES, anneal, check_adapters

CKPT_FORMAT = "rootshift-checkpoint"
CKPT_VERSION = 1
# fields that must match for --resume to continue the same run
RESUME_KEYS = ("data", "model", "wq", "aq", "wbits", "abits", "first_wbits", "last_wbits", "max_shift",
               "epochs", "seed", "lr", "batch_size", "weight_decay")


@dataclass
class TrainConfig:
    data: str = "digits"
    model: str = "resnet8"
    wq: str = "post"
    aq: str = "asq"
    wbits: int = 4
    abits: int = 4
    first_wbits: int = 8
    last_wbits: int = 8
    max_shift: int = 7
    epochs: int = 15
    seed: int = 0
    out: str = "runs/x"
    lr: float = 0.05
    batch_size: int = 64
    weight_decay: float = 5e-4
    momentum: float = 0.9
    init: str | None = None
    resume: bool = False
    asq_revive: bool = False
    image_size: int = 224
    overrides: dict = field(default_factory=dict)

    def validate(self):
        if self.wq not in WEIGHT_SCHEMES:
            raise ConfigError(f"unknown weight scheme --wq {self.wq!r}; choose one of {', '.join(WEIGHT_SCHEMES)}")
        if self.aq not in ACT_SCHEMES:
            raise ConfigError(f"unknown activation scheme --aq {self.aq!r}; choose one of {', '.join(ACT_SCHEMES)}")
        for name in ("wbits", "abits", "first_wbits", "last_wbits"):
            check_bits(f"--{name.replace('_', '-')}", getattr(self, name))
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ConfigError(f"--epochs must be a positive integer, not {self.epochs!r}")
        if not self.batch_size >= 1:
            raise ConfigError(f"--batch-size must be a positive integer, not {self.batch_size!r}")
        if not self.lr > 0:
            raise ConfigError(f"--lr must be positive, not {self.lr!r}")
        if self.init is not None and not Path(self.init).is_file():
            raise ConfigError(f"--init checkpoint {self.init} does not exist")
        return self


def load_checkpoint(path):
    """Load and validate a rootshift checkpoint (a file from ``runs/x/checkpoint.pt``, or the run dir)."""
    p = Path(path)
    if p.is_dir():
        p = p / "checkpoint.pt"
    if not p.is_file():
        raise ConfigError(f"checkpoint {p} does not exist")
    try:
        ck = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001
        raise FormatError(f"checkpoint {p} is corrupt or not a torch file: {e}") from e
    if not isinstance(ck, dict) or ck.get("format") != CKPT_FORMAT:
        raise FormatError(f"{p} is not a rootshift checkpoint")
    if ck.get("version") != CKPT_VERSION:
        raise FormatError(f"checkpoint {p} has version {ck.get('version')}, this rootshift reads {CKPT_VERSION}")
    return ck


def build_quantized(cfg: TrainConfig, in_channels, num_classes):
    model = build_model(cfg.model, in_channels, num_classes)
    schemes = layer_schemes(model, cfg.wq, cfg.aq, cfg.wbits, cfg.abits, cfg.first_wbits, cfg.last_wbits,
                            cfg.max_shift, cfg.overrides)
    return model, schemes


def model_from_checkpoint(ck):
    """Rebuild the quantized model of a checkpoint, weights loaded, in eval mode."""
    cfg = TrainConfig(**ck["config"])
    model, schemes = build_quantized(cfg, ck["arch"]["in_channels"], ck["arch"]["num_classes"])
    quantize_model(model, schemes)
    model.load_state_dict(ck["model"])
    return model.eval(), cfg


def _dist():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world


def _param_groups(model, wd):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        # weights of conv/linear layers decay; scales, adapters' biases and BN do not
        is_weight = name.endswith(".weight") and p.dim() > 1 and "adapter_beta" not in name
        (decay if is_weight else no_decay).append(p)
    return [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]


@torch.no_grad()
def evaluate(model, split, batch_size=256, device="cpu"):
    model.eval()
    correct = 0
    for i in range(0, len(split), batch_size):
        x, y = split.batch(range(i, min(len(split), i + batch_size)))
        correct += (model(to_input(x).to(device)).argmax(1).cpu() == y).sum().item()
    return correct / len(split)


def _progress(enabled):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), disable=not enabled, transient=False)


def train(cfg: TrainConfig, progress=True, stop_after=None):
    """Train (or resume) a run into ``cfg.out``; returns the metrics dict written to ``metrics.json``.

    ``stop_after`` ends the process's work after that many epochs of this call (used to test resume).
    """
    cfg.validate()
    rank, world = _dist()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if torch.cuda.is_available() else torch.device("cpu")
    torch.manual_seed(cfg.seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    out = Path(cfg.out)
    ds = load_dataset(cfg.data, cfg.image_size)
    if cfg.batch_size % world:
        raise ConfigError(f"--batch-size {cfg.batch_size} is not divisible by the {world} processes")

    model, schemes = build_quantized(cfg, ds.in_channels, ds.num_classes)
    if cfg.init and not cfg.resume:
        ck = load_checkpoint(cfg.init)
        if ck["arch"] != model.arch:
            raise ConfigError(f"--init checkpoint {cfg.init} is a {ck['arch'].get('name')} for "
                              f"{ck['arch']['in_channels']}-channel {ck['arch']['num_classes']}-class input; "
                              f"this run builds a {cfg.model} for {ds.in_channels}-channel {ds.num_classes}-class")
        own = model.state_dict()
        float_state = {k: v for k, v in ck["model"].items() if k in own and own[k].shape == v.shape}
        model.load_state_dict(float_state, strict=False)
    quantize_model(model, schemes)
    model.to(device)

    params = _param_groups(model, cfg.weight_decay)
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    steps_per_epoch = math.ceil(len(ds.train) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    start_epoch, history = 0, []

    ckpt_path = out / "checkpoint.pt"
    if cfg.resume:
        if not ckpt_path.is_file():
            raise ConfigError(f"--resume: no checkpoint at {ckpt_path}")
        ck = load_checkpoint(ckpt_path)
        old = ck["config"]
        diff = [k for k in RESUME_KEYS if old.get(k) != getattr(cfg, k)]
        if diff:
            raise ConfigError("--resume: checkpoint " + str(ckpt_path) + " was made with other settings: "
                              + ", ".join(f"{k}={old.get(k)!r} (now {getattr(cfg, k)!r})" for k in diff))
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        start_epoch, history = ck["epoch"], ck["history"]
    else:
        g = torch.Generator().manual_seed(cfg.seed)
        idx = torch.randperm(len(ds.train), generator=g)[: min(len(ds.train), 256)]
        calibrate(model, to_input(ds.train.batch(idx)[0]).to(device))

    net = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    metrics = None
    per_rank = cfg.batch_size // world
    with _progress(progress and rank == 0) as bar:
        task = bar.add_task(f"{cfg.wq}/{cfg.aq} W{cfg.wbits}A{cfg.abits}", total=(cfg.epochs - start_epoch) * steps_per_epoch, info="")
        for epoch in range(start_epoch, cfg.epochs):
            if stop_after is not None and epoch - start_epoch >= stop_after:
                return None
            temp = anneal(model, epoch, cfg.epochs)
            gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
            perm = torch.randperm(len(ds.train), generator=gen)
            net.train()
            loss_sum, seen, correct = 0.0, 0, 0
            for b in range(steps_per_epoch):
                idx = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                idx = idx[rank * per_rank:(rank + 1) * per_rank]
                if len(idx) == 0:
                    # keep DDP in lock-step: every rank runs every step
                    idx = perm[:1]
                x, y = ds.train.batch(idx)
                if ds.augment:
                    x = augment_batch(x, gen)
                x, y = to_input(x).to(device), y.to(device)
                logits = net(x)
                loss = F.cross_entropy(logits, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                loss_sum += loss.item() * len(y)
                seen += len(y)
                correct += (logits.argmax(1) == y).sum().item()
                bar.update(task, advance=1, info=f"ep {epoch + 1}/{cfg.epochs} loss {loss_sum / seen:.3f} acc {correct / seen:.3f}")
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                dead = check_adapters(model, revive=cfg.asq_revive)
            if rank == 0 and (progress or caught):
                for w in caught:
                    bar.console.print(f"[yellow]warning:[/] {w.message}")
            if world > 1:
                t = torch.tensor([loss_sum, seen], dtype=torch.float64, device=device)
                torch.distributed.all_reduce(t)
                loss_sum, seen = t.tolist()
            test_acc = evaluate(model, ds.test, device=device)
            history.append({"epoch": epoch + 1, "train_loss": loss_sum / seen, "test_acc": test_acc,
                            "lr": sched.get_last_lr()[0], "temperature": temp, "dead_adapters": dead})
            if rank == 0:
                if progress:
                    bar.console.print(f"epoch {epoch + 1}/{cfg.epochs}: train loss {loss_sum / seen:.4f}, test acc {test_acc:.4f}")
                atomic_torch_save(ckpt_path, {
                    "format": CKPT_FORMAT, "version": CKPT_VERSION, "rootshift": __version__,
                    "config": asdict(cfg) | {"resume": False}, "arch": model.arch, "schemes": model.schemes,
                    "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "epoch": epoch + 1, "history": history, "dataset": {"name": ds.name, "image_size": ds.image_size},
                })
    last = history[-1]
    metrics = {"test_acc": last["test_acc"], "train_loss": last["train_loss"], "epochs": cfg.epochs,
               "wq": cfg.wq, "aq": cfg.aq, "wbits": cfg.wbits, "abits": cfg.abits, "model": cfg.model,
               "data": cfg.data, "seed": cfg.seed, "world_size": world, "history": history}
    if rank == 0:
        atomic_write_json(out / "metrics.json", metrics)
    if world > 1:
        torch.distributed.barrier()
    return metrics
