"""The width-multiplier baselines of the SMH paper (its Figures 3, 5 and 6).

``WidthMultiplier`` shrinks every layer's channels by alpha, the largest alpha whose real
parameter count fits the budget (bisection, then a fine scan, on the meta device). With
``resolution=True`` the input is up-sampled so the narrow model's FLOPs come back to the base
model's, the paper's stronger baseline. A narrower layer starts wider, so under Adam each layer
trains at ``eta * s'_l / s_l`` (its init std against the base's) and under SGD at the dense
rate. The derivation and its measurements: docs/methods/width.md.
"""

from __future__ import annotations

import copy
import functools
import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from .._budget import Budget, BudgetLike
from .._errors import ConfigError
from .._fvcore import count_flops
from ..models._factory import MODELS, arch_of, create_model
from ..models._meta import on_meta
from ..models._wrappers import Upsampled
from ._base import CompressedModel, MethodConfig, check_seed, register_method, resolve_budget, trainable_count
from ._rates import Optimizer, VariableRate, check_optimizer

ALPHA_STEP = 1 / 512


@dataclass(frozen=True)
class WidthMultiplier(MethodConfig):
    """Every layer's channels times alpha; alpha given, or found from a budget.

    >>> WidthMultiplier(alpha=0.5).to_dict()["alpha"]
    0.5
    """

    method = "width"
    space_options = ("resolution",)
    presets = {"width_res": {"resolution": True}}
    needs_arch = True  # rebuilds the architecture narrower: a registry model, not any nn.Module
    keeps_architecture = False

    budget: BudgetLike | None = None
    alpha: float | None = field(default=None, metadata={"help": "the multiplier itself, instead of a budget"})
    resolution: bool = field(default=False, metadata={"help": "up-sample the input to keep the base model's FLOPs"})
    seed: int = field(default=0, metadata={"help": "seed of the narrow model's initialisation"})

    def __post_init__(self) -> None:
        super().__post_init__()  # the precision fields
        if (self.budget is None) == (self.alpha is None):
            raise ConfigError("budget", "give exactly one of budget and alpha", self.budget, alpha=self.alpha)
        if self.budget is not None:
            Budget.parse(self.budget)
        if self.alpha is not None:
            a = self.alpha
            if isinstance(a, bool) or not isinstance(a, (int, float)) or not (0.0 < a <= 1.0):
                raise ConfigError("alpha", "alpha must lie in (0, 1]", a)
        if not isinstance(self.resolution, bool):
            raise ConfigError("resolution", "resolution must be a bool", self.resolution)
        check_seed(self.seed)


