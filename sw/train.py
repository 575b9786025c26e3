"""QAT training loop: SGD + cosine, seeded, atomic per-epoch checkpoints, resume, DDP under torchrun.

A run directory (``out``) is protected: it is checked to be creatable and writable before any data is
read, it is locked while a run trains in it, a directory that already holds a run is refused unless
``resume`` or ``force``, and ``metrics.json`` always describes the run that last started there (its
``status`` is ``running`` until the last epoch ends, then ``done``).
"""

import contextlib
import datetime
import fcntl
import math
import os
import shutil
import socket
import tempfile
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import __version__
from .data import augment_batch, load_dataset, to_input
from .errors import ConfigError, FormatError, RootshiftError, check_bits
from .fileio import atomic_torch_save, atomic_write_json
from .layers import LayerScheme, calibrate, layer_schemes, quantize_model
from .models import build_model
from .quant import ACT_SCHEMES, WEIGHT_SCHEMES, ShiftQuantizer, anneal, check_adapters
from .quant.shift import CLIP_NORM, RESTART_LR, restart_epochs, warm_restart

CKPT_FORMAT = "rootshift-checkpoint"
CKPT_VERSION = 1
# fields that must match for --resume to continue the same run
RESUME_KEYS = ("data", "model", "wq", "aq", "wbits", "abits", "first_wbits", "last_wbits", "max_shift",
               "epochs", "seed", "lr", "batch_size", "weight_decay", "augment", "overrides")
# files whose presence means a directory holds a run
RUN_FILES = ("checkpoint.pt", "metrics.json")
LOCK_NAME = ".train.lock"
TENSORBOARD_DIR = "tensorboard"


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
    force: bool = False  # replace a run already in ``out``
    augment: bool = True  # train-time crop + flip for cifar10 and imagefolder (none for digits, mnist5k)
    tensorboard: bool = False  # also log to ``out/tensorboard`` (needs the tensorboard package)

    def validate(self):
        """Check every option that can be checked without reading data; raises ConfigError naming it."""
        if self.wq not in WEIGHT_SCHEMES:
            raise ConfigError(f"unknown weight scheme --wq {self.wq!r}; choose one of {', '.join(WEIGHT_SCHEMES)}")
        if self.aq not in ACT_SCHEMES:
            raise ConfigError(f"unknown activation scheme --aq {self.aq!r}; choose one of {', '.join(ACT_SCHEMES)}")
        for name in ("wbits", "abits", "first_wbits", "last_wbits"):
            check_bits(f"--{name.replace('_', '-')}", getattr(self, name))
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ConfigError(f"--epochs must be a positive integer, not {self.epochs!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"--batch-size must be a positive integer, not {self.batch_size!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"--lr must be a positive number, not {self.lr!r}")
        if not (isinstance(self.weight_decay, (int, float)) and math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"--weight-decay must be a non-negative number, not {self.weight_decay!r}")
        if isinstance(self.image_size, bool) or not isinstance(self.image_size, int) or self.image_size < 8:
            raise ConfigError(f"--image-size must be an integer >= 8, not {self.image_size!r}")
        if self.init is not None and not Path(self.init).is_file():
            raise ConfigError(f"--init checkpoint {self.init} does not exist")
        if self.resume and self.force:
            raise ConfigError("--resume continues the run in --out and --force replaces it: pass one of them")
        self.overrides = parse_overrides(self.overrides)
        names = layer_names(self.model)
        for layer, settings in self.overrides.items():
            if layer not in names:
                raise ConfigError(f"--override: unknown layer {layer!r}; the layers of {self.model} are {', '.join(names)}")
            keys = [f.name for f in fields(LayerScheme)]
            bad = [k for k in settings if k not in keys]
            if bad:
                raise ConfigError(f"--override {layer!r}: unknown setting(s) {', '.join(map(repr, bad))}; "
                                  f"valid ones are {', '.join(keys)}")
            try:
                replace(LayerScheme(self.wq, self.wbits, self.aq, self.abits, self.max_shift), **settings)
            except ConfigError as e:
                raise ConfigError(f"--override {layer!r}: {e}") from None
        if self.tensorboard:
            _summary_writer_class()
        return self


def parse_overrides(text):
    """``--override`` as given (a JSON string or a dict) -> ``{layer: {setting: value}}``, or ConfigError."""
    import json

    obj = text or {}
    if isinstance(text, str):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"--override is not valid JSON ({e.msg} at character {e.pos}): {text!r}") from None
    if not isinstance(obj, dict) or not all(isinstance(v, dict) for v in obj.values()):
        raise ConfigError(f"--override must map layer names to settings, e.g. '{{\"fc\": {{\"wbits\": 4}}}}', not {text!r}")
    return obj


