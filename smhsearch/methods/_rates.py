"""Learning rates that follow the parametrisation: the rule every method's variables train by.

A compressed model computes its weights w from variables theta (SMH's U and V, a hash pool,
low-rank factors). The rule: at the dense model's learning rate, one optimizer step moves each
computed weight tensor by as much as the same step moves the dense model's, so one learning rate,
the dense model's, trains every method fairly. Each method derives its variables' multipliers
(SGD and Adam differ) and this module turns them into optimizer groups; weight decay is scaled
so each computed weight shrinks as a dense one does, and gains train at the dense rate without
decay. The derivation and its measurements: docs/methods/rates.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Sequence, get_args

import torch
from torch import nn

Optimizer = Literal["sgd", "adamw"]
OPTIMIZERS: tuple[str, ...] = get_args(Optimizer)


@dataclass(frozen=True)
class VariableRate:
    """How one of a method's variables is trained: its learning-rate multiplier and its degree."""

    lr_mult: float
    """Multiplies the dense learning rate (the rule above)."""
    degree: int = 1
    """The weights are homogeneous of this degree in the variable (U @ V: 2, a pool: 1)."""

    def __post_init__(self) -> None:
        v = self.lr_mult
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
            raise ValueError(f"lr_mult must be a finite number > 0, but got {v!r}")
        if isinstance(self.degree, bool) or not isinstance(self.degree, int) or self.degree < 1:
            raise ValueError(f"degree must be an int >= 1, but got {self.degree!r}")


def check_optimizer(optimizer: str) -> None:
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(repr(o) for o in OPTIMIZERS)}, but got {optimizer!r}")


def shared_multiplier(rates: torch.Tensor | Sequence[float], counts: Sequence[int], layers: Sequence[str]) -> float:
    """1 / the mean over layers of per-tensor effective rates e_l (module docstring).

    ``counts`` weight the tensors within a layer; ``layers`` names each tensor's layer (its
    module), and every layer counts once.

    >>> shared_multiplier([0.5, 0.5, 2.0], [100, 10, 1], ["fc1", "fc1", "fc2"])
    0.8
    """
    e = torch.as_tensor(rates, dtype=torch.float64)
    per_layer: dict[str, list[float]] = {}
    for e_l, n, layer in zip(e.tolist(), counts, layers, strict=True):
        acc = per_layer.setdefault(layer, [0.0, 0.0])
        acc[0] += e_l * n
        acc[1] += n
    mean = sum(a / n for a, n in per_layer.values()) / max(1, len(per_layer))
    if not (math.isfinite(mean) and mean > 0):
        raise ValueError(f"effective rates must be finite and positive on average, but got a mean of {mean!r}")
    return 1.0 / mean


def _variable_rates(model: nn.Module, optimizer: str) -> dict[str, VariableRate]:
    rates = getattr(model, "variable_rates", None)
    return dict(rates(optimizer)) if callable(rates) else {}


def param_groups(model: nn.Module, lr: float, weight_decay: float = 0.0, optimizer: Optimizer = "sgd",
                 variable_lr_mult: float = 1.0) -> list[dict[str, Any]]:
    """torch.optim parameter groups that train ``model``'s variables at their own right rates.

    Works for any ``nn.Module``: a dense model gets two groups, ``decay`` (tensors of two
    or more dimensions) and ``no_decay`` (biases, normalisation, scales). A compressed
    model adds one ``variables:...`` group per distinct rule, at ``lr * m * variable_lr_mult``
    and weight decay ``weight_decay / (degree * m)`` (module docstring). Empty groups are
    left out; every group carries its ``name`` and ``lr_mult``.

    >>> import torch, smhsearch
    >>> m = smhsearch.compress(smhsearch.create_model("mlp", hidden=[64]), smhsearch.SMH(budget="25%"))
    >>> opt = torch.optim.AdamW(param_groups(m, lr=1e-3, weight_decay=1e-2, optimizer="adamw"))
    >>> [g["name"] for g in opt.param_groups]
    ['variables:U,V']
    """
    check_optimizer(optimizer)
    for key, v in (("lr", lr), ("variable_lr_mult", variable_lr_mult)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
            raise ValueError(f"{key} must be a finite number > 0, but got {v!r}")
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or not weight_decay >= 0:
        raise ValueError(f"weight_decay must be a number >= 0, but got {weight_decay!r}")
    rates = _variable_rates(model, optimizer)
    for name in getattr(model, "variable_names", lambda: [])():
        rates.setdefault(name, VariableRate(1.0))
    dense: dict[str, list[nn.Parameter]] = {"decay": [], "no_decay": []}
    variables: dict[VariableRate, list[tuple[str, nn.Parameter]]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name in rates:
            variables.setdefault(rates[name], []).append((name, p))
        else:
            dense["decay" if p.ndim >= 2 else "no_decay"].append(p)
    unknown = sorted(set(rates) - {n for group in variables.values() for n, _ in group})
    if unknown:
        raise ValueError(
            f"{type(model).__name__}.variable_rates names {unknown}, which are not trainable parameters of the model"
        )
    groups = [{"params": ps, "lr": lr, "weight_decay": weight_decay if key == "decay" else 0.0, "name": key, "lr_mult": 1.0}
              for key, ps in dense.items() if ps]
    for rate, named in variables.items():
        groups.append({"params": [p for _, p in named], "lr": lr * rate.lr_mult * variable_lr_mult,
                       "weight_decay": weight_decay / (rate.degree * rate.lr_mult),
                       "name": "variables:" + ",".join(n for n, _ in named), "lr_mult": rate.lr_mult * variable_lr_mult})
    return groups
