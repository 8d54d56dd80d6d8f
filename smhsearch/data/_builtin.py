"""The registered datasets.

- ``fashion-mnist-small``: embedded in the package (a real Fashion-MNIST subset, MIT);
  no download, no root. Everything a new user runs first uses it.
- ``fashion-mnist``, ``mnist``: the original idx files under ``root`` (Debian's
  ``dataset-fashion-mnist`` puts Fashion-MNIST in /usr/share/datasets/fashion-mnist,
  the default root), or torchvision's download with ``download=True``.
- ``cifar10``, ``cifar100``: torchvision's loaders (``root``, ``download=True`` online).
- ``imagenet``: an ImageFolder root with ``train/`` and ``val/``.
- ``synthetic``: random images of any shape, for speed tests.

Validation is held out of the training set (``val_fraction``, 10% by default, a fixed
seeded permutation); the official test split is the test split.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import torch

from .._errors import ConfigError
from ._factory import NORMALIZATION, DatasetNotFound, register_dataset
from ._idx import find_idx, read_idx
from ._splits import DatasetSplits, TensorSplit, split_off_val

FASHION_MEAN, FASHION_STD = (0.2860,), (0.3530,)
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
NORMALIZATION.update(
    {
        "fashion-mnist-small": (FASHION_MEAN, FASHION_STD),
        "fashion-mnist": (FASHION_MEAN, FASHION_STD),
        "mnist": (MNIST_MEAN, MNIST_STD),
        "cifar10": (CIFAR10_MEAN, CIFAR10_STD),
        "cifar100": (CIFAR100_MEAN, CIFAR100_STD),
    }
)


def dataset_from_arrays(name: str, xtr, ytr, xte, yte, mean, std, augment: str = "none", classes: int = 10,
                        val_fraction: float = 0.1, notes: str = "") -> DatasetSplits:
    """Splits from uint8 image arrays (N, C, H, W) and integer labels; validation is held out of train."""
    xtr, ytr, xte, yte = (torch.from_numpy(np.require(a, requirements=["C", "W"])) for a in (xtr, ytr, xte, yte))
    (xt, yt), (xv, yv) = split_off_val(xtr, ytr.long(), val_fraction)
    mk = lambda x, y, aug: TensorSplit(x, y, mean, std, aug)  # noqa: E731
    return DatasetSplits(name, mk(xt, yt, augment), mk(xv, yv, "none"), mk(xte, yte.long(), "none"),
                         classes, xtr.shape[1], xtr.shape[2], notes)


def _no_root(name: str, root: Path | None, why: str) -> None:
    if root is not None:
        raise ConfigError("root", f"root does not apply to {name} ({why})", str(root), got=f"root={str(root)!r}")


@register_dataset("fashion-mnist-small")
def fashion_mnist_small(root: Path | None = None, val_fraction: float = 0.1) -> DatasetSplits:
    """8,000 training and 2,000 test images of Fashion-MNIST, shipped in the package."""
    _no_root("fashion-mnist-small", root, "it is embedded in the package")
    with resources.files("smhsearch.data").joinpath("_embedded/fashion_mnist_small.npz").open("rb") as f:
        z = np.load(f)
        arrays = [z["x_train"], z["y_train"], z["x_test"], z["y_test"]]
    return dataset_from_arrays("fashion-mnist-small", *arrays, FASHION_MEAN, FASHION_STD, "none", 10, val_fraction,
                   "embedded subset of Fashion-MNIST (MIT): first 800/class of train, 200/class of test")


def _idx_dataset(name: str, root: Path | None, default_root: Path | None, download: bool, tv_name: str,
                 mean, std, val_fraction: float) -> DatasetSplits:
    root = root or default_root
    stems = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    found = [find_idx(root, s) for s in stems] if root else [None] * 4
    if None in found and download and root:
        import torchvision

        getattr(torchvision.datasets, tv_name)(str(root), train=True, download=True)
        getattr(torchvision.datasets, tv_name)(str(root), train=False, download=True)
        found = [find_idx(root, s) for s in stems]
    if None in found:
        where = root if root else "(no root given)"
        hint = ("apt-get install dataset-fashion-mnist (Debian), or " if name == "fashion-mnist" else "") + \
            f"load_dataset({name!r}, root=DIR, download=True) when online"
        missing = [s for s, f in zip(stems, found) if f is None]
        raise DatasetNotFound(f"{name}: looked in {where} (and its raw/ subfolders) for {', '.join(missing)}; get it with {hint}")
    xtr, ytr, xte, yte = (read_idx(p) for p in found)
    return dataset_from_arrays(name, xtr[:, None], ytr, xte[:, None], yte, mean, std, "none", 10, val_fraction)


@register_dataset("fashion-mnist")
def fashion_mnist(root: Path | None = None, download: bool = False, val_fraction: float = 0.1) -> DatasetSplits:
    """Fashion-MNIST, 60,000 + 10,000 (Debian's files are the default root)."""
    debian = Path("/usr/share/datasets/fashion-mnist")
    return _idx_dataset("fashion-mnist", root, debian if debian.is_dir() else None, download, "FashionMNIST",
                        FASHION_MEAN, FASHION_STD, val_fraction)


@register_dataset("mnist")
def mnist(root: Path | None = None, download: bool = False, val_fraction: float = 0.1) -> DatasetSplits:
    """MNIST, 60,000 + 10,000, from the original idx files."""
    return _idx_dataset("mnist", root, None, download, "MNIST", MNIST_MEAN, MNIST_STD, val_fraction)


def _cifar(
    name: str, tv_name: str, folder: str, root: Path | None, download: bool, val_fraction: float, mean, std, classes
) -> DatasetSplits:
    if root is None or (not (root / folder).is_dir() and not download):
        raise DatasetNotFound(f"{name}: looked for {(root / folder) if root else folder + ' (no root given)'}; "
                              f"pass root=DIR holding {folder}/, or download=True when online")
    if not download:  # before torchvision is imported (a few hundred MB): files too small to be its batches are refused now
        data_files = {"cifar10": [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], "cifar100": ["train", "test"]}[name]
        for f in data_files:
            path = root / folder / f
            if not path.is_file() or path.stat().st_size < 1_000_000:  # each of torchvision's holds 10,000 images or more
                what = "is missing" if not path.is_file() else f"has {path.stat().st_size} bytes"
                raise ValueError(f"{name}: {root / folder} is not a readable {name} folder ({f} {what}); "
                                 f"it must hold torchvision's {folder}/ files unchanged")
    import torchvision

    try:  # torchvision checks each file's md5 before unpickling it: a corrupt folder is a RuntimeError here
        tr = getattr(torchvision.datasets, tv_name)(str(root), train=True, download=download)
        te = getattr(torchvision.datasets, tv_name)(str(root), train=False, download=download)
    except (RuntimeError, OSError, EOFError, ValueError, KeyError) as e:
        raise ValueError(f"{name}: {root / folder} is not a readable {name} folder ({str(e).splitlines()[0]}); "
                         f"it must hold torchvision's {folder}/ files unchanged") from None
    to_nchw = lambda d: np.ascontiguousarray(d.data.transpose(0, 3, 1, 2))  # noqa: E731
    return dataset_from_arrays(name, to_nchw(tr), np.array(tr.targets), to_nchw(te), np.array(te.targets), mean, std, "crop_flip",
                   classes, val_fraction)


@register_dataset("cifar10")
def cifar10(root: Path | None = None, download: bool = False, val_fraction: float = 0.1) -> DatasetSplits:
    """CIFAR-10 through torchvision; augmentation: random crop (pad 4) and horizontal flip."""
    return _cifar("cifar10", "CIFAR10", "cifar-10-batches-py", root, download, val_fraction, CIFAR10_MEAN, CIFAR10_STD, 10)


@register_dataset("cifar100")
def cifar100(root: Path | None = None, download: bool = False, val_fraction: float = 0.1) -> DatasetSplits:
    """CIFAR-100 through torchvision; augmentation as CIFAR-10."""
    return _cifar("cifar100", "CIFAR100", "cifar-100-python", root, download, val_fraction, CIFAR100_MEAN, CIFAR100_STD, 100)


@register_dataset("synthetic")
def synthetic(root: Path | None = None, n: int = 512, num_classes: int = 10, in_channels: int = 3, size: int = 32,
              seed: int = 0) -> DatasetSplits:
    """Random uint8 images with random labels, for speed tests (nothing to learn)."""
    _no_root("synthetic", root, "its images are generated")
    g = torch.Generator().manual_seed(seed)
    mk = lambda m: TensorSplit(torch.randint(0, 256, (m, in_channels, size, size), generator=g, dtype=torch.uint8),  # noqa: E731
                               torch.randint(0, num_classes, (m,), generator=g), (0.5,) * in_channels, (0.25,) * in_channels)
    return DatasetSplits(
        "synthetic", mk(n), mk(max(1, n // 8)), mk(max(1, n // 8)), num_classes, in_channels, size, "random data"
    )
