"""HashedNets (Chen et al., ICML 2015) and the SMH paper's K-hash baseline (its Table 1).

Each hashed weight i is ``scale_l * sum_k xi_k(i) * pool_k[h_k(i)]``: K independent hash
functions, each into its own sub-pool, with independent sign hashes; per-layer pools (Chen et
al., the default) or one pool for the model (``per_layer=False``, the SMH paper's baseline, with
a per-layer scale). Each (k, role) pair hashes with its own salt, so K hashes never collapse into
one. The hash (splitmix64 in NumPy) is the same on every machine, so a compact file keeps only the
pool and the seed; the gather is one ``index_select``. The pools train at the rate of the rule in
``_rates.py``; the derivation and its measurements: docs/methods/hashednets.md.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .._budget import Budget, BudgetLike
from .._errors import ConfigError
from ._base import MethodConfig, ReparametrizedModel, check_seed, plan_budget, register_method
from ._init import init_summary
from ._rates import Optimizer, VariableRate, check_optimizer, shared_multiplier
from ._targets import Scope, ScopeRule, Target, init_scales, parse_scope, scope_label, select_targets

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)
_CHUNK = 1 << 16


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser, vectorised over uint64 (wrap-around arithmetic intended)."""
    with np.errstate(over="ignore"):
        z = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK
        return z ^ (z >> np.uint64(31))


def hash_positions(positions: np.ndarray, seed: int, k: int, role: int) -> np.ndarray:
    """A uint64 hash of each position, independent for every (seed, k, role)."""
    salt = splitmix64(np.array([seed * 1_000_003 + k * 7 + role], dtype=np.uint64))[0]
    with np.errstate(over="ignore"):
        return splitmix64(positions.astype(np.uint64) ^ salt)


@dataclass(frozen=True)
class HashedNets(MethodConfig):
    """Random weight sharing into a pool of ``budget - unhashed`` variables.

    hashes: K, the number of independent hash functions (the SMH paper compares 1, 2, 10).
    sign: multiply each hashed entry by an independent random sign (HashedNets' xi).
    per_layer: one pool per layer, sized in proportion to it (Chen et al., the default), or
        ``False``: one pool for the whole model (the SMH paper's Table 1, :meth:`table1`).

    >>> HashedNets(budget="25%", hashes=2).to_dict()["hashes"]
    2
    """

    method = "hashednets"
    axes = ("budget", "scope")
    space_options = ("hashes", "sign", "per_layer")
    presets = {"hashed1": {"hashes": 1}, "hashed2": {"hashes": 2}, "hashed10": {"hashes": 10},
               # the SMH paper's Table 1 baseline: one pool for the whole model (its speed comparison)
               "hashed1_pool": {"hashes": 1, "per_layer": False}, "hashed2_pool": {"hashes": 2, "per_layer": False},
               "hashed10_pool": {"hashes": 10, "per_layer": False}}

    budget: BudgetLike
    hashes: int = field(default=1, metadata={"help": "K, independent hash functions"})
    scope: Scope | ScopeRule = field(default="all", metadata={"help": "which tensors are hashed"})
    sign: bool = field(default=True, metadata={"help": "an independent random sign per hashed entry"})
    per_layer: bool = field(
        default=True,
        metadata={"help": "one pool per layer (Chen et al.); false: one pool for the model (the SMH paper's Table 1)"},
    )
    seed: int = field(default=0, metadata={"help": "seed of the hash functions and the pool"})

    @classmethod
    def table1(cls, budget: BudgetLike, hashes: int = 1, **kw: Any) -> "HashedNets":
        """The SMH paper's Table 1 baseline: one pool for the whole model, K hashes into it.

        >>> HashedNets.table1("25%", hashes=10).per_layer
        False
        """
        return cls(budget=budget, hashes=hashes, per_layer=False, **kw)

    def __post_init__(self) -> None:
        super().__post_init__()  # the precision fields
        Budget.parse(self.budget)
        if isinstance(self.hashes, bool) or not isinstance(self.hashes, int) or self.hashes < 1:
            raise ConfigError("hashes", "hashes must be an int >= 1", self.hashes)
        object.__setattr__(self, "scope", parse_scope(self.scope))
        if not isinstance(self.sign, bool) or not isinstance(self.per_layer, bool):
            field = "sign" if not isinstance(self.sign, bool) else "per_layer"
            raise ConfigError(field, "sign and per_layer must be bools", getattr(self, field),
                              got=f"(sign={self.sign!r}, per_layer={self.per_layer!r})")
        check_seed(self.seed)

    def select(self, model: nn.Module, require: bool = True) -> list[Target]:
        return select_targets(model, self.scope, require=require)

    def derived_bytes_per_weight(self) -> int:
        return 8 * self.hashes  # per hash: an int32 pool index and a float32 sign (HashedNetsModel's tables)


