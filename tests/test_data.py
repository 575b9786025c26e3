"""Dataset readers on small synthetic data in the standard on-disk layouts (CIFAR-10 pickles, image folders)."""

import pickle

import numpy as np
import pytest

from rootshift.sw.data import load_dataset
from rootshift.sw.errors import ConfigError, FormatError
from rootshift.sw.train import TrainConfig, train


def _cifar_dir(root, n=20):
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(d / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
                         b"labels": rng.integers(0, 10, size=n).tolist()}, f)
    return root


def test_cifar10_reader(tmp_path):
    ds = load_dataset(f"cifar10:{_cifar_dir(tmp_path)}")
    assert ds.train.x.shape == (100, 3, 32, 32) and ds.test.x.shape == (20, 3, 32, 32)
    assert ds.train.x.dtype.is_floating_point is False and ds.num_classes == 10


def test_cifar10_missing_and_corrupt(tmp_path):
    root = _cifar_dir(tmp_path)
    (root / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(ConfigError, match="lacks data_batch_3"):
        load_dataset(f"cifar10:{root}")
    (root / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(FormatError, match="data_batch_3 is unreadable"):
        load_dataset(f"cifar10:{root}")


def test_imagefolder_reader_and_training(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 2)):
        for cls in ("cat", "dog"):
            d = tmp_path / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, size=(40, 50, 3), dtype=np.uint8)).save(d / f"{i}.png")
    ds = load_dataset(f"imagefolder:{tmp_path}", image_size=32)
    assert ds.num_classes == 2 and len(ds.train) == 12 and len(ds.test) == 4
    x, y = ds.train.batch([0, 11])
    assert x.shape == (2, 3, 32, 32) and y.tolist() == [0, 1]
    m = train(TrainConfig(data=f"imagefolder:{tmp_path}", image_size=32, model="resnet8", epochs=1, batch_size=4,
                          out=str(tmp_path / "run")), progress=False)
    assert 0 <= m["test_acc"] <= 1


