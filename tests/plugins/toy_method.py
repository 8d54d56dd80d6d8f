"""A compression method that smhsearch's own code knows nothing of: a user's plugin.

``ToyShare`` computes every hashed weight as ``scale_l * pool[(stride * i) % P]``: weight
sharing by a modulo map. It exists to prove that one file and one registration make a
method work from YAML, the command line and the contract suite. Import it (or name it
in a space's ``plugins`` or ``$SMHSEARCH_PLUGINS``) to register it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from smhsearch.methods import MethodConfig, ReparametrizedModel, register_method, select_targets
from smhsearch.methods._base import check_seed, plan_budget
from smhsearch.methods._targets import calibrated_scales, parse_scope


@dataclass(frozen=True)
class ToyShare(MethodConfig):
    method = "toyshare"
    axes = ("budget", "scope")
    space_options = ("stride",)
    presets = {"toyshare3": {"stride": 3}}

    budget: int | float | str
    scope: str = field(default="all", metadata={"help": "which tensors are shared"})
    stride: int = field(default=1, metadata={"help": "step of the modulo map"})
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "scope", parse_scope(self.scope))
        if isinstance(self.stride, bool) or not isinstance(self.stride, int) or self.stride < 1:
            raise ValueError(f"stride must be an int >= 1, but got {self.stride!r}")
        check_seed(self.seed)


class ToyShareModel(ReparametrizedModel):
    def __init__(self, base: nn.Module, targets, config: ToyShare, pool: int) -> None:
        super().__init__(base, targets, config)
        g = torch.Generator().manual_seed(config.seed)
        self.pool = nn.Parameter(torch.randn(pool, generator=g))
        self.register_buffer("index", (torch.arange(self.hashed_count) * config.stride) % pool, persistent=False)
        with torch.no_grad():
            self.register_buffer("scale", calibrated_scales(self.targets, list(torch.split(self.pool[self.index], self.sizes))))

    def dense_weights(self):
        chunks = torch.split(self.pool[self.index], self.sizes)
        return [c.view(t.shape) * s for c, t, s in zip(chunks, self.targets, self.scale.unbind())]

    def variable_names(self):
        return ["pool"]


@register_method(ToyShare)
def _build(model: nn.Module, config: ToyShare, cls: type[ToyShareModel] = ToyShareModel) -> ToyShareModel:
    plan = plan_budget(model, select_targets(model, config.scope, require=True), config.budget, "ToyShare")
    pool = plan.budget - plan.rest
    if pool < 1:
        raise ValueError(f"ToyShare: budget={config.budget!r} leaves no room for a pool beside {plan.rest} unhashed parameters")
    return cls(model, plan.targets, config, pool)