def layer_names(model_name):
    """The conv/linear layer names of a model (they do not depend on channels or classes)."""
    return [n for n, m in build_model(model_name, 3, 10).named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _summary_writer_class():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:
        raise ConfigError(f"--tensorboard needs the tensorboard package ({e}); install it with "
                          "`pip install tensorboard` or leave --tensorboard off") from None
    return SummaryWriter


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
    known = {f.name for f in fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in ck["config"].items() if k in known})
    model, schemes = build_quantized(cfg, ck["arch"]["in_channels"], ck["arch"]["num_classes"])
    quantize_model(model, schemes)
    model.load_state_dict(ck["model"])
    return model.eval(), cfg


# ------------------------------------------------------------------ the run directory


class RunLock:
    """An exclusive ``flock`` on ``OUT/.train.lock`` while a run trains there; the file names its holder.

    The OS drops the lock when the process dies, however it dies, so a killed run never leaves a stale lock.
    """

    def __init__(self, out):
        self.path = Path(out) / LOCK_NAME
        self._fd = None

    def acquire(self):
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise ConfigError(f"--out {self.path.parent}: cannot create its lock file {self.path}: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise ConfigError(f"--out {self.path.parent} is in use: a training run ({holder}) holds its lock "
                              f"{self.path}; wait for it to end or choose another --out") from None
        os.ftruncate(fd, 0)
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {stamp}\n".encode())
        self._fd = fd
        return self

    def release(self):
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def check_out_dir(out):
    """``out`` must be a directory that exists or can be made, and that this process can write in."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--out {out} cannot be created: {e.strerror or e}") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"--out {out} is not writable: {e.strerror or e}") from None
    return out


def claim_run_dir(cfg: TrainConfig):
    """Check ``cfg.out`` and lock it for this run (before any data is read). Returns the held :class:`RunLock`.

    A directory holding a run (``checkpoint.pt`` or ``metrics.json``) is refused unless ``resume``
    (which needs its checkpoint) or ``force`` (which deletes the old run's files here, and only those).
    """
    out = check_out_dir(cfg.out)
    lock = RunLock(out).acquire()
    try:
        held = [n for n in RUN_FILES if (out / n).exists()]
        if cfg.resume:
            if not (out / "checkpoint.pt").is_file():
                raise ConfigError(f"--resume: no checkpoint at {out / 'checkpoint.pt'}")
        elif held and not cfg.force:
            raise ConfigError(f"--out {out} already holds a run ({', '.join(held)}); pass --resume to continue it "
                              "or --force to replace it")
        elif cfg.force:
            for n in RUN_FILES:
                with contextlib.suppress(FileNotFoundError):
                    (out / n).unlink()
            if (out / TENSORBOARD_DIR).is_dir():
                shutil.rmtree(out / TENSORBOARD_DIR)
    except BaseException:
        lock.release()
        raise
    return lock


# ------------------------------------------------------------------ data parallel


_OWN_GROUP = []  # the process group _dist() created (ended by _end_dist; a caller's own group is left alone)


def _dist():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
        _OWN_GROUP.append(True)
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world


def _end_dist():
    """Destroy the group _dist() made: a gloo process exiting with a live group can abort (SIGABRT)."""
    if _OWN_GROUP and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    _OWN_GROUP.clear()


class RankSampler:
    """One rank's share of an epoch: every rank gets the same number of *distinct* samples.

    The epoch's permutation (from ``seed`` and the epoch, identical on every rank) is dealt round-robin:
    rank ``r`` of ``W`` takes positions ``r, r+W, r+2W, ...``. The last ``N mod W`` positions are
    **dropped**, so each rank has exactly ``N // W`` samples and no sample is seen twice in an epoch
    (DDP averages the ranks' gradients, so an unequal or padded share would weight some samples more).
    Each epoch drops different samples (at most ``W - 1``). With one process it is the shuffled epoch.
    """

    def __init__(self, n, world=1, rank=0, seed=0):
        if n < world:
            raise ConfigError(f"{n} training samples cannot be shared by {world} processes")
        self.n, self.world, self.rank, self.seed = n, world, rank, seed

    def __len__(self):
        return self.n // self.world

    def indices(self, epoch):
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        perm = torch.randperm(self.n, generator=g)
        return perm[: len(self) * self.world][self.rank::self.world]


@torch.no_grad()
def sync_model(model, world):
    """After an epoch under DDP make every rank hold the same model.

    BatchNorm running statistics (each rank tracked its own, ``broadcast_buffers=False``) become their mean
    over the ranks; then rank 0's parameters and buffers (quantizer state, adapter counters) go to all.
    """
    if world == 1:
        return
    dist = torch.distributed
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            for t in (m.running_mean, m.running_var):
                dist.all_reduce(t)
                t.div_(world)
    for t in model.state_dict().values():
        if t.dtype == torch.bool:  # gloo has no bool
            u = t.to(torch.uint8)
            dist.broadcast(u, 0)
            t.copy_(u.bool())
        else:
            dist.broadcast(t, 0)


# ------------------------------------------------------------------ training


def _param_groups(model, wd):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        # weights of conv/linear layers decay; scales, adapters' biases and BN do not
        is_weight = name.endswith(".weight") and p.dim() > 1 and "adapter_beta" not in name
        (decay if is_weight else no_decay).append(p)
    return [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]


@torch.no_grad()
def _recalibrate_hard_bn(model, split, device, batch_size=256):
    """After the last shift epoch: BatchNorm statistics of the hard network that is evaluated and exported
    (training collected them on the soft staircase; docs/quantization.md). Every rank sees the same
    un-augmented data in the same order, so DDP ranks stay identical."""
    from .layers import recalibrate_bn

    n = len(split)
    recalibrate_bn(model, (to_input(split.batch(range(i, min(n, i + batch_size)))[0]).to(device)
                           for i in range(0, n, batch_size)))


@torch.no_grad()
def evaluate(model, split, batch_size=256, device="cpu"):
    model.eval()
    correct = 0
    for i in range(0, len(split), batch_size):
        x, y = split.batch(range(i, min(len(split), i + batch_size)))
        correct += (model(to_input(x).to(device)).argmax(1).cpu() == y).sum().item()
    return correct / len(split)


def shift_temperature(model):
    """The annealing temperature of the model's shift quantizers (None when it has none)."""
    temps = [float(m.temperature) for m in model.modules() if isinstance(m, ShiftQuantizer)]
    return temps[0] if temps else None


def _progress(enabled):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), disable=not enabled, transient=False)


