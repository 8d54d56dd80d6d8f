"""ImageNet-style folders: ``root/train/<class>/*.jpeg`` and ``root/val/<class>/*.jpeg``.

Images are decoded in DataLoader workers (they do not fit in memory). Train:
RandomResizedCrop + horizontal flip; evaluation: resize to 1.14x and centre crop.
``val/`` is the test split; validation is held out of ``train/``.

Two costs are paid once, not per epoch or per trial:
- **The file index.** Listing 1.28M files takes minutes on a network disk, and every
  trial and ``smhsearch check`` would do it again. The (path, class) list of each folder
  is cached as JSON under the cache folder (``$SMHSEARCH_CACHE``, else
  ``$XDG_CACHE_HOME/smhsearch``, else ``~/.cache/smhsearch``), keyed by the folder's
  absolute path and the modification times of it and its class folders: adding or
  removing an image changes its class folder's time, so the index is rebuilt.
- **The workers.** Each split keeps one DataLoader per way of batching (train with
  augmentation, evaluation without) with ``persistent_workers``: worker processes start
  once per trial, not at every epoch and evaluation. The batch order is still drawn
  from the caller's generator each epoch, in the main process. Augmentation draws come
  from each worker's own seeded generator, so a resumed run is not bit-identical here
  (in-memory datasets are).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from ._factory import NORMALIZATION, DatasetNotFound, register_dataset
from ._splits import DatasetSplits

log = logging.getLogger(__name__)

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
NORMALIZATION["imagenet"] = (IMAGENET_MEAN, IMAGENET_STD)
INDEX_VERSION = 1


def cache_dir() -> Path:
    """Where smhsearch caches what is slow to recompute (file indexes): ``$SMHSEARCH_CACHE`` or the user's cache folder."""
    if os.environ.get("SMHSEARCH_CACHE"):
        return Path(os.environ["SMHSEARCH_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "smhsearch"


def _index_key(folder: Path) -> str:
    """A digest of ``folder``'s absolute path and the modification times of it and its class folders."""
    h = hashlib.sha256(f"v{INDEX_VERSION}\0{folder.resolve()}\0{folder.stat().st_mtime_ns}".encode())
    with os.scandir(folder) as entries:
        for e in sorted((e for e in entries if e.is_dir()), key=lambda e: e.name):
            h.update(f"\0{e.name}\0{e.stat().st_mtime_ns}".encode())
    return h.hexdigest()[:32]


def folder_index(folder: Path, cache: Path | None = None) -> tuple[list[str], list[tuple[str, int]]]:
    """(class names, (path, class index) of every image) of an ImageFolder ``folder``, from the cache when it is current.

    The scan is torchvision's own (``find_classes`` / ``make_dataset``), so the classes and
    their order are what ``torchvision.datasets.ImageFolder`` would give. An unwritable
    cache folder only costs the rescan next time.
    """
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    path = (cache if cache is not None else cache_dir()) / "imagefolder" / f"{_index_key(folder)}.json"
    try:
        index = json.loads(path.read_text())
        return index["classes"], [(str(folder / rel), c) for rel, c in index["samples"]]
    except (OSError, ValueError, KeyError):
        pass
    classes, class_to_idx = find_classes(str(folder))
    samples = make_dataset(str(folder), class_to_idx, extensions=IMG_EXTENSIONS)
    index = {"root": str(folder.resolve()), "classes": classes,
             "samples": [(os.path.relpath(p, folder), c) for p, c in samples]}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(index))
        os.replace(tmp, path)  # concurrent trials write the same content; the rename is atomic
    except OSError as e:
        log.warning("could not cache the file index of %s in %s: %s", folder, path.parent, e)
    return classes, samples


class _Images(torch.utils.data.Dataset):
    """(image tensor, class) for a list of (path, class); decoding happens in the worker that asks."""

    def __init__(self, samples: list[tuple[str, int]], transform: Callable) -> None:
        self.samples, self.transform = samples, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from torchvision.datasets.folder import default_loader

        path, target = self.samples[i]
        return self.transform(default_loader(path)), target


class _Order(torch.utils.data.Sampler):
    """The indices of one epoch, set by the split before each pass (the loader, and its workers, stay)."""

    def __init__(self, n: int) -> None:
        self.order: list[int] = list(range(n))

    def __iter__(self) -> Iterator[int]:
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)


