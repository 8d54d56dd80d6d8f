"""Which tensors a scope selects for hashing, in what order, and their init stds.

Order is the base model's parameter order (``named_parameters()``), which for every
model built in the usual way is the order of creation the SMH paper tiles by.
Batch-norm (and every other normalisation) is never selected: its scale and shift
fold into the next operation at inference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import nn

Scope = Literal["all", "conv"]
SCOPES: tuple[str, ...] = get_args(Scope)


@dataclass(frozen=True)
class Target:
    """One hashed tensor of the base model."""

    name: str
    """Full parameter name in the base model, e.g. ``"layer1.0.conv1.weight"``."""
    slots: tuple[tuple[str, str], ...]
    """Every (module name, attribute) holding this tensor; more than one when weights are tied."""
    shape: tuple[int, ...]
    kind: Literal["conv", "linear"]
    init_std: float
    """The std the base model's own initialisation gave this tensor (see :func:`init_std`)."""

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def check_scope(scope: str) -> None:
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(repr(s) for s in SCOPES)}, but got {scope!r}")


def _kind(module: nn.Module, scope: str) -> Literal["conv", "linear"] | None:
    if isinstance(module, nn.modules.conv._ConvNd):
        return "conv"
    if scope == "all" and isinstance(module, nn.Linear):
        return "linear"
    return None


def init_std(tensor: torch.Tensor, owner: nn.Module) -> float:
    """The std to start a hashed tensor at: the one its base initialisation gave it.

    A tensor whose initialisation is constant (torchvision zero-initialises many
    biases) cannot be matched by products of random variables, and a zero scale would
    freeze it for good; it gets the std of PyTorch's default init for that layer
    instead, ``1 / sqrt(3 * fan_in)`` (uniform on +-1/sqrt(fan_in)).
    """
    if tensor.is_meta:  # shapes only (feasibility checks): there is no value to measure
        return 1.0
    t = tensor.detach().double()
    std = float(t.std()) if t.numel() > 1 else 0.0
    if std > 0.0 and math.isfinite(std):
        return std
    weight = owner._parameters.get("weight")
    fan_in = weight[0].numel() if weight is not None else t.numel()
    return 1.0 / math.sqrt(3.0 * max(fan_in, 1))


def select_targets(model: nn.Module, scope: str, require: bool = False) -> list[Target]:
    """The trainable conv (and, for scope ``"all"``, linear) weights and biases of ``model``.

    With ``require=True`` a model with nothing to hash is a ``ValueError``.

    >>> from smhsearch.models import create_model
    >>> [t.name for t in select_targets(create_model("mlp_1x1000"), "all")]
    ['net.1.weight', 'net.1.bias', 'net.3.weight', 'net.3.bias']
    """
    check_scope(scope)
    owners: dict[int, list[tuple[str, str, nn.Module]]] = {}
    for mod_name, mod in model.named_modules(remove_duplicate=False):
        for attr, p in mod._parameters.items():
            if p is not None:
                owners.setdefault(id(p), []).append((mod_name, attr, mod))
    targets: list[Target] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        slots = owners[id(p)]
        kinds = {_kind(mod, scope) for _, _, mod in slots}
        if None in kinds:  # shared with a module that is not hashed: leave it dense
            continue
        kind = kinds.pop()
        assert kind is not None
        first_owner = slots[0][2]
        targets.append(Target(name, tuple((m, a) for m, a, _ in slots), tuple(p.shape), kind, init_std(p, first_owner)))
    if require and not targets:
        what = "convolution" if scope == "conv" else "convolution or linear"
        raise ValueError(f"the model has no trainable {what} weights to hash (scope={scope!r}); "
                         f"hashable layers are nn.Conv1d/2d/3d{'' if scope == 'conv' else ' and nn.Linear'}")
    return targets


def calibrated_scales(targets: list[Target], raw: list[torch.Tensor]) -> torch.Tensor:
    """Per-layer scales that start each hashed layer at exactly its base init std.

    ``raw[l]`` is layer l's weights before scaling, as the method's variables give them
    at init. Dividing the target std by the std ``raw[l]`` really has (rather than by
    the std it has in expectation) removes the sampling spread a small or
    correlated slice has. Returns a float32 (L,) tensor.
    """
    # a model built on the meta device (shapes only, as `smhsearch check` builds) has no values to calibrate on
    realised = [float(r.detach().double().std()) if r.numel() > 1 and not r.is_meta else 1.0 for r in raw]
    return torch.tensor([t.init_std / (r if r > 0 else 1.0) for t, r in zip(targets, realised)], dtype=torch.float32)
