"""Structured Multi-Hashing (Eban, Movshovitz-Attias et al., CVPR 2020, section 3).

All N hashed weights, in the base model's parameter order, are laid row-major into a
virtual n x n matrix (n = ceil(sqrt(N))) represented as U @ V, U: (n, M), V: (M, n).
Weight i of layer l is ``scale_l * (U @ V).flat[offset_l + i]``.

Choices the paper leaves open, and why:
- M = floor((T - unhashed - scales) / 2n): the stored count lands at or under the
  budget T and within 2n of it (the official code also floors).
- U, V ~ N(0, M^-1/4) so each entry of U @ V has unit std; scale_l = the std the base
  model's own initialisation gave layer l, so the compressed model starts where the
  base model would (see ``_targets.init_std`` for constant-initialised tensors).
- The learnable scale multiplies that fixed value by a trainable scalar starting at 1
  (as the official code does), so fixed and learnable start identically.
- One matmul per forward, cut with ``torch.split`` (its backward is one concat): slicing
  one tensor per layer makes backward allocate a full-size gradient per layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch
from torch import nn

from .._budget import Budget, BudgetLike, format_count
from ._base import BudgetPlan, MethodConfig, ReparametrizedModel, check_seed, plan_budget, register_method
from ._targets import Scope, ScopeRule, Target, init_scales, parse_scope, scope_label, select_targets

ScaleMode = Literal["fixed", "learnable"]
SCALES: tuple[str, ...] = get_args(ScaleMode)


@dataclass(frozen=True)
class SMH(MethodConfig):
    """Structured Multi-Hashing to a budget of stored trainable parameters.

    budget: int count, ``"5.3M"``, ``"46K"``, ``"25%"`` or a float fraction of the base.
    scope: ``"all"`` hashes every weight tensor (conv, linear, embedding, attention's
        projections, any other tensor of two or more dimensions) and its bias; ``"conv"``
        only convolutions (depthwise and squeeze-excite 1x1 included), ``"linear"`` only
        ``nn.Linear``; or a :class:`ScopeRule` over parameter names. Normalisation never.
    scale: ``"fixed"`` per-layer scale, or ``"learnable"`` (one trainable scalar a layer).

    >>> SMH(budget="25%", scope="conv", scale="learnable").to_dict()["scope"]
    'conv'
    """

    method = "smh"

    budget: BudgetLike
    scope: Scope | ScopeRule = "all"
    scale: ScaleMode = "fixed"
    seed: int = 0

    def __post_init__(self) -> None:
        Budget.parse(self.budget)
        object.__setattr__(self, "scope", parse_scope(self.scope))
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {', '.join(repr(s) for s in SCALES)}, but got {self.scale!r}")
        check_seed(self.seed)

    def select(self, model: nn.Module, require: bool = True) -> list[Target]:
        return select_targets(model, self.scope, require=require)


@dataclass(frozen=True)
class SMHShape:
    """The sizes :func:`plan_smh` chooses: n, M and the resulting stored count."""

    N: int
    n: int
    M: int
    layers: int
    unhashed: int
    learnable_scales: int

    @property
    def stored(self) -> int:
        return 2 * self.n * self.M + self.learnable_scales + self.unhashed

    @property
    def matmul_flops(self) -> int:
        """Forward FLOPs of U @ V (multiply and add counted apart): 2 n^2 M."""
        return 2 * self.n * self.n * self.M


def plan_smh(plan: BudgetPlan, config: SMH) -> SMHShape:
    """Choose n and M for ``config``."""
    N = sum(t.numel for t in plan.targets)
    n = math.isqrt(N - 1) + 1  # ceil(sqrt(N))
    unhashed, target = plan.rest, plan.budget
    scales = len(plan.targets) if config.scale == "learnable" else 0
    M = (target - unhashed - scales) // (2 * n)
    if M < 1:
        need = unhashed + scales + 2 * n
        raise ValueError(
            f"SMH: budget={config.budget!r} (= {target}) is too small: the unhashed parameters ({unhashed})"
            f"{f', the learnable scales ({scales})' if scales else ''} and one rank of U @ V (2n = {2 * n}) "
            f"need at least {need} ({format_count(need)})"
        )
    return SMHShape(N, n, M, len(plan.targets), unhashed, scales)


class SMHModel(ReparametrizedModel):
    """The module :func:`compress` returns for an :class:`SMH` config."""

    def __init__(self, base: nn.Module, targets: list[Target], config: SMH, shape: SMHShape) -> None:
        super().__init__(base, targets, config)
        self.shape = shape
        g = torch.Generator().manual_seed(config.seed)
        sigma = shape.M ** -0.25  # entries of U @ V then have unit std
        self.U = nn.Parameter(torch.randn(shape.n, shape.M, generator=g) * sigma)  # (n, M)
        self.V = nn.Parameter(torch.randn(shape.M, shape.n, generator=g) * sigma)  # (M, n)
        # The n*n - N entries past the last weight go into one discarded chunk, so the
        # whole cut is one split (whose backward is one concatenation).
        self._split_sizes = self.sizes + [shape.n * shape.n - shape.N]
        with torch.no_grad():
            raw = lambda: list(torch.split((self.U @ self.V).reshape(-1), self._split_sizes)[:-1])  # noqa: E731
            self.register_buffer("scale_init", init_scales(targets, raw))  # (L,)
        if config.scale == "learnable":
            self.scale_gain = nn.Parameter(torch.ones(len(targets)))  # (L,)
        else:
            self.scale_gain = None

    def scales(self) -> torch.Tensor:
        """Per-layer scales in target order, (L,)."""
        return self.scale_init if self.scale_gain is None else self.scale_init * self.scale_gain

    def dense_weights(self) -> list[torch.Tensor]:
        full = self.U @ self.V  # (n, n): the virtual weight matrix, the one matmul
        chunks = torch.split(full.reshape(-1), self._split_sizes)
        s = self.scales().to(full.dtype).unbind()
        return [c.view(t.shape) * s_l for c, t, s_l in zip(chunks, self.targets, s)]

    def variable_names(self) -> list[str]:
        return ["U", "V"]

    def describe(self) -> dict[str, Any]:
        sh = self.shape
        return {"N": sh.N, "n": sh.n, "M": sh.M, "layers": sh.layers, "unhashed": sh.unhashed,
                "matmul_flops": sh.matmul_flops, "scope": scope_label(self.config.scope), "scale": self.config.scale}

    def extra_repr(self) -> str:
        sh = self.shape
        return f"N={sh.N}, n={sh.n}, M={sh.M}, layers={sh.layers}, stored={sh.stored}"


def _plan(model: nn.Module, config: SMH) -> tuple[BudgetPlan, SMHShape]:
    plan = plan_budget(model, config.select(model), config.budget, "SMH")
    return plan, plan_smh(plan, config)


@register_method(SMH, planner=_plan)
def _build_smh(model: nn.Module, config: SMH) -> SMHModel:
    plan, shape = _plan(model, config)
    return SMHModel(model, plan.targets, config, shape)