class FolderSplit:
    """A split of image files, batched by DataLoaders created once and kept (with their workers)."""

    def __init__(self, samples: list[tuple[str, int]], train_transform: Callable, eval_transform: Callable, workers: int) -> None:
        self.samples, self.train_tf, self.eval_tf, self.workers = samples, train_transform, eval_transform, workers
        self._loaders: dict[tuple, tuple[torch.utils.data.DataLoader, _Order]] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def _loader(self, batch_size: int, augment: bool, drop_last: bool, pin: bool,
                generator: torch.Generator | None) -> tuple[Any, _Order]:
        key = (batch_size, augment, drop_last, pin)
        if key not in self._loaders:
            # the workers' augmentation seeds come from the caller's generator, once
            seed = int(torch.randint(0, 2**62, (1,), generator=generator)) if generator is not None and augment else 0
            order = _Order(len(self.samples))
            dataset = _Images(self.samples, self.train_tf if augment else self.eval_tf)
            loader = torch.utils.data.DataLoader(
                dataset, batch_size=batch_size, sampler=order, num_workers=self.workers, pin_memory=pin, drop_last=drop_last,
                persistent_workers=self.workers > 0, generator=torch.Generator().manual_seed(seed))  # seeds the workers
            self._loaders[key] = (loader, order)
        return self._loaders[key]

    def batches(self, batch_size: int, *, shuffle: bool = False, augment: bool = False, generator: torch.Generator | None = None,
                device: torch.device | str = "cpu", drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        from ..device import backend

        device = torch.device(device)
        pin = backend(device).pin_memory
        loader, order = self._loader(batch_size, augment, drop_last, pin, generator)
        n = len(self.samples)
        order.order = torch.randperm(n, generator=generator).tolist() if shuffle else list(range(n))
        for x, y in loader:
            yield x.to(device, non_blocking=pin), y.to(device, non_blocking=pin)

    def close(self) -> None:
        """Stop the worker processes (they also stop when the split is garbage-collected)."""
        self._loaders.clear()


@register_dataset("imagenet")
def imagenet(root: Path | None = None, size: int = 224, val_per_class: int = 10, workers: int | None = None,
             cache: Path | None = None) -> DatasetSplits:
    """An ImageFolder root with train/ and val/; ``size`` is the training crop; ``cache``: where file indexes are kept."""
    if root is None or not (root / "train").is_dir() or not (root / "val").is_dir():
        raise DatasetNotFound(f"imagenet: looked for {root}/train and {root}/val (one folder per class); "
                              "pass root=DIR laid out as torchvision.datasets.ImageFolder expects")
    from torchvision import transforms as T

    classes, samples = folder_index(root / "train", cache)
    test_classes, test_samples = folder_index(root / "val", cache)
    if test_classes != classes:
        raise DatasetNotFound(f"imagenet: {root}/val has {len(test_classes)} class folders and {root}/train {len(classes)}; "
                              "both must hold the same class folders")
    norm = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    train_tf = T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToTensor(), norm])
    eval_tf = T.Compose([T.Resize(int(round(size * 1.14))), T.CenterCrop(size), T.ToTensor(), norm])
    by_class: dict[int, list[int]] = {}
    for i, (_, c) in enumerate(samples):
        by_class.setdefault(c, []).append(i)
    held = {i for idx in by_class.values() for i in idx[:val_per_class]}
    workers = workers if workers is not None else min(8, os.cpu_count() or 1)
    mk = lambda s: FolderSplit(s, train_tf, eval_tf, workers)  # noqa: E731
    return DatasetSplits("imagenet", mk([s for i, s in enumerate(samples) if i not in held]),
                         mk([samples[i] for i in sorted(held)]), mk(test_samples), len(classes), 3, size,
                         f"{val_per_class} images per class of train/ held out as validation")
