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