def _check_resume(cfg, ckpt_path):
    ck = load_checkpoint(ckpt_path)
    old = ck["config"]
    defaults = TrainConfig()
    diff = [k for k in RESUME_KEYS if old.get(k, getattr(defaults, k)) != getattr(cfg, k)]
    if diff:
        raise ConfigError("--resume: checkpoint " + str(ckpt_path) + " was made with other settings: "
                          + ", ".join(f"{k}={old.get(k, getattr(defaults, k))!r} (now {getattr(cfg, k)!r})" for k in diff))
    return ck


def _run_info(cfg, world):
    return {"epochs": cfg.epochs, "wq": cfg.wq, "aq": cfg.aq, "wbits": cfg.wbits, "abits": cfg.abits,
            "model": cfg.model, "data": cfg.data, "seed": cfg.seed, "world_size": world}


def lr_factor(total, restart_steps=0):
    """The learning-rate factor of step ``s``: one cosine to 0 over ``total`` steps, or, with a warm restart,
    a cosine to 0 over the first ``total - restart_steps`` steps and a second one from ``RESTART_LR`` to 0
    over the last ``restart_steps``."""
    main = total - restart_steps

    def f(s):
        if s < main or not restart_steps:
            return 0.5 * (1 + math.cos(math.pi * min(s, main) / main))
        return RESTART_LR * 0.5 * (1 + math.cos(math.pi * min(s - main, restart_steps) / restart_steps))
    return f


