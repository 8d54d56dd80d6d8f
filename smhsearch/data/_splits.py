"""Splits of a dataset and how batches come out of them.

Small datasets (everything but ImageNet) are held whole as uint8 tensors, moved once to
the training device, and batched there: shuffling, normalisation and augmentation
(random crop with padding, horizontal flip) are batched tensor ops, so an epoch is not
bound by a data loader. Random draws come from a CPU generator the caller seeds, so a
run is reproducible on any device; an epoch's draws (order, crop offsets, flips) go to
the device in one copy each, so no batch waits on the host.

On XLA (lazy tensors, one compiled graph per distinct step) batches are made on the host
and copied one by one: slicing a device-held split at a different offset each step would
make every step a new graph to compile. Each batch's tensors are the ones the CPU gives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Literal, Protocol, Sequence

import torch

Augment = Literal["none", "crop_flip"]


class Split(Protocol):
    def __len__(self) -> int: ...

    def batches(self, batch_size: int, *, shuffle: bool = False, augment: bool = False, generator: torch.Generator | None = None,
                device: torch.device | str = "cpu", drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...


def crop_flip_draws(n: int, pad: int, gen: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random (row offset, column offset, flip) for ``n`` images, drawn on the CPU from ``gen``. Each (n,)"""
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    return oy, ox, flip


def random_crop_flip(x: torch.Tensor, pad: int, gen: torch.Generator | None = None,
                     draws: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Zero-pad by ``pad``, crop back to the input size at a random offset, flip half. (B, C, H, W)

    ``draws`` (from :func:`crop_flip_draws`, already on ``x``'s device) replace drawing
    from ``gen``: a split draws a whole epoch's at once, so a GPU batch does not wait
    for a host-to-device copy of its offsets.
    """
    B, C, H, W = x.shape
    oy, ox, flip = draws if draws is not None else (t.to(x.device) for t in crop_flip_draws(B, pad, gen))
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    rows = oy[:, None] + torch.arange(H, device=x.device)  # (B, H)
    cols = ox[:, None] + torch.arange(W, device=x.device)  # (B, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    b = torch.arange(B, device=x.device)[:, None, None]
    out = xp.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


@dataclass
class TensorSplit:
    """A split held as uint8 images (N, C, H, W) and int64 labels (N,)."""

    x: torch.Tensor
    y: torch.Tensor
    mean: Sequence[float]
    std: Sequence[float]
    augment: Augment = "none"
    _device_copy: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.x.dtype != torch.uint8 or self.x.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), but got {self.x.dtype} {tuple(self.x.shape)}")
        if len(self.x) != len(self.y):
            raise ValueError(f"{len(self.x)} images but {len(self.y)} labels")

    def __len__(self) -> int:
        return len(self.x)

    def on(self, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
        """The tensors on ``device``, moved once and kept there."""
        key = str(torch.device(device))
        if key not in self._device_copy:
            self._device_copy.clear()
            self._device_copy[key] = (self.x.to(device), self.y.to(device))
        return self._device_copy[key]

    def batches(self, batch_size: int, *, shuffle: bool = False, augment: bool = False, generator: torch.Generator | None = None,
                device: torch.device | str = "cpu", drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        target = torch.device(device)
        on_host = target.type == "xla"  # see the module's docstring: every step the same graph
        x, y = (self.x, self.y) if on_host else self.on(target)
        n = len(x)
        order = torch.randperm(n, generator=generator).to(x.device) if shuffle else torch.arange(n, device=x.device)
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        stop = n - n % batch_size if drop_last else n
        crop = augment and self.augment == "crop_flip"
        draws = [t.to(x.device) for t in crop_flip_draws(n, 4, generator)] if crop else []  # (n,) each, one copy an epoch
        for i in range(0, stop, batch_size):
            idx = order[i : i + batch_size]
            xb = (x[idx].float() / 255.0 - mean) / std  # (B, C, H, W)
            if crop:
                xb = random_crop_flip(xb, 4, draws=tuple(d[i : i + len(idx)] for d in draws))
            yield (xb.to(target), y[idx].to(target)) if on_host else (xb, y[idx])


@dataclass
class DatasetSplits:
    """Train / validation / test splits and what a model needs to know of them.

    Selection (early stopping, search) uses ``val``; accuracy is reported on ``test``.
    """

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    in_channels: int
    input_size: int
    notes: str = ""

    def describe(self) -> dict:
        return {
            "name": self.name,
            "train": len(self.train),
            "val": len(self.val),
            "test": len(self.test),
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "input_size": self.input_size,
            "notes": self.notes,
        }


def split_off_val(x: torch.Tensor, y: torch.Tensor, fraction: float, seed: int = 0) -> tuple[tuple, tuple]:
    """Hold out ``fraction`` of a training set as validation, by a fixed seeded permutation."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"val_fraction must lie in (0, 1), but got {fraction}")
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_val = max(1, int(round(fraction * len(x))))
    val, train = perm[:n_val].sort().values, perm[n_val:].sort().values
    return (x[train], y[train]), (x[val], y[val])
