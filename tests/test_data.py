"""Datasets: the embedded default, every registered loader loads or says how to get it."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from importlib import resources

import numpy as np

import pytest
import torch

from smhsearch.data import DatasetNotFound, list_datasets, load_dataset
from smhsearch.data._splits import random_crop_flip, split_off_val

from .conftest import SHARED_DATA


def test_embedded_default_is_real_and_matches_provenance():
    d = load_dataset("fashion-mnist-small")
    assert (len(d.train), len(d.val), len(d.test)) == (7200, 800, 2000)
    assert (d.num_classes, d.in_channels, d.input_size) == (10, 1, 28)
    labels = torch.cat([d.train.y, d.val.y])
    assert torch.bincount(labels).tolist() == [800] * 10
    assert torch.bincount(d.test.y).tolist() == [200] * 10
    folder = resources.files("smhsearch.data").joinpath("_embedded")
    prov = json.loads(folder.joinpath("PROVENANCE.json").read_text())
    assert hashlib.md5(folder.joinpath("fashion_mnist_small.npz").read_bytes()).hexdigest() == prov["npz_md5"]
    assert "MIT" in folder.joinpath("LICENSE-fashion-mnist").read_text()
    assert 0.2 < d.train.x.float().mean().item() / 255 < 0.4  # real images, not noise


def test_batches_normalise_shuffle_and_cover():
    d = load_dataset("fashion-mnist-small")
    g = torch.Generator().manual_seed(0)
    xs, ys = zip(*d.train.batches(1000, shuffle=True, generator=g))
    x, y = torch.cat(xs), torch.cat(ys)
    assert len(y) == 7200 and abs(x.mean().item()) < 0.1 and abs(x.std().item() - 1) < 0.1
    assert not torch.equal(y, d.train.y) and torch.equal(y.sort().values, d.train.y.sort().values)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a = next(d.train.batches(64, shuffle=True, generator=g1))[1]
    b = next(d.train.batches(64, shuffle=True, generator=g2))[1]
    assert torch.equal(a, b)


def test_crop_flip_is_a_shifted_or_mirrored_copy():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    g = torch.Generator().manual_seed(1)
    out = random_crop_flip(x, 4, g)
    assert out.shape == x.shape
    for b in range(2):  # every nonzero value comes from the same image
        vals = out[b][out[b] != 0]
        assert set(vals.tolist()) <= set(x[b].flatten().tolist())


def _samples(x: torch.Tensor, y: torch.Tensor) -> Counter:
    """The multiset of (image bytes, label) pairs of a split: what it holds, whatever the order."""
    return Counter((bytes(img.numpy().tobytes()), int(lab)) for img, lab in zip(x, y))


def test_split_off_val_partitions_the_indices():
    idx = torch.arange(1000)
    (train, _), (val, _) = split_off_val(idx, idx, 0.25, seed=3)
    t, v = set(train.tolist()), set(val.tolist())
    assert len(v) == 250 and len(t) == 750 == len(train)  # no index twice within a split
    assert not t & v and t | v == set(range(1000))
    assert val.tolist() != list(range(250))  # a seeded permutation, not the first rows
    (_, _), (again, _) = split_off_val(idx, idx, 0.25, seed=3)
    assert torch.equal(again, val)


@pytest.mark.parametrize("fraction", [0.1, 0.25])
def test_validation_and_train_partition_the_training_file(fraction):
    """As documented: validation is held out of the training file, so the two are disjoint and together are that file."""
    d = load_dataset("fashion-mnist-small", val_fraction=fraction)
    with resources.files("smhsearch.data").joinpath("_embedded/fashion_mnist_small.npz").open("rb") as f:
        z = np.load(f)
        file = _samples(torch.from_numpy(z["x_train"]), torch.from_numpy(z["y_train"]))
    train, val = _samples(d.train.x, d.train.y), _samples(d.val.x, d.val.y)
    assert len(d.val) == round(fraction * 8000) and len(d.train) == 8000 - len(d.val)
    assert train + val == file  # every training sample lands in exactly one split, none is made up or dropped
    shared = set(train) & set(val)  # only an image the file itself holds more than once may sit on both sides
    assert all(file[k] > 1 for k in shared), len(shared)
    assert not set(_samples(d.test.x, d.test.y)) & set(file)  # the test split is the file's own test set, none of train


def test_bad_val_fraction():
    with pytest.raises(ValueError, match=r"val_fraction must lie in \(0, 1\)"):
        load_dataset("fashion-mnist-small", val_fraction=1.5)


@pytest.mark.parametrize("name", ["fashion-mnist", "mnist", "cifar10", "cifar100", "imagenet"])
def test_every_dataset_loads_or_says_how(name, tmp_path):
    try:
        d = load_dataset(name, root=tmp_path / "empty")
    except DatasetNotFound as e:
        assert "looked" in str(e) and str(tmp_path / "empty") in str(e)
        assert "download=True" in str(e) or "ImageFolder" in str(e)
    else:  # pragma: no cover - only with data present
        assert len(d.train) > 0


def test_registry_and_unknown_name():
    assert {"fashion-mnist-small", "fashion-mnist", "mnist", "cifar10", "cifar100", "imagenet", "synthetic"} <= set(
        list_datasets()
    )
    with pytest.raises(ValueError, match="unknown dataset 'cifar-10'; nearest: cifar10"):
        load_dataset("cifar-10")


def test_synthetic_shapes():
    d = load_dataset("synthetic", n=80, num_classes=3, in_channels=2, size=12)
    x, y = next(d.train.batches(16))
    assert x.shape == (16, 2, 12, 12) and int(y.max()) < 3


@pytest.mark.skipif(not (SHARED_DATA / "cifar10" / "cifar-10-batches-py").is_dir(),
                    reason="../shared/data/cifar10 is not present (the shared data folder is for developers only)")
def test_cifar10_from_shared_data():
    d = load_dataset("cifar10", root=SHARED_DATA / "cifar10")
    assert (len(d.train) + len(d.val), len(d.test), d.in_channels, d.input_size) == (50_000, 10_000, 3, 32)
    x, _ = next(d.train.batches(8, augment=True, generator=torch.Generator().manual_seed(0)))
    assert x.shape == (8, 3, 32, 32)


@pytest.mark.skipif(not __import__("pathlib").Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="Debian's dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)")
def test_full_fashion_mnist_from_debian():
    d = load_dataset("fashion-mnist")
    assert (len(d.train) + len(d.val), len(d.test)) == (60_000, 10_000)


def _image_folder(root, per_class: dict[str, int]) -> None:
    """A real ImageFolder tree of small PNGs, one folder per class."""
    from PIL import Image

    for i, (cls, n) in enumerate(per_class.items()):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for j in range(n):
            Image.new("RGB", (12, 10), color=(40 * i, 20 * j, 100)).save(root / cls / f"{j}.png")


def test_imagefolder_index_is_cached_and_follows_the_folder(tmp_path):
    from torchvision.datasets import ImageFolder

    from smhsearch.data._imagefolder import folder_index

    _image_folder(tmp_path / "train", {"cat": 5, "dog": 4})
    cache = tmp_path / "cache"
    classes, samples = folder_index(tmp_path / "train", cache)
    reference = ImageFolder(str(tmp_path / "train"))
    assert classes == reference.classes and samples == reference.samples  # torchvision's own scan and order
    [index_file] = (cache / "imagefolder").iterdir()
    index = json.loads(index_file.read_text())
    index["samples"] = index["samples"][1:]  # a doctored index: read back only if the cache is what is used
    index_file.write_text(json.dumps(index))
    assert len(folder_index(tmp_path / "train", cache)[1]) == 8
    _image_folder(tmp_path / "train", {"cat": 6})  # a new image changes its class folder: the index is rebuilt
    assert len(folder_index(tmp_path / "train", cache)[1]) == 10
    unwritable = tmp_path / "file"
    unwritable.write_text("")
    assert len(folder_index(tmp_path / "train", unwritable)[1]) == 10  # no cache: a rescan, no failure


def test_imagefolder_keeps_its_workers_across_epochs(tmp_path):
    _image_folder(tmp_path / "train", {"a": 6, "b": 6})
    _image_folder(tmp_path / "val", {"a": 2, "b": 2})
    d = load_dataset("imagenet", root=tmp_path, size=8, val_per_class=1, workers=1, cache=tmp_path / "cache")
    assert (len(d.train), len(d.val), len(d.test), d.num_classes) == (10, 2, 4, 2)
    g = torch.Generator().manual_seed(0)
    pids = []
    for _ in range(2):  # two epochs
        ys = [y for x, y in d.train.batches(4, shuffle=True, augment=True, generator=g, drop_last=True)]
        assert len(ys) == 2 and all(len(y) == 4 for y in ys)
        [(loader, _)] = d.train._loaders.values()
        pids.append([w.pid for w in loader._iterator._workers])
    assert pids[0] == pids[1] and len(pids[0]) == 1  # the same worker process served both epochs
    x, y = next(d.test.batches(4))
    assert x.shape == (4, 3, 8, 8) and sorted(y.tolist()) == [0, 0, 1, 1]
    _image_folder(tmp_path / "val", {"c": 1})
    with pytest.raises(DatasetNotFound, match="val has 3 class folders and .*train 2"):
        load_dataset("imagenet", root=tmp_path, cache=tmp_path / "cache")
    d.train.close()
