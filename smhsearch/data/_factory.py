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