def test_imagefolder_layout_errors(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    with pytest.raises(ConfigError, match="has no val/ directory"):
        load_dataset(f"imagefolder:{tmp_path}")


def _rewrite_batch(root, name, **fields):
    f = root / "cifar-10-batches-py" / name
    with open(f, "rb") as fh:
        d = pickle.load(fh)
    d.update({k.encode(): v for k, v in fields.items()})
    with open(f, "wb") as fh:
        pickle.dump(d, fh)
    return f


@pytest.mark.parametrize("fields, message", [
    ({"labels": [3] * 10}, "data_batch_2 has 20 images but 10 labels"),
    ({"labels": [3] * 30}, "data_batch_2 has 20 images but 30 labels"),
    ({"labels": [0] * 5 + [12] + [0] * 14}, "data_batch_2: label 12 at index 5 is outside 0..9 .1 such labels."),
    ({"labels": [-1] * 20}, "label -1 at index 0 is outside 0..9 .20 such labels."),
    ({"data": np.zeros((20, 3000), np.uint8)}, r"'data' has shape \(20, 3000\), expected \(N, 3072\)"),
    ({"data": np.full((20, 3072), 300)}, "'data' must hold 8-bit pixel values 0..255"),
])
def test_cifar10_contents_are_validated(tmp_path, fields, message):
    root = _cifar_dir(tmp_path)
    _rewrite_batch(root, "data_batch_2", **fields)
    with pytest.raises(FormatError, match=message):
        load_dataset(f"cifar10:{root}")


def test_cifar10_batch_without_labels(tmp_path):
    root = _cifar_dir(tmp_path)
    with open(root / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": [0, 1]}, f)
    with pytest.raises(FormatError, match="test_batch is not a CIFAR-10 batch: it needs 'data' and 'labels', it has data, fine_labels"):
        load_dataset(f"cifar10:{root}")


def _folder(root, n_train=3, n_val=1, size=(20, 24)):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        for cls in ("cat", "dog"):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return root


@pytest.mark.parametrize("corrupt", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\0" * 30])
def test_imagefolder_corrupt_image_is_named(tmp_path, corrupt):
    root = _folder(tmp_path)
    (root / "val" / "dog" / "bad.png").write_bytes(corrupt)
    with pytest.raises(FormatError, match=f"image {root / 'val' / 'dog' / 'bad.png'} cannot be read"):
        load_dataset(f"imagefolder:{root}", image_size=16)


def test_imagefolder_truncated_image_is_named_when_read(tmp_path):
    """A valid header with a cut-off body passes the listing check and fails, named, when decoded."""
    root = _folder(tmp_path)
    good = (root / "train" / "cat" / "0.png").read_bytes()
    (root / "train" / "cat" / "0.png").write_bytes(good[: len(good) // 2])
    ds = load_dataset(f"imagefolder:{root}", image_size=16)
    with pytest.raises(FormatError, match=f"image {root / 'train' / 'cat' / '0.png'} cannot"):
        ds.train.batch([0])


def test_imagefolder_empty_class_directory(tmp_path):
    root = _folder(tmp_path)
    (root / "train" / "bird").mkdir()
    (root / "train" / "bird" / "notes.txt").write_text("no images here")
    with pytest.raises(ConfigError, match=f"class directory {root / 'train' / 'bird'} holds no images"):
        load_dataset(f"imagefolder:{root}", image_size=16)


def test_imagefolder_single_class_is_refused(tmp_path):
    root = _folder(tmp_path)
    import shutil

    shutil.rmtree(root / "train" / "dog")
    shutil.rmtree(root / "val" / "dog")
    with pytest.raises(ConfigError, match="has one class .cat.; a classifier needs two or more"):
        load_dataset(f"imagefolder:{root}", image_size=16)


# ---------------------------------------------------------------- augmentation (issue 8, item 9)

def test_augmentation_kinds_per_dataset(tmp_path):
    assert load_dataset(f"cifar10:{_cifar_dir(tmp_path / 'c')}").augment == "pad-crop-flip"
    assert load_dataset(f"imagefolder:{_folder(tmp_path / 'f')}", image_size=16).augment == "resized-crop-flip"
    assert load_dataset("digits").augment is None


def test_pad_crop_flip_is_a_shifted_or_mirrored_copy():
    import torch

    from rootshift.sw.data import augment_batch

    x = torch.randint(1, 256, (64, 3, 32, 32), dtype=torch.uint8)
    y = augment_batch(x, torch.Generator().manual_seed(0), "pad-crop-flip")
    assert y.shape == x.shape and y.dtype == torch.uint8
    flipped = shifted = 0
    for a, b in zip(x, y):
        hits = []
        for src in (a, a.flip(2)):
            p = torch.nn.functional.pad(src, (4, 4, 4, 4))
            hits += [(src is not a, dy, dx) for dy in range(9) for dx in range(9) if torch.equal(p[:, dy:dy + 32, dx:dx + 32], b)]
        assert hits, "every output is a pad-4 crop of the input or of its mirror"
        flipped += hits[0][0]
        shifted += hits[0][1:] != (4, 4)
    assert 16 < flipped < 48 and shifted > 48  # about half flipped, most shifted
    again = augment_batch(x, torch.Generator().manual_seed(0), "pad-crop-flip")
    assert torch.equal(y, again)  # reproducible from the generator


def test_resized_crop_keeps_shape_and_range():
    import torch

    from rootshift.sw.data import augment_batch

    x = torch.randint(0, 256, (8, 3, 24, 24), dtype=torch.uint8)
    y = augment_batch(x, torch.Generator().manual_seed(1), "resized-crop-flip")
    assert y.shape == x.shape and y.dtype == torch.uint8
    assert not torch.equal(x, y)
    const = torch.full((4, 3, 24, 24), 77, dtype=torch.uint8)  # a crop of a flat image is the same flat image
    assert torch.equal(augment_batch(const, torch.Generator().manual_seed(2), "resized-crop-flip"), const)


def test_augment_off_trains_on_the_plain_images(tmp_path, monkeypatch):
    from rootshift.sw import train as T

    calls = []
    monkeypatch.setattr(T, "augment_batch", lambda x, g, kind: calls.append(kind) or x)
    root = _cifar_dir(tmp_path / "c")
    T.train(T.TrainConfig(data=f"cifar10:{root}", model="resnet8", epochs=1, batch_size=50, out=str(tmp_path / "a")), progress=False)
    assert calls and set(calls) == {"pad-crop-flip"}
    calls.clear()
    T.train(T.TrainConfig(data=f"cifar10:{root}", model="resnet8", epochs=1, batch_size=50, augment=False,
                          out=str(tmp_path / "b")), progress=False)
    assert calls == []
