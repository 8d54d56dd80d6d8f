"""Per-layer low-rank factorisation to a budget.

Each factorisable tensor the scope selects, seen as a (rows, rest) matrix (a conv weight as
(out, in * k * k)), is ``B @ A`` with B: (rows, r) and A: (r, rest): two thin matrices for a
linear layer, a k x k convolution to r channels then a 1 x 1 convolution for a conv. Biases,
depthwise and grouped convolutions, and any tensor where factorising would not save parameters
stay dense. Ranks are ``r_l = c / (rows_l + cols_l)`` with the largest c that fits the budget,
so every layer counts once and small layers keep their rank; A and B start balanced at the
layer's base init std and train at the geometric middle of their two SGD gains. The derivations
and their measurements: docs/methods/lowrank.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .._budget import Budget, BudgetLike
from .._errors import ConfigError
from ._base import MethodConfig, ReparametrizedModel, check_seed, plan_budget, register_method
from ._init import init_summary, truncated_svd
from ._rates import Optimizer, VariableRate, check_optimizer
from ._targets import Scope, ScopeRule, Target, parse_scope, scope_label, select_targets


@dataclass(frozen=True)
class LowRank(MethodConfig):
    """Factorise every selected weight tensor (conv with groups = 1, linear, ...) as B @ A, ranks set by the budget.

    >>> LowRank(budget="25%").to_dict()["method"]
    'lowrank'
    """

    method = "lowrank"
    axes = ("budget", "scope")

    budget: BudgetLike
    scope: Scope | ScopeRule = field(default="all", metadata={"help": "which tensors are factorised"})
    seed: int = field(default=0, metadata={"help": "seed of the factors"})

    def __post_init__(self) -> None:
        super().__post_init__()  # the precision fields
        Budget.parse(self.budget)
        object.__setattr__(self, "scope", parse_scope(self.scope))
        check_seed(self.seed)

    def select(self, model: nn.Module, require: bool = True) -> list[Target]:
        """The factorisable tensors the scope selects (the budget may still leave some dense)."""
        candidates = [t for t in select_targets(model, self.scope) if factorisable(model, t)]
        if require and not candidates:
            raise ConfigError("scope", "LowRank: scope must select factorisable weights (two or more dimensions, groups=1, "
                              "larger than rank 1)", self.scope, got=f"scope={scope_label(self.scope)!r}, which selects none")
        return candidates


def _matrix(t: Target) -> tuple[int, int]:
    """(rows, cols) of a weight seen as a matrix: (out, in * prod(kernel)); leading dimensions of
    size 1 join the rows, so a positional embedding (1, S, D) is the (S, D) matrix it holds."""
    lead = next((i for i, s in enumerate(t.shape) if s > 1), 0)
    return math.prod(t.shape[: lead + 1]), math.prod(t.shape[lead + 1:])


def factorisable(model: nn.Module, t: Target) -> bool:
    if len(t.shape) < 2:
        return False
    mod = model.get_submodule(t.slots[0][0])
    if getattr(mod, "groups", 1) != 1:
        return False
    rows, cols = _matrix(t)
    return rows * cols > rows + cols  # rank 1 must save something


def ranks_for(targets: list[Target], c: float) -> list[int]:
    """Rank of each target at constant ``c`` (module docstring: ``r = c / (rows + cols)``); 0 means 'left dense'
    (factorising would not save)."""
    out = []
    for t in targets:
        rows, cols = _matrix(t)
        r = max(1, math.floor(c / (rows + cols)))
        out.append(r if r * (rows + cols) < rows * cols else 0)
    return out


def stored_at(targets: list[Target], ranks: list[int], rest: int) -> int:
    return rest + sum(r * sum(_matrix(t)) if r else t.numel for t, r in zip(targets, ranks))


class LowRankModel(ReparametrizedModel):
    """The module :func:`compress` returns for a :class:`LowRank` config."""

    def __init__(self, base: nn.Module, targets: list[Target], ranks: list[int], config: LowRank, c: float) -> None:
        super().__init__(base, targets, config)
        self.ranks, self.c = ranks, c
        g = torch.Generator().manual_seed(config.seed)
        self.A, self.B = nn.ParameterList(), nn.ParameterList()
        self._factor_var: list[float] = []  # sigma^2 of each layer's A and B entries at init, for the rates
        for t, r in zip(targets, ranks):
            rows, cols = _matrix(t)
            sigma = r ** -0.25  # entries of B @ A then have unit std
            A = torch.randn(r, cols, generator=g) * sigma  # (r, in*k*k)
            B = torch.randn(rows, r, generator=g) * sigma  # (out, r)
            realised = float((B @ A).std()) if rows * cols > 1 and not A.is_meta else 1.0  # meta: shapes only
            gain = math.sqrt(t.init_std / realised)
            self.A.append(nn.Parameter(A * gain))
            self.B.append(nn.Parameter(B * gain))
            self._factor_var.append(gain**2 / math.sqrt(r))

    def dense_weights(self) -> list[torch.Tensor]:
        return [(B @ A).view(t.shape) for A, B, t in zip(self.A, self.B, self.targets)]  # one matmul per layer

    def _fit(self, weights: list[torch.Tensor]) -> None:
        # the truncated SVD at each layer's rank (Eckart-Young: the closest rank-r matrix), sqrt(S) on each factor
        for A, B, w, t, r in zip(self.A, self.B, weights, self.targets, self.ranks):
            P, S, Q = truncated_svd(w.reshape(_matrix(t)).double(), r)  # (rows, k), (k,), (cols, k)
            A.zero_()
            B.zero_()
            A[: S.numel()] = (Q * S.sqrt()).T
            B[:, : S.numel()] = P * S.sqrt()

    def variable_names(self) -> list[str]:
        return [n for n, _ in self.named_parameters() if n.startswith(("A.", "B."))]

    def sgd_bounds(self) -> list[tuple[float, float]]:
        """(e_1, e_op) of each layer at init: an SGD step's gain on a gradient unrelated to the factors,
        and on one along their top singular directions (module docstring)."""
        out = []
        for t, r, var in zip(self.targets, self.ranks, self._factor_var):
            rows, cols = _matrix(t)
            out.append((var * math.sqrt(r * (rows + cols)),
                        var * ((math.sqrt(cols) + math.sqrt(r)) ** 2 + (math.sqrt(rows) + math.sqrt(r)) ** 2)))
        return out

    def effective_rates(self, optimizer: Optimizer) -> torch.Tensor:
        """e_l of each layer (module docstring): how far one step at rate eta on A and B moves
        layer l's weights, against the dense step at eta. (L,) float64."""
        check_optimizer(optimizer)
        if optimizer == "sgd":  # between the first step's gain and the operator norm (module docstring)
            return torch.tensor([math.sqrt(first * op) for first, op in self.sgd_bounds()], dtype=torch.float64)
        return torch.tensor([math.sqrt(2 * r * var) for r, var in zip(self.ranks, self._factor_var)], dtype=torch.float64)

    def variable_rates(self, optimizer: Optimizer) -> dict[str, VariableRate]:
        rates = {}
        for i, e in enumerate(self.effective_rates(optimizer).tolist()):
            rates[f"A.{i}"] = rates[f"B.{i}"] = VariableRate(1.0 / e, degree=2)
        return rates

    def describe(self) -> dict[str, Any]:
        return {"c": self.c, "layers": len(self.targets), "ranks": list(self.ranks), "scope": scope_label(self.config.scope),
                **init_summary(self)}

    def layout(self) -> list[Any]:
        return [[t.name, list(t.shape), r] for t, r in zip(self.targets, self.ranks)]

    def extra_repr(self) -> str:
        return f"layers={len(self.targets)}, c={self.c:.1f}, ranks={min(self.ranks)}..{max(self.ranks)}"


@register_method(LowRank)
def _build_lowrank(model: nn.Module, config: LowRank) -> LowRankModel:
    candidates = config.select(model)
    plan = plan_budget(model, candidates, config.budget, "LowRank")
    target, rest = plan.budget, plan.rest
    if stored_at(candidates, ranks_for(candidates, 0.0), rest) > target:
        need = stored_at(candidates, ranks_for(candidates, 0.0), rest)
        raise ConfigError("budget", f"LowRank: budget is too small: rank 1 everywhere, with the other parameters ({rest}), "
                          f"needs {need}", config.budget, got=f"budget={config.budget!r} (= {target})")
    lo, hi = 0.0, float(max(math.prod(_matrix(t)) for t in candidates))  # at hi every layer is dense
    for _ in range(60):  # largest c whose stored count fits
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if stored_at(candidates, ranks_for(candidates, mid), rest) <= target else (lo, mid)
    ranks = ranks_for(candidates, lo)
    chosen = [t for t, r in zip(candidates, ranks) if r]
    return LowRankModel(model, chosen, [r for r in ranks if r], config, lo)
