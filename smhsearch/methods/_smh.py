"""Structured Multi-Hashing (Eban, Movshovitz-Attias et al., CVPR 2020, section 3).

All N hashed weights, in the base model's parameter order, are laid row-major into a virtual
n x n matrix (n = ceil(sqrt(N))) represented as U @ V, U: (n, M), V: (M, n); weight i of layer l
is ``scale_l * (U @ V).flat[offset_l + i]``. M is the largest rank whose stored count fits the
budget, and one matmul per forward is cut with ``torch.split`` (its backward is one concatenation).
U and V train at the rate under which one step moves each weight as the dense step does; the
learnable scale's backward (``_Gained``) holds its gain to the same rule, so SMH trains at the
dense model's rate. The paper's open choices, the derivation and its measurements: docs/methods/smh.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import torch
from torch import nn

from .._budget import Budget, BudgetLike, format_count
from .._errors import ConfigError
from ._base import BudgetPlan, MethodConfig, ReparametrizedModel, check_seed, plan_budget, register_method
from ._init import init_summary, truncated_svd
from ._rates import Optimizer, VariableRate, check_optimizer, shared_multiplier
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
    axes = ("budget", "scope", "scale")

    budget: BudgetLike
    scope: Scope | ScopeRule = field(default="all", metadata={"help": "which tensors are hashed"})
    scale: ScaleMode = field(default="fixed", metadata={"help": "per-layer scale: fixed, or one trainable scalar a layer"})
    seed: int = field(default=0, metadata={"help": "seed of U and V"})

    def __post_init__(self) -> None:
        super().__post_init__()  # the precision fields
        Budget.parse(self.budget)
        object.__setattr__(self, "scope", parse_scope(self.scope))
        if self.scale not in SCALES:
            raise ConfigError("scale", f"scale must be one of {', '.join(repr(s) for s in SCALES)}", self.scale)
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
        raise ConfigError("budget", f"SMH: budget is too small: the unhashed parameters ({unhashed})"
                          f"{f', the learnable scales ({scales})' if scales else ''} and one rank of U @ V (2n = {2 * n}) "
                          f"need at least {need} ({format_count(need)})",
                          config.budget, got=f"budget={config.budget!r} (= {target})")
    return SMHShape(N, n, M, len(plan.targets), unhashed, scales)


class _Gained(torch.autograd.Function):
    """W_l = s_l g_l C_l for a learnable scale, with the gain's two rules in the backward (module
    docstring): the gain's gradient is divided by ||s_l C_l||^2, so an SGD step moves W_l along itself
    as the dense step would; C_l's is multiplied by min(1, 1 / g_l^2), so a gain above 1 does not
    raise U and V's step on W_l above the rate rule (a gain below 1 lowers it, by g_l^2). The forward
    is the plain product: the value, and everything computed from it, is unchanged."""

    @staticmethod
    def forward(ctx: Any, chunk: torch.Tensor, s: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(chunk, s, g)
        return chunk * (s * g).to(chunk.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, torch.Tensor]:
        chunk, s, g = ctx.saved_tensors
        c32 = chunk.float()
        g_gain = (grad.float() * c32).sum() / (s * c32.pow(2).sum()).clamp_min(1e-30)  # <G, C> s / ||s C||^2
        g_chunk = grad * (s * torch.where(g.abs() < 1, g, 1 / g)).to(grad.dtype)  # s g min(1, 1/g^2)
        return g_chunk, None, g_gain.to(g.dtype)


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

    def _fit(self, weights: list[torch.Tensor]) -> None:
        # Each layer divided by its RMS, so the SVD weighs every layer's entries alike; U and V the best rank-M
        # product of that virtual matrix (balanced: sqrt of the singular values on each side); then each layer's
        # scale the least-squares one, s_l = <W_l, C_l> / ||C_l||^2, so its fit is unbiased along C_l.
        sh = self.shape
        rms = [float(w.pow(2).mean().sqrt()) or t.init_std or 1.0 for w, t in zip(weights, self.targets)]
        flat = torch.cat([w.reshape(-1) / r for w, r in zip(weights, rms)])  # (N,)
        virtual = torch.cat([flat, flat.new_zeros(sh.n * sh.n - sh.N)]).view(sh.n, sh.n).double()  # (n, n)
        P, S, Q = truncated_svd(virtual, sh.M)  # (n, k), (k,), (n, k), k <= M
        root = S.sqrt()
        U, V = torch.zeros_like(self.U, dtype=torch.float64), torch.zeros_like(self.V, dtype=torch.float64)
        U[:, : S.numel()], V[: S.numel()] = P * root, (Q * root).T
        self.U.copy_(U)
        self.V.copy_(V)
        chunks = torch.split((U @ V).reshape(-1), self._split_sizes)[:-1]
        scales = [r * float((c * f).sum() / c.pow(2).sum().clamp_min(1e-30))
                  for c, f, r in zip(chunks, torch.split(flat.double(), self.sizes), rms)]
        self.scale_init.copy_(torch.tensor(scales))
        if self.scale_gain is not None:
            self.scale_gain.fill_(1.0)

    def scales(self) -> torch.Tensor:
        """Per-layer scales in target order, (L,)."""
        return self.scale_init if self.scale_gain is None else self.scale_init * self.scale_gain

    def dense_weights(self) -> list[torch.Tensor]:
        full = self.U @ self.V  # (n, n): the virtual weight matrix, the one matmul
        chunks = torch.split(full.reshape(-1), self._split_sizes)
        if self.scale_gain is None:
            s = self.scale_init.to(full.dtype).unbind()
            return [c.view(t.shape) * s_l for c, t, s_l in zip(chunks, self.targets, s)]
        s, g = self.scale_init.unbind(), self.scale_gain.unbind()
        return [_Gained.apply(c, s_l, g_l).view(t.shape) for c, t, s_l, g_l in zip(chunks, self.targets, s, g)]

    def variable_names(self) -> list[str]:
        return ["U", "V"]

    def sgd_bounds(self) -> list[tuple[float, float]]:
        """(e_1, e_op) of each layer at init: an SGD step's gain on a gradient unrelated to U and V (the
        first step's), and on one along their top singular directions (module docstring)."""
        sh = self.shape
        s = self.scale_init.detach().double().cpu()  # (L,)
        counts = torch.tensor(self.sizes, dtype=torch.float64)
        s2_mean = float((counts * s**2).sum() / counts.sum())
        first = torch.sqrt(sh.n * s**4 + (sh.N / sh.n) * s**2 * s2_mean)
        op = 2 * sh.M**-0.5 * (math.sqrt(sh.n) + math.sqrt(sh.M)) ** 2 * s**2  # s_l^2 (||U||^2 + ||V||^2)
        return list(zip(first.tolist(), op.tolist()))

    def effective_rates(self, optimizer: Optimizer) -> torch.Tensor:
        """e_l of each layer (module docstring): how far one step at rate eta on U and V moves
        layer l's weights, against the dense step at eta. (L,) float64."""
        check_optimizer(optimizer)
        if optimizer == "adamw":
            return math.sqrt(2.0) * self.shape.M**0.25 * self.scale_init.detach().double().cpu()
        return torch.tensor([first for first, _ in self.sgd_bounds()], dtype=torch.float64)  # the first step's (docstring)

    def training_form(self) -> dict[str, str]:
        if self.scale_gain is None:
            return {}
        return {
            "scale_gain": "SGD step along W_l as the dense step (gradient / ||s_l C_l||^2); "
            "U, V's step at gain g_l: min(1, 1/g_l^2) of plain"
        }

    def variable_rates(self, optimizer: Optimizer) -> dict[str, VariableRate]:
        m = shared_multiplier(self.effective_rates(optimizer), self.sizes, [t.slots[0][0] for t in self.targets])
        return {"U": VariableRate(m, degree=2), "V": VariableRate(m, degree=2)}

    def describe(self) -> dict[str, Any]:
        sh = self.shape
        return {"N": sh.N, "n": sh.n, "M": sh.M, "layers": sh.layers, "unhashed": sh.unhashed,
                "matmul_flops": sh.matmul_flops, "scope": scope_label(self.config.scope), "scale": self.config.scale,
                **init_summary(self)}

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
