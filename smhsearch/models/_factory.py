"""The architecture registry and :func:`create_model`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from .._registry import Registry
from ._external import resolve
from ._weights import Head, WeightsError, load_weights

ARCH_ATTR = "smhsearch_arch"
"""Attribute set on every model :func:`create_model` builds: ``{"name": ..., "kwargs": {...}}``.

It lets a compact file record how to rebuild the architecture without pickling code.
"""


@dataclass(frozen=True)
class ModelEntry:
    builder: Callable[..., nn.Module]
    family: str
    default_num_classes: int
    default_input_size: int | None
    """Side of the square input the architecture was designed for (pixels); None where it is not known (a user factory)."""
    default_in_channels: int = 3
    doc: str = ""
    takes_image_size: bool = False
    """Built for one input size (``image_size=``): the dataset's side is passed to it."""
    takes_width: bool | None = None
    """Takes ``width=`` (the width multiplier); None: the builder's signature says."""

    def accepts_width(self) -> bool:
        import inspect

        return self.takes_width if self.takes_width is not None else "width" in inspect.signature(self.builder).parameters


IMAGE_SIZE_FAMILIES = ("mlp", "vit", "vit_cifar")
"""Families built for one input size (``image_size=``): the dataset's side is passed to them."""

MODELS: Registry[ModelEntry] = Registry("architecture", resolver=lambda name: (lambda d: d and ModelEntry(**d))(resolve(name)))
"""Registered names, and on look-up ``timm/<name>`` and ``package.module:factory(...)`` (:mod:`._external`)."""


def register_model(name: str, *, family: str, num_classes: int, input_size: int, in_channels: int = 3, doc: str = ""):
    """Register ``builder(num_classes=, in_channels=, **kwargs) -> nn.Module`` under ``name``."""

    def deco(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        MODELS.add(name, ModelEntry(builder, family, num_classes, input_size, in_channels, doc or (builder.__doc__ or "").strip(),
                                    takes_image_size=family in IMAGE_SIZE_FAMILIES))
        return builder

    return deco


def create_model(name: str, num_classes: int | None = None, in_channels: int | None = None, *,
                 weights: str | os.PathLike | None = None, head: Head = "keep", **kwargs: Any) -> nn.Module:
    """Build an architecture by registry name, ``timm/<name>`` or ``package.module:factory``: freshly
    initialised, or holding the trained weights of the file ``weights``.

    ``num_classes`` and ``in_channels`` default to the architecture's own (1000 and 3 for
    the ImageNet models, 10 and 3 for the CIFAR ResNets, 10 and 1 for the MLPs). A timm
    model or a user factory (:mod:`smhsearch.models._external`) is imported when named.

    >>> m = create_model("resnet32")
    >>> sum(p.numel() for p in m.parameters())
    464154
    """
    entry = MODELS.get(name)
    num_classes = entry.default_num_classes if num_classes is None else int(num_classes)
    in_channels = entry.default_in_channels if in_channels is None else int(in_channels)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, but got {num_classes}")
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, but got {in_channels}")
    model = entry.builder(num_classes=num_classes, in_channels=in_channels, **kwargs)
    if not isinstance(model, nn.Module):
        raise ValueError(f"{name}: its builder returned a {type(model).__name__}, not an nn.Module")
    setattr(model, ARCH_ATTR, {"name": name, "kwargs": {"num_classes": num_classes, "in_channels": in_channels, **kwargs}})
    if weights is not None:
        load_weights(model, weights, head)
    elif head != "keep":
        raise WeightsError(f"head={head!r} applies only with weights=FILE")
    return model


def scale_width(channels: int, width: float) -> int:
    """``channels * width`` rounded, at least 1: the width multiplier of the CIFAR ResNets and MLPs."""
    if not 0.0 < width <= 1.0:
        raise ValueError(f"width must lie in (0, 1], but got {width}")
    return max(1, int(round(channels * width)))


def list_models(family: str | None = None) -> list[str]:
    """Registered architecture names, optionally of one family (``"resnet_cifar"``, ``"efficientnet"``, ...)."""
    return [n for n in MODELS.names() if family is None or MODELS.get(n).family == family]


def model_info(name: str) -> ModelEntry:
    """The registry entry of ``name`` (family, default classes and input size)."""
    return MODELS.get(name)


def arch_of(model: nn.Module) -> dict[str, Any] | None:
    """How ``model`` was built by :func:`create_model`, or ``None`` for a user module."""
    return getattr(model, ARCH_ATTR, None)