def train(cfg: TrainConfig, progress=True, stop_after=None):
    """Train (or resume) a run into ``cfg.out``; returns the metrics dict written to ``metrics.json``.

    Under torchrun only rank 0 checks and locks ``out``, writes files and reports; the other ranks
    return None. ``stop_after`` ends the process's work after that many epochs of this call (used to test
    resume); the run's ``metrics.json`` then says ``stopped``.
    """
    cfg.validate()
    is_rank0 = int(os.environ.get("RANK", "0")) == 0
    lock = claim_run_dir(cfg) if is_rank0 else None
    out = Path(cfg.out)
    state = {"status": "failed"}
    try:
        return _train(cfg, progress, stop_after, out, state)
    except KeyboardInterrupt:
        state["status"] = "interrupted"
        raise
    finally:
        if lock is not None:
            if state.get("status") != "done" and "metrics" in state:
                with contextlib.suppress(Exception):
                    atomic_write_json(out / "metrics.json", state["metrics"] | {"status": state["status"]})
            lock.release()


def _train(cfg, progress, stop_after, out, state):
    ckpt_path = out / "checkpoint.pt"
    resume_ck = _check_resume(cfg, ckpt_path) if cfg.resume else None
    rank, world = _dist()
    if cfg.batch_size % world:
        raise ConfigError(f"--batch-size {cfg.batch_size} is not divisible by the {world} processes")
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if torch.cuda.is_available() else torch.device("cpu")
    torch.manual_seed(cfg.seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    ds = load_dataset(cfg.data, cfg.image_size)

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

    sampler = RankSampler(len(ds.train), world, rank, cfg.seed)
    per_rank = cfg.batch_size // world
    params = _param_groups(model, cfg.weight_decay)
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    steps_per_epoch = math.ceil(len(sampler) / per_rank)
    total = steps_per_epoch * cfg.epochs
    # 2-bit shift activations: a warm restart for the last epochs (docs/quantization.md, "Schedule")
    warm = warm_restart(cfg.aq == "shift", cfg.abits)
    restart = restart_epochs(cfg.epochs, warm)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(total, steps_per_epoch * restart))
    clip = [p for g in opt.param_groups for p in g["params"]] if warm else None
    start_epoch, history = 0, []

    if resume_ck is not None:
        model.load_state_dict(resume_ck["model"])
        opt.load_state_dict(resume_ck["optimizer"])
        sched.load_state_dict(resume_ck["scheduler"])
        start_epoch, history = resume_ck["epoch"], resume_ck["history"]
    else:
        g = torch.Generator().manual_seed(cfg.seed)
        idx = torch.randperm(len(ds.train), generator=g)[: min(len(ds.train), 256)]
        calibrate(model, to_input(ds.train.batch(idx)[0]).to(device))

    net = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                                  broadcast_buffers=False)
    augment = ds.augment if cfg.augment else None
    info = _run_info(cfg, world)
    writer = None
    if rank == 0:
        state["metrics"] = info | {"status": "running", "epochs_done": start_epoch, "history": history}
        atomic_write_json(out / "metrics.json", state["metrics"])
        if cfg.tensorboard:
            writer = _summary_writer_class()(log_dir=str(out / TENSORBOARD_DIR))
    try:
        with _progress(progress and rank == 0) as bar:
            task = bar.add_task(f"{cfg.wq}/{cfg.aq} W{cfg.wbits}A{cfg.abits}", total=(cfg.epochs - start_epoch) * steps_per_epoch, info="")
            for epoch in range(start_epoch, cfg.epochs):
                if stop_after is not None and epoch - start_epoch >= stop_after:
                    state["status"] = "stopped"
                    return None
                anneal(model, epoch, cfg.epochs, restart)
                temp = shift_temperature(model)
                lr = sched.get_last_lr()[0]  # the rate the epoch starts with (cosine to 0 by the last step)
                mine = sampler.indices(epoch)
                aug_gen = torch.Generator().manual_seed((cfg.seed * 100_003 + epoch) * 1_009 + rank)
                net.train()
                loss_sum, seen, correct = 0.0, 0, 0
                for b in range(steps_per_epoch):
                    x, y = ds.train.batch(mine[b * per_rank:(b + 1) * per_rank])
                    if augment:
                        x = augment_batch(x, aug_gen, augment)
                    x, y = to_input(x).to(device), y.to(device)
                    logits = net(x)
                    loss = F.cross_entropy(logits, y)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if clip:
                        torch.nn.utils.clip_grad_norm_(clip, CLIP_NORM)
                    opt.step()
                    sched.step()
                    loss_sum += loss.item() * len(y)
                    seen += len(y)
                    correct += (logits.argmax(1) == y).sum().item()
                    bar.update(task, advance=1, info=f"ep {epoch + 1}/{cfg.epochs} loss {loss_sum / seen:.3f} acc {correct / seen:.3f}")
                if world > 1:
                    t = torch.tensor([loss_sum, seen, correct], dtype=torch.float64, device=device)
                    torch.distributed.all_reduce(t)
                    loss_sum, seen, correct = t.tolist()
                train_loss = loss_sum / seen
                if not math.isfinite(train_loss):
                    raise RootshiftError(f"training diverged: the loss is {train_loss} in epoch {epoch + 1}; "
                                         f"try a lower --lr (now {cfg.lr})")
                dead = None
                if rank == 0:
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always")
                        dead = check_adapters(model, revive=cfg.asq_revive)
                    for w in caught:
                        bar.console.print(f"[yellow]warning:[/] {w.message}")
                sync_model(model, world)
                if epoch == cfg.epochs - 1 and any(isinstance(m, ShiftQuantizer) for m in model.modules()):
                    _recalibrate_hard_bn(model, ds.train, device)
                test_acc = evaluate(model, ds.test, device=device) if rank == 0 else 0.0
                if world > 1:
                    t = torch.tensor([test_acc], dtype=torch.float64, device=device)
                    torch.distributed.broadcast(t, 0)
                    test_acc = t.item()
                history.append({"epoch": epoch + 1, "train_loss": train_loss, "train_acc": correct / seen,
                                "test_acc": test_acc, "lr": lr, "temperature": temp, "dead_adapters": dead})
                if rank != 0:
                    continue
                if progress:
                    bar.console.print(f"epoch {epoch + 1}/{cfg.epochs}: train loss {train_loss:.4f}, "
                                      f"train acc {correct / seen:.4f}, test acc {test_acc:.4f}")
                atomic_torch_save(ckpt_path, {
                    "format": CKPT_FORMAT, "version": CKPT_VERSION, "rootshift": __version__,
                    "config": asdict(cfg) | {"resume": False, "force": False, "tensorboard": False},
                    "arch": model.arch, "schemes": model.schemes,
                    "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "epoch": epoch + 1, "history": history, "dataset": {"name": ds.name, "image_size": ds.image_size},
                })
                state["metrics"] = info | {"status": "running", "epochs_done": epoch + 1, "history": history}
                atomic_write_json(out / "metrics.json", state["metrics"])
                if writer is not None:
                    for key, tag in (("train_loss", "train/loss"), ("train_acc", "train/acc"), ("test_acc", "test/acc"),
                                     ("lr", "lr"), ("temperature", "shift/temperature")):
                        if history[-1][key] is not None:
                            writer.add_scalar(tag, history[-1][key], epoch + 1)
                    writer.flush()
    finally:
        if writer is not None:
            writer.close()
    last = history[-1]
    metrics = {"test_acc": last["test_acc"], "train_loss": last["train_loss"]} | info | {"history": history}
    if world > 1:
        torch.distributed.barrier()
        _end_dist()
    if rank != 0:
        return None
    atomic_write_json(out / "metrics.json", metrics | {"status": "done", "epochs_done": cfg.epochs})
    state["status"] = "done"
    return metrics
