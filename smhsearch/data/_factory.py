"""The dataset registry and :func:`load_dataset`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from .._registry import Registry
from ._splits import DatasetSplits


class DatasetNotFound(FileNotFoundError):
    """A dataset's files are not where we looked; the message says where and how to get them."""


DATASETS: Registry[Callable[..., DatasetSplits]] = Registry("dataset")


def register_dataset(name: str):
    """Register ``loader(root: Path | None, **kwargs) -> DatasetSplits`` under ``name``."""
    return DATASETS.register(name)


def load_dataset(name: str, root: str | Path | None = None, **kwargs: Any) -> DatasetSplits:
    """Load a registered dataset as train / validation / test splits.

    >>> d = load_dataset("fashion-mnist-small")
    >>> (len(d.train), len(d.val), len(d.test), d.num_classes)
    (7200, 800, 2000, 10)
    """
    loader = DATASETS.get(name)
    return loader(Path(root).expanduser() if root is not None else None, **kwargs)


def list_datasets() -> list[str]:
    return DATASETS.names()


# Per-channel (mean, std) each dataset normalises its [0, 1] pixels with: what a deployed model's
# input must be prepared with, recorded by `smhsearch export`.
NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {}


def normalization(name: str) -> dict | None:
    """How ``name``'s images are prepared for the model: ``x = (pixels / 255 - mean) / std``, or None if unknown.

    >>> normalization("cifar10")["mean"]
    [0.4914, 0.4822, 0.4465]
    """
    if name not in NORMALIZATION:
        return None
    mean, std = NORMALIZATION[name]
    return {"formula": "(pixels / 255 - mean) / std, per channel", "mean": list(mean), "std": list(std)}
