"""ImageNet-style folders: ``root/train/<class>/*.jpeg`` and ``root/val/<class>/*.jpeg``.

Images are decoded by torchvision's ImageFolder in DataLoader workers (they do not fit
in memory). Train: RandomResizedCrop + horizontal flip; evaluation: resize to 1.14x
and centre crop. ``val/`` is the test split; validation is held out of ``train/``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import torch

from ._factory import NORMALIZATION, DatasetNotFound, register_dataset
from ._splits import DatasetSplits

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
NORMALIZATION["imagenet"] = (IMAGENET_MEAN, IMAGENET_STD)


class FolderSplit:
    def __init__(self, dataset, train_transform, eval_transform, workers: int) -> None:
        self.dataset, self.train_tf, self.eval_tf, self.workers = dataset, train_transform, eval_transform, workers

    def __len__(self) -> int:
        return len(self.dataset)

    def batches(self, batch_size: int, *, shuffle: bool = False, augment: bool = False, generator: torch.Generator | None = None,
                device: torch.device | str = "cpu", drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        base = self.dataset.dataset if isinstance(self.dataset, torch.utils.data.Subset) else self.dataset
        base.transform = self.train_tf if augment else self.eval_tf
        loader = torch.utils.data.DataLoader(self.dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
                                             num_workers=self.workers, pin_memory=torch.device(device).type == "cuda",
                                             drop_last=drop_last, persistent_workers=False)
        for x, y in loader:
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


@register_dataset("imagenet")
def imagenet(root: Path | None = None, size: int = 224, val_per_class: int = 10, workers: int | None = None) -> DatasetSplits:
    """An ImageFolder root with train/ and val/; ``size`` is the training crop."""
    if root is None or not (root / "train").is_dir() or not (root / "val").is_dir():
        raise DatasetNotFound(f"imagenet: looked for {root}/train and {root}/val (one folder per class); "
                              "pass root=DIR laid out as torchvision.datasets.ImageFolder expects")
    from torchvision import datasets, transforms as T

    norm = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    train_tf = T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToTensor(), norm])
    eval_tf = T.Compose([T.Resize(int(round(size * 1.14))), T.CenterCrop(size), T.ToTensor(), norm])
    full = datasets.ImageFolder(str(root / "train"))
    test = datasets.ImageFolder(str(root / "val"))
    by_class: dict[int, list[int]] = {}
    for i, (_, c) in enumerate(full.samples):
        by_class.setdefault(c, []).append(i)
    val_idx = sorted(i for idx in by_class.values() for i in idx[:val_per_class])
    held = set(val_idx)
    train_idx = [i for i in range(len(full)) if i not in held]
    workers = workers if workers is not None else min(8, os.cpu_count() or 1)
    mk = lambda ds: FolderSplit(ds, train_tf, eval_tf, workers)  # noqa: E731
    val_set = datasets.ImageFolder(str(root / "train"))
    return DatasetSplits("imagenet", mk(torch.utils.data.Subset(full, train_idx)), mk(torch.utils.data.Subset(val_set, val_idx)),
                         mk(test), len(full.classes), 3, size, f"{val_per_class} images per class of train/ held out as validation")