class WidthModel(CompressedModel):
    """A narrower copy of the base architecture (and, for the strong baseline, an input size)."""

    def __init__(self, narrow: nn.Module, config: WidthMultiplier, arch: dict[str, Any], alpha: float, side: int | None) -> None:
        super().__init__(config, arch)
        self.model = narrow
        self.alpha = alpha
        self.side = side
        self._init_std = _stds(narrow)  # at init, before any training or loading
        self._adam_mults: dict[str, float] | None = None  # measured on the first Adam request: SGD never needs the reference

    def variable_rates(self, optimizer: Optimizer) -> dict[str, VariableRate]:
        """Adam: each weight tensor at its init std over the base layer's (module docstring); SGD: the dense rate."""
        check_optimizer(optimizer)
        if optimizer == "sgd":
            return {}
        if self._adam_mults is None:
            with torch.random.fork_rng(devices=[]):  # a fresh init of the base architecture; the global RNG is left as it was
                torch.manual_seed(self.config.seed + 1)
                reference = create_model(self.arch["name"], **self.arch["kwargs"])
            self._adam_mults = _init_ratios(self._init_std, _stds(reference))
        return {f"model.{name}": VariableRate(m) for name, m in self._adam_mults.items()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.side is not None:
            x = F.interpolate(x, size=(self.side, self.side), mode="bilinear", align_corners=False)
        return self.model(x)

    def materialize(self) -> nn.Module:
        dense = copy.deepcopy(self.model)
        return dense if self.side is None else Upsampled(dense, self.side)

    def virtual_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def input_size(self, default: int) -> int:
        return default if self.side is None else self.side

    def describe(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "resolution": self.side}

    def layout(self) -> list[Any]:
        return [self.alpha, self.side]


def _stds(model: nn.Module) -> dict[str, float]:
    """The std of each trainable weight tensor (two or more dimensions, two or more entries) of ``model``. A
    shapes-only build has no std to measure: it gives none."""
    return {name: float(p.detach().double().std()) for name, p in model.named_parameters()
            if p.requires_grad and p.dim() >= 2 and p.numel() >= 2 and not p.is_meta}


def _init_ratios(narrow: dict[str, float], base: dict[str, float]) -> dict[str, float]:
    """Per tensor of ``narrow`` (its init stds): its std over the same tensor's in ``base``, to 2 significant digits
    (so layers alike share a group), where that is not 1. Constant inits (std 0) are left out: the dense rate."""
    out = {}
    for name, s in narrow.items():
        s0 = base.get(name, 0.0)
        ratio = float(f"{s / s0:.2g}") if s > 0.0 and s0 > 0.0 and math.isfinite(s / s0) else 1.0
        if ratio != 1.0:
            out[name] = ratio
    return out


def _count_at(arch: dict[str, Any]) -> Callable[[float], int]:
    kwargs = json.dumps(arch["kwargs"], sort_keys=True)
    return lambda alpha: _count(arch["name"], kwargs, alpha)


@functools.lru_cache(maxsize=4096)
def _count(name: str, kwargs: str, alpha: float) -> int:
    """Trainable parameters of ``name`` at ``width=alpha``, built for its shapes alone; shared by every budget, scope
    and candidate of a process that asks for the same architecture (a space's feasibility check asks hundreds)."""
    with on_meta():
        return trainable_count(create_model(name, **{**json.loads(kwargs), "width": alpha}))


def find_alpha(count: Callable[[float], int], target: int) -> float | None:
    """The alpha on a 1/512 grid whose count is the largest not above ``target`` (None if none is)."""
    grid = lambda i: i * ALPHA_STEP  # noqa: E731
    lo, hi = 1, int(round(1 / ALPHA_STEP))
    if count(grid(lo)) > target:
        return None
    while hi - lo > 1:  # largest grid point with count <= target, if counts were monotone
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(grid(mid)) <= target else (lo, mid)
    best = lo
    for i in range(max(1, lo - 16), min(int(round(1 / ALPHA_STEP)), lo + 16) + 1):  # rounding makes counts a step function
        c = count(grid(i))
        if c <= target and c > count(grid(best)):
            best = i
    return grid(best)


def _plan(model: nn.Module, config: WidthMultiplier) -> int | None:
    """The parameter target ``config``'s budget resolves to (None for a fixed alpha), refused when even the narrowest
    model on the alpha grid is over it: one shapes-only build, what a space's feasibility check needs."""
    arch = arch_of(model)
    if arch is None:
        raise ValueError("WidthMultiplier rebuilds the architecture narrower, so it needs a model from smhsearch.create_model; "
                         "a user nn.Module cannot be widened or narrowed automatically")
    if arch["name"] in MODELS and not MODELS.get(arch["name"]).accepts_width():
        raise ValueError(
            f"WidthMultiplier rebuilds the architecture narrower with width=alpha, and {arch['name']} takes no width "
            "(a user factory can: give it a width parameter)"
        )
    if config.alpha is not None:
        return None
    target = resolve_budget(config.budget, trainable_count(model), "WidthMultiplier")
    smallest = _count_at(arch)(ALPHA_STEP)
    if smallest > target:
        raise ConfigError("budget", f"WidthMultiplier: no alpha in (0, 1] meets the budget: the narrowest model "
                          f"({arch['name']} at alpha={ALPHA_STEP}) has {smallest} parameters", config.budget,
                          got=f"budget={config.budget!r} (= {target})")
    return target


@register_method(WidthMultiplier, planner=_plan)
def _build_width(model: nn.Module, config: WidthMultiplier) -> WidthModel:
    arch = arch_of(model)
    target = _plan(model, config)
    alpha = float(config.alpha) if target is None else find_alpha(_count_at(arch), target)
    torch.manual_seed(config.seed)
    narrow = create_model(arch["name"], **{**arch["kwargs"], "width": alpha})
    side = None
    if config.resolution:
        s0 = MODELS.get(arch["name"]).default_input_size
        shape = (arch["kwargs"]["in_channels"], s0, s0)
        side = int(round(s0 * math.sqrt(count_flops(model, shape) / count_flops(narrow, shape))))
    return WidthModel(narrow, config, arch, alpha, side)