def pool_sizes(targets: list[Target], pool: int, hashes: int, per_layer: bool) -> list[int]:
    """Sub-pool size of each (layer, hash) group, flattened layer-major.

    One pool: K equal sub-pools (sum <= pool). Per layer: each layer's share in proportion
    to its size, at least K, by largest remainder so the shares sum to ``pool`` exactly,
    each split into K sub-pools that differ by at most one.
    """
    if not per_layer:
        return [pool // hashes] * hashes
    N = sum(t.numel for t in targets)
    exact = [pool * t.numel / N for t in targets]
    shares = [max(hashes, int(x)) for x in exact]
    while sum(shares) > pool:  # the max(...) floors can overshoot: take back from the largest
        shares[int(np.argmax(shares))] -= 1
    for i in sorted(range(len(targets)), key=lambda i: shares[i] - exact[i])[: pool - sum(shares)]:
        shares[i] += 1  # the rest to the layers the floor shorted most
    return [p // hashes + (1 if k < p % hashes else 0) for p in shares for k in range(hashes)]


class HashedNetsModel(ReparametrizedModel):
    """The module :func:`compress` returns for a :class:`HashedNets` config."""

    def __init__(self, base: nn.Module, targets: list[Target], config: HashedNets, pool: int) -> None:
        super().__init__(base, targets, config)
        K = config.hashes
        sizes = pool_sizes(targets, pool, K, config.per_layer)
        if min(sizes) < 1:
            raise ValueError(
                f"HashedNets: a pool of {pool} cannot give each of the {len(sizes)} (layer, hash) sub-pools a variable"
            )
        self.sub_pools = sizes
        g = torch.Generator().manual_seed(config.seed)
        # a weight sums K signed entries: std 1/sqrt(K) each keeps the sum at unit std
        self.pool = nn.Parameter(torch.randn(sum(sizes), generator=g) / K**0.5)  # (P,)
        idx, sgn = self._hash_tables(targets, sizes, config)
        self.register_buffer("index", idx, persistent=False)  # (N, K) int32
        self.register_buffer("signs", sgn, persistent=False)  # (N, K) float
        # The hash is part of the model: the state dict carries its seed (not its tables).
        self.register_buffer("hash_seed", torch.tensor(config.seed, dtype=torch.int64))
        with torch.no_grad():
            scales = init_scales(targets, lambda: list(torch.split(self._gather(), self.sizes)))  # (L,)
            if config.per_layer:
                # Chen et al.'s parametrisation: each layer's pool holds its weights at their own
                # scale, so under SGD a weight moves as a dense one would (a small multiplier s
                # would slow its updates by s^2). Same function at init, scale 1 after.
                for pool_l, s_l in zip(
                    torch.split(self.pool, [sum(sizes[i * K : (i + 1) * K]) for i in range(len(targets))]), scales
                ):
                    pool_l.mul_(s_l)
                scales = torch.ones_like(scales)
        self.register_buffer("scale_init", scales)  # (L,)

    @staticmethod
    def _hash_tables(targets: list[Target], sizes: list[int], config: HashedNets) -> tuple[torch.Tensor, torch.Tensor]:
        K = config.hashes
        N = sum(t.numel for t in targets)
        idx = np.empty((N, K), dtype=np.int32)  # pool offsets fit: the pool is below the budget, below 2^31
        sgn = (np.empty if config.sign else np.ones)((N, K), dtype=np.float32)  # with signs, every entry is written
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        groups = [(0, N, 0)] if not config.per_layer else []
        if config.per_layer:
            start = 0
            for layer, t in enumerate(targets):
                groups.append((start, start + t.numel, layer))
                start += t.numel
        # Positions are hashed a chunk at a time: the temporaries of a chunk stay in cache,
        # where hashing a large model's positions in one piece is several times slower.
        chunks = [(a, min(a + _CHUNK, stop), layer) for start, stop, layer in groups for a in range(start, stop, _CHUNK)]
        for a, b, layer in chunks:
            pos = np.arange(a, b, dtype=np.uint64)
            for k in range(K):
                g = layer * K + k
                idx[a:b, k] = offsets[g] + (hash_positions(pos, config.seed, k, 0) % np.uint64(sizes[g])).astype(np.int64)
                if config.sign:
                    sgn[a:b, k] = np.where(hash_positions(pos, config.seed, k, 1) >> np.uint64(63), -1.0, 1.0)
        return torch.from_numpy(idx), torch.from_numpy(sgn)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        seed = state_dict.get(prefix + "hash_seed")
        if seed is not None and int(seed) != self.config.seed:  # rebuild the tables of that hash
            self.config = dataclasses.replace(self.config, seed=int(seed))
            idx, sgn = self._hash_tables(list(self.targets), self.sub_pools, self.config)
            self.index, self.signs = idx.to(self.index.device), sgn.to(self.signs.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _gather(self) -> torch.Tensor:
        """All N hashed weights before scaling: one gather of the K entries, signed and summed. (N,)

        ``index_select`` rather than ``embedding_bag``: on CPU its backward measured 6-10x
        faster at EfficientNet-B2 sizes (N = 9M; 0.2 s against 2.0 s for K = 1).
        """
        N, K = self.index.shape
        vals = self.pool.index_select(0, self.index.view(-1)).view(N, K)  # (N, K)
        if self.config.sign:
            vals = vals * self.signs.to(vals.dtype)
        return vals.view(N) if K == 1 else vals.sum(1)

    def _fit(self, weights: list[torch.Tensor]) -> None:
        # The pool that best reproduces the weights: least squares over every weight hashed to each entry. With one
        # hash, each entry is the sign-corrected mean of its weights; with K, conjugate gradients on the normal
        # equations (their matrix applied as a gather and a scatter-add), from that mean shared by the K entries.
        s = self.scale_init.double()
        y = torch.cat([w.reshape(-1).double() / s_l for w, s_l in zip(weights, s.unbind())])  # (N,)
        N, K = self.index.shape
        idx = self.index.long().view(-1)
        sg = (self.signs.double() if self.config.sign else torch.ones(N, K, dtype=torch.float64)).view(-1)

        def At(r: torch.Tensor) -> torch.Tensor:  # (N,) -> (P,)
            return torch.zeros(self.pool.numel(), dtype=torch.float64).index_add_(0, idx, (r.repeat_interleave(K) * sg))

        def A(p: torch.Tensor) -> torch.Tensor:  # (P,) -> (N,)
            return (p.index_select(0, idx) * sg).view(N, K).sum(1)

        count = torch.zeros(self.pool.numel(), dtype=torch.float64).index_add_(0, idx, torch.ones_like(sg))
        p = At(y) / count.clamp_min(1) / K
        if K > 1:
            r = At(y - A(p))
            d, rr = r.clone(), float(r @ r)
            for _ in range(100):
                if rr <= 1e-20 * float(y @ y):
                    break
                Ad = At(A(d))
                alpha = rr / max(float(d @ Ad), 1e-300)
                p += alpha * d
                r -= alpha * Ad
                rr, prev = float(r @ r), rr
                d = r + (rr / prev) * d
        self.pool.copy_(p)

    def dense_weights(self) -> list[torch.Tensor]:
        chunks = torch.split(self._gather(), self.sizes)
        s = self.scale_init.to(self.pool.dtype).unbind()
        return [c.view(t.shape) * s_l for c, t, s_l in zip(chunks, self.targets, s)]

    def variable_names(self) -> list[str]:
        return ["pool"]

    def quant_segments(self, name: str) -> list[int] | None:
        # per-layer pools carry their layer's scale: one quantisation scale each (a shared pool is one)
        return list(self.sub_pools) if name == "pool" and self.config.per_layer else None

    def layer_pools(self) -> list[int]:
        """Pool variables each layer's weights draw from: its own pool, or the whole pool when shared."""
        K = self.config.hashes
        if not self.config.per_layer:
            return [int(self.pool.numel())] * len(self.targets)
        return [sum(self.sub_pools[i * K:(i + 1) * K]) for i in range(len(self.targets))]

    def effective_rates(self, optimizer: Optimizer) -> torch.Tensor:
        """e_l of each layer (module docstring): how far one step at rate eta on the pool moves
        layer l's weights, against the dense step at eta. (L,) float64."""
        check_optimizer(optimizer)
        K = self.config.hashes
        s = self.scale_init.detach().double().cpu()  # (L,)
        if optimizer == "adamw":
            return math.sqrt(K) * s
        counts = torch.tensor(self.sizes, dtype=torch.float64)
        if self.config.per_layer:  # bucket mates are the layer's own weights
            c, mates_s2 = counts / torch.tensor(self.layer_pools(), dtype=torch.float64), s**2
        else:
            c, mates_s2 = counts.sum() / self.pool.numel(), (counts * s**2).sum() / counts.sum()
        return K * s * torch.sqrt(s**2 + c * mates_s2)

    def variable_rates(self, optimizer: Optimizer) -> dict[str, VariableRate]:
        m = shared_multiplier(self.effective_rates(optimizer), self.sizes, [t.slots[0][0] for t in self.targets])
        return {"pool": VariableRate(m)}

    def describe(self) -> dict[str, Any]:
        return {"N": self.hashed_count, "pool": int(self.pool.numel()), "hashes": self.config.hashes,
                "per_layer": self.config.per_layer, "layers": len(self.targets), "scope": scope_label(self.config.scope),
                **init_summary(self)}

    def extra_repr(self) -> str:
        return f"N={self.hashed_count}, pool={self.pool.numel()}, hashes={self.config.hashes}, per_layer={self.config.per_layer}"


def _plan(model: nn.Module, config: HashedNets) -> tuple[list[Target], int]:
    """(targets, pool size) for ``config``; a budget that cannot give every sub-pool a variable is refused."""
    plan = plan_budget(model, config.select(model), config.budget, "HashedNets")
    targets, target, unhashed = plan.targets, plan.budget, plan.rest
    groups = config.hashes * (len(targets) if config.per_layer else 1)
    pool = target - unhashed
    if pool < groups:
        raise ConfigError("budget", f"HashedNets: budget is too small: the unhashed parameters ({unhashed}) "
                          f"and one variable for each of the {groups} sub-pools need at least {unhashed + groups}", config.budget,
                          got=f"budget={config.budget!r} (= {target})")
    return targets, pool


@register_method(HashedNets, planner=_plan)
def _build_hashednets(model: nn.Module, config: HashedNets) -> HashedNetsModel:
    targets, pool = _plan(model, config)
    return HashedNetsModel(model, targets, config, pool)
