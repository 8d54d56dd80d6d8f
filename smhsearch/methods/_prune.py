"""Global magnitude pruning to a budget of nonzero weights, gradual during training.

The sparsity follows Zhu & Gupta (2017), "To prune, or not to prune":
``s(t) = s_f * (1 - (1 - t)^3)`` for t going from 0 to 1 between the fractions
``start`` and ``end`` of training, in ``steps`` mask updates. At each update the
smallest-magnitude weights across all prunable layers together (global, not per
layer) are masked; a masked weight stays masked. At the end exactly
``budget - unpruned`` prunable weights are nonzero.

The stored count is the nonzero values of the pruned layers plus every unpruned
parameter (batch-norm, and linear layers under scope ``"conv"``). Where the nonzeros
sit is extra: the compact file keeps it as a bitmask of N/8 bytes, which is not
counted as parameters, as in the pruning literature. Before training has got
anywhere (``set_progress`` not yet called) the model is dense and stores everything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .._budget import Budget, BudgetLike
from .._errors import ConfigError
from . import _precision
from ._base import MethodConfig, ReparametrizedModel, plan_budget, register_method, trainable_count
from ._init import init_summary
from ._targets import Scope, ScopeRule, Target, parse_scope, scope_label, select_targets


@dataclass(frozen=True)
class Prune(MethodConfig):
    """Gradual global magnitude pruning (Zhu & Gupta schedule) to ``budget`` stored parameters.

    start, end: fractions of training between which the sparsity rises; steps: mask updates.

    >>> Prune(budget="10%").to_dict()["end"]
    0.75
    """

    method = "prune"
    axes = ("budget", "scope")
    space_options = ("start", "end", "steps")
    # Deep Compression (Han et al. 2016): pruning, then k-means weight sharing whose centroids are trained on
    # (5 bits, the paper's setting for fully-connected layers), then entropy coding of the codes and the mask
    presets = {"deep_compression": {"bits": "kmeans:32", "quant": "qat", "entropy": True}}

    budget: BudgetLike
    scope: Scope | ScopeRule = field(default="all", metadata={"help": "which tensors are pruned"})
    start: float = field(default=0.0, metadata={"help": "fraction of training where sparsity starts rising"})
    end: float = field(default=0.75, metadata={"help": "fraction of training where the budget is reached"})
    steps: int = field(default=20, metadata={"help": "mask updates between start and end"})

    def __post_init__(self) -> None:
        super().__post_init__()  # the precision fields
        Budget.parse(self.budget)
        object.__setattr__(self, "scope", parse_scope(self.scope))
        if not (
            isinstance(self.start, (int, float)) and isinstance(self.end, (int, float)) and 0.0 <= self.start < self.end <= 1.0
        ):
            field = "end" if isinstance(self.start, (int, float)) and 0.0 <= self.start < 1.0 else "start"
            raise ConfigError(field, "0 <= start < end <= 1 must hold", getattr(self, field),
                              got=f"(start={self.start!r}, end={self.end!r})")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ConfigError("steps", "steps must be an int >= 1", self.steps)

    def select(self, model: nn.Module, require: bool = True) -> list[Target]:
        return select_targets(model, self.scope, require=require)


class PruneModel(ReparametrizedModel):
    """The base model's own weights, each multiplied by a 0/1 mask that the schedule tightens."""

    def __init__(self, base: nn.Module, targets: list[Target], config: Prune, keep: int) -> None:
        super().__init__(base, targets, config)
        params = dict(base.named_parameters())
        self.weights = nn.ParameterList([nn.Parameter(params[t.name].detach().clone()) for t in targets])
        self.keep = keep
        self.register_buffer("mask", torch.ones(self.hashed_count, dtype=torch.bool))  # (N,)
        self.register_buffer("level", torch.tensor(0, dtype=torch.int64))  # mask updates applied so far
        # The host's copy of ``level``: set_progress runs every step, and reading the buffer
        # would wait for the GPU each time. None after a state-dict load (read once then).
        self._host_level: int | None = 0

    def _fit(self, weights: list[torch.Tensor]) -> None:
        # its variables are the model's weights themselves, copied at build: the magnitudes it prunes by are the trained ones
        pass

    def nonzeros_at(self, level: int) -> int:
        """Nonzero prunable weights after ``level`` of the ``steps`` updates."""
        t = level / self.config.steps
        return self.hashed_count - round((self.hashed_count - self.keep) * (1.0 - (1.0 - t) ** 3))

    def set_progress(self, fraction: float) -> None:
        c = self.config
        t = (fraction - c.start) / (c.end - c.start)
        level = int(np.clip(np.floor(t * c.steps + 1e-9), 0, c.steps))
        if self._host_level is None:
            self._host_level = int(self.level)
        if level > self._host_level:
            self._prune_to(self.nonzeros_at(level))
            self.level.fill_(level)
            self._host_level = level

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._host_level = None  # the loaded buffer may hold another level

    @torch.no_grad()
    def _prune_to(self, nonzeros: int) -> None:
        flat = torch.cat([w.detach().reshape(-1) for w in self.weights]).abs() * self.mask  # (N,)
        keep_idx = torch.topk(flat, nonzeros, sorted=False).indices
        self.mask.zero_()
        self.mask[keep_idx] = True
        for w, m in zip(self.weights, torch.split(self.mask, self.sizes)):
            w.mul_(m.view(w.shape))

    def dense_weights(self) -> list[torch.Tensor]:
        masks = torch.split(self.mask, self.sizes)
        return [w * m.view(w.shape) for w, m in zip(self.weights, masks)]

    def stored_count(self) -> int:
        return trainable_count(self.base) + int(self.mask.sum())

    def final_stored_count(self) -> int:
        return trainable_count(self.base) + self.keep

    def describe(self) -> dict[str, Any]:
        return {"N": self.hashed_count, "keep": self.keep, "nonzeros": int(self.mask.sum()),
                "sparsity": 1.0 - int(self.mask.sum()) / self.hashed_count, "level": int(self.level),
                "scope": scope_label(self.config.scope), **init_summary(self)}

    def _coded(self) -> list[bool]:
        """Which targets' nonzeros the file stores as codes (uniform or k-means bits; the rest as float32 values)."""
        frozen = self.precision.frozen or {}
        kind = _precision.scheme_of(self.config.bits).kind
        return [kind in ("uniform", "binary", "kmeans") and f"weights.{i}" in frozen for i in range(len(self.weights))]

    def _halved(self) -> list[bool]:
        """Which targets' nonzeros the file keeps as float16 (at 16 bits, the quantised ones; biases stay float32)."""
        half = _precision.scheme_of(self.config.bits).kind == "half"
        return [half and f"weights.{i}" in self.precision.names for i in range(len(self.weights))]

    def compact_state_dict(self) -> dict[str, torch.Tensor]:
        # nonzero values and a bitmask, not dense tensors full of zeros; below 32 bits the quantised targets' nonzeros
        # as packed codes (``values::codes``) with each target's scales or codebook (the precision stage's own encoding)
        state = {k: v for k, v in super().compact_state_dict().items() if not k.startswith("weights.") and k != "mask"}
        coded, scheme = self._coded(), _precision.scheme_of(self.config.bits)
        masks = torch.split(self.mask.cpu(), self.sizes)
        floats, codes, halves, halved = [], [], [], self._halved()
        for i, (w, m) in enumerate(zip(self.weights, masks)):
            if halved[i]:
                halves.append(w.detach().cpu().reshape(-1)[m])
            elif coded[i]:
                try:
                    unsigned, extra = _precision.tensor_codes(w, self.precision.frozen[f"weights.{i}"], scheme)
                except ValueError:
                    raise ValueError(_precision.off_grid(f"weights.{i}", self.config.bits)) from None
                codes.append(unsigned[m.numpy()])
                state.update({f"weights.{i}::{k}": v for k, v in extra.items()})
            else:
                floats.append(w.detach().cpu().reshape(-1)[m])
        state["values"] = torch.cat(floats).contiguous() if floats else torch.zeros(0)
        if halves:  # 16 bits: the quantised targets' nonzeros on their float16 grid, two bytes each
            state["values::f16"] = torch.cat(halves).to(torch.float16).contiguous()
        if codes:
            state["values::codes"] = torch.from_numpy(_precision.pack(np.concatenate(codes), scheme.code_bits))
        state["mask_bits"] = torch.from_numpy(np.packbits(self.mask.cpu().numpy()))
        return state

    def load_compact_state_dict(
        self, tensors: dict[str, torch.Tensor], metadata: dict[str, dict[str, Any]] | None = None
    ) -> None:
        tensors = dict(tensors)
        bits, values = tensors.pop("mask_bits"), tensors.pop("values").cpu()
        halves, halved = tensors.pop("values::f16", torch.zeros(0)).cpu().float(), self._halved()
        mask = torch.from_numpy(np.unpackbits(bits.cpu().numpy())[: self.hashed_count].astype(bool))
        scheme = _precision.scheme_of(self.config.bits)
        coded = [f"weights.{i}::scale" in tensors or f"weights.{i}::codebook" in tensors for i in range(len(self.weights))]
        masks = torch.split(mask, self.sizes)
        n_coded = sum(int(m.sum()) for m, c in zip(masks, coded) if c)
        n_half = sum(int(m.sum()) for m, h in zip(masks, halved) if h)
        if int(mask.sum()) - n_coded - n_half != values.numel() or n_half != halves.numel():
            raise RuntimeError(f"mask has {int(mask.sum()) - n_coded - n_half} float32 and {n_half} float16 nonzeros, but "
                               f"{values.numel()} and {halves.numel()} values are stored")
        codes = _precision.unpack(tensors.pop("values::codes").cpu().numpy(), scheme.code_bits, n_coded) if n_coded else None
        frozen, used_f, used_c, used_h = {}, 0, 0, 0
        for i, (w, m) in enumerate(zip(self.weights, masks)):
            n = int(m.sum())
            if halved[i]:
                chunk = torch.zeros(w.numel())
                chunk[m] = halves[used_h:used_h + n]
                tensors[f"weights.{i}"], frozen[f"weights.{i}"] = chunk.view(w.shape), {}
                used_h += n
            elif coded[i]:
                extra = {
                    k: tensors.pop(f"weights.{i}::{k}")
                    for k in ("scale", "codebook", "segments")
                    if f"weights.{i}::{k}" in tensors
                }
                _, grid = _precision.codes_values(np.zeros(w.numel(), np.uint8), extra, scheme, w.shape)
                full, _ = _precision.nearest_codes(torch.zeros(w.shape), grid, scheme)  # a pruned weight: the code nearest 0
                full[m.numpy()] = codes[used_c:used_c + n]
                tensors[f"weights.{i}"], frozen[f"weights.{i}"] = _precision.codes_values(full, extra, scheme, w.shape)
                used_c += n
            else:
                chunk = torch.zeros(w.numel(), dtype=values.dtype)
                chunk[m] = values[used_f:used_f + n]
                tensors[f"weights.{i}"] = chunk.view(w.shape)
                used_f += n
        tensors["mask"] = mask.to(self.mask.device)
        super().load_compact_state_dict(tensors, metadata)
        if frozen:
            self.mark_quantised(frozen)

    def extra_repr(self) -> str:
        return f"N={self.hashed_count}, keep={self.keep}, level={int(self.level)}/{self.config.steps}"


def _plan(model: nn.Module, config: Prune) -> tuple[list[Target], int]:
    """(targets, nonzeros to keep) for ``config``; a budget the unpruned parameters already fill is refused."""
    plan = plan_budget(model, config.select(model), config.budget, "Prune")
    targets, target, unpruned = plan.targets, plan.budget, plan.rest
    keep = target - unpruned
    if keep < 1:
        raise ConfigError("budget", f"Prune: budget is too small: the unpruned parameters ({unpruned}) leave no nonzero weight "
                          f"to keep; it needs at least {unpruned + 1}", config.budget,
                          got=f"budget={config.budget!r} (= {target})")
    return targets, keep


@register_method(Prune, planner=_plan)
def _build_prune(model: nn.Module, config: Prune) -> PruneModel:
    targets, keep = _plan(model, config)
    return PruneModel(model, targets, config, keep)
