"""Datasets as train / validation / test splits, behind a registry.

>>> from smhsearch.data import load_dataset, list_datasets
>>> "fashion-mnist-small" in list_datasets()
True
"""

from . import _builtin, _imagefolder  # noqa: F401  (registration)
from ._builtin import dataset_from_arrays
from ._factory import DATASETS, DatasetNotFound, list_datasets, load_dataset, normalization, register_dataset
from ._splits import DatasetSplits, Split, TensorSplit

__all__ = [
    "DATASETS",
    "DatasetNotFound",
    "DatasetSplits",
    "dataset_from_arrays",
    "Split",
    "TensorSplit",
    "list_datasets",
    "load_dataset",
    "normalization",
    "register_dataset",
]
