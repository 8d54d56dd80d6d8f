"""Method configs, the method registry, :func:`compress`, and the CompressedModel contract.

Every compression method is a frozen dataclass config (what to do) plus a builder
registered for that config type (how to do it), as torchao does; :func:`compress` is
the one verb. A builder returns a :class:`CompressedModel`, which every part of
smhsearch (trainer, measurement, export) works with through the same few methods.
"""

from __future__ import annotations

import copy
import dataclasses
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn

from .._budget import Budget, BudgetLike
from .._errors import ConfigError
from .._registry import Registry
from ..models._factory import arch_of
from . import _precision
from ._cache import WeightCache
from ._config import AXES, PRECISION_AXES, MethodConfig, options_of
from ._init import start
from ._rates import Optimizer, VariableRate, param_groups
from ._targets import Target


def state_metadata(module: nn.Module) -> dict[str, dict[str, Any]]:
    """The ``_metadata`` of ``module.state_dict()``: each submodule's version, which some
    modules' ``_load_from_state_dict`` read (MNASNet refuses a state dict without it)."""
    return {k: dict(v) for k, v in getattr(module.state_dict(), "_metadata", {}).items()}


def with_metadata(tensors: dict[str, torch.Tensor], metadata: dict[str, dict[str, Any]]) -> "OrderedDict[str, torch.Tensor]":
    """``tensors`` as a state dict carrying ``metadata`` (what ``load_state_dict`` hands each module)."""
    state: OrderedDict[str, torch.Tensor] = OrderedDict(tensors)
    state._metadata = OrderedDict((k, dict(v)) for k, v in metadata.items())  # type: ignore[attr-defined]
    return state


@dataclass(frozen=True)
class MethodEntry:
    config_cls: type[MethodConfig]
    builder: Callable[[nn.Module, Any], "CompressedModel"]
    planner: Callable[[nn.Module, Any], Any] | None = None
    """The builder's arithmetic alone (targets, sizes, the budget checks), no tensors made:
    what a space's feasibility check calls. Methods without one are checked by a meta build."""


METHODS: Registry[MethodEntry] = Registry("compression method")


def register_method(config_cls: type[MethodConfig], planner: Callable[[nn.Module, Any], Any] | None = None):
    """Register ``builder(model, config) -> CompressedModel`` for ``config_cls`` (and its planner, if any)."""
    if not config_cls.method:
        raise ValueError(f"{config_cls.__name__}.method must name the method")
    check_declarations(config_cls)

    def deco(builder: Callable[[nn.Module, Any], "CompressedModel"]):
        METHODS.add(config_cls.method, MethodEntry(config_cls, builder, planner))
        return builder

    return deco


def check_declarations(config_cls: type[MethodConfig]) -> None:
    """Raise when a config's declarations contradict its fields (called by ``register_method``)."""
    fields = options_of(config_cls)
    name = config_cls.__name__
    bad_axes = [a for a in config_cls.axes if a not in AXES or a not in fields]
    if bad_axes:
        raise ValueError(f"{name}.axes: {bad_axes} must be fields of {name} and among {AXES}")
    bad = [o for o in config_cls.space_options if o not in fields or o in AXES + PRECISION_AXES or o == "seed"]
    if bad:
        raise ValueError(
            f"{name}.space_options: {bad} must be fields of {name} other than the axes {AXES + PRECISION_AXES} and seed"
        )
    for preset, fixed in config_cls.presets.items():
        unknown = [k for k in fixed if k not in fields]
        if unknown:
            raise ValueError(f"{name}.presets[{preset!r}]: {unknown} are not fields of {name}")
    taken = {n for e in METHODS._items.values() for n in (e.config_cls.method, *e.config_cls.presets)}
    clash = [p for p in [config_cls.method, *config_cls.presets] if p in taken]
    if clash:
        raise ValueError(f"{name}: method or preset name(s) {clash} are already taken")


def list_methods() -> list[str]:
    """Registered method names (``"smh"``, ...)."""
    return METHODS.names()


def config_from_dict(d: dict[str, Any]) -> MethodConfig:
    """Inverse of :meth:`MethodConfig.to_dict`; unknown keys are an error naming the allowed ones."""
    if "method" not in d:
        raise ValueError(f"a method config needs a 'method' key; known methods: {', '.join(list_methods())}")
    cls = METHODS.get(d["method"]).config_cls
    kwargs = {k: v for k, v in d.items() if k != "method"}
    allowed = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} for method {d['method']!r}; allowed: {sorted(allowed)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()})


def compress(model: nn.Module, config: MethodConfig) -> "CompressedModel":
    """Compress ``model`` as ``config`` says; ``model`` itself is left untouched.

    >>> import smhsearch
    >>> base = smhsearch.create_model("resnet32")
    >>> m = smhsearch.compress(base, smhsearch.SMH(budget="46K"))
    >>> smhsearch.measure.stored_parameters(m) <= 46_000
    True
    """
    if isinstance(model, CompressedModel):
        raise ValueError(f"model is already compressed with {model.config!r}; compress the base model instead")
    if not isinstance(config, MethodConfig):
        raise TypeError(f"config must be a method config such as SMH(...), but got {type(config).__name__}")
    entry = METHODS.get(config.method)
    if not isinstance(config, entry.config_cls):
        raise TypeError(f"method {config.method!r} expects a {entry.config_cls.__name__}, but got {type(config).__name__}")
    _precision.check_precision(config.bits, config.quant, config.entropy)
    return _precision.attach(start(model, entry.builder(model, config), config))


def compress_shapes(base: nn.Module, config: MethodConfig, real_base: Callable[[], nn.Module]) -> "CompressedModel":
    """``config`` applied to a meta-device ``base`` (shapes only: no memory, no initialisation). A builder that needs
    values there (a plugin reading ``.item()`` from a meta tensor) is built on the
    CPU from ``real_base()`` instead; a ``ValueError`` (an unmeetable budget, a bad option) is the answer, not a reason
    to retry."""
    from ..models._meta import on_meta

    try:
        with on_meta():
            return compress(base, config)
    except ValueError:
        raise
    except Exception:
        torch.manual_seed(0)
        return compress(real_base(), config)


def trainable_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def check_seed(seed: Any) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError("seed", "seed must be a non-negative int", seed)


def resolve_budget(budget: BudgetLike, base_count: int, method: str) -> int:
    """Resolve a budget against the base model and refuse one at or above the base's count."""
    target = Budget.parse(budget).resolve(base_count)
    if target >= base_count:
        raise ConfigError("budget", f"{method}: budget must be below the base model's {base_count} trainable parameters", budget,
                          got=f"budget={budget!r} (= {target})")
    return target


@dataclass(frozen=True)
class BudgetPlan:
    """What every budgeted method starts from: its targets, the base count, the budget."""

    targets: list[Target]
    base_count: int
    budget: int
    """The budget resolved to an absolute count of stored trainable parameters."""

    @property
    def rest(self) -> int:
        """Trainable parameters the method leaves as they are (batch-norm, unselected layers)."""
        return self.base_count - sum(t.numel for t in self.targets)


def plan_budget(model: nn.Module, targets: list[Target], budget: BudgetLike, method: str) -> BudgetPlan:
    base_count = trainable_count(model)
    return BudgetPlan(targets, base_count, resolve_budget(budget, base_count, method))


class CompressedModel(nn.Module):
    """What every method's :func:`compress` returns.

    It has the base model's forward signature and outputs. Beyond that it promises:
    ``materialize()`` (a plain dense model with equal eval outputs), ``stored_count()``
    (the stored trainable parameters the budget limits), ``virtual_count()`` (the
    weights the model computes with) and ``describe()`` (method facts for reports).
    """

    config: MethodConfig
    memory_format: torch.memory_format = torch.contiguous_format
    """The layout of 4-D weights (channels_last on GPUs): stored and computed ones alike."""
    precision: _precision.PrecisionState
    """The precision stage's state (which tensors are quantised, their grids); ``compress`` sets it up for ``config``."""

    def __init__(self, config: MethodConfig, arch: dict[str, Any] | None) -> None:
        super().__init__()
        self.config = config
        self.arch = copy.deepcopy(arch)
        self.init: str = "scratch"
        """How the variables started: ``scratch`` or ``fit`` (:func:`start`)."""
        self.fit_error: dict[str, Any] | None = None
        """After a fit: the relative error ||W_fit - W|| / ||W|| of each layer and overall, before any training."""
        self.precision = _precision.PrecisionState()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        swapped = _precision.qat_swap_in(self)  # QAT: the quantised values in their slots for this call; else nothing
        try:
            return super().__call__(*args, **kwargs)
        finally:
            _precision.qat_swap_out(swapped)

    def mark_quantised(self, grids: dict[str, dict[str, torch.Tensor]]) -> None:
        """Record that the quantised tensors hold values on their grids, as a compact file's do once loaded: ``grids``
        gives each one's scales or codebook (a float16 tensor needs none), so saving again writes the same file."""
        if self.precision.names:
            self.precision.frozen = {**{n: {} for n in self.precision.names}, **(self.precision.frozen or {}), **grids}

    def set_memory_format(self, memory_format: torch.memory_format) -> "CompressedModel":
        """Lay 4-D weights out in ``memory_format``: the stored ones now, the computed ones at every forward.

        The trainer calls it with ``torch.channels_last`` on GPUs, so convolutions get
        weights in the layout cuDNN wants instead of converting them every step.
        """
        if memory_format not in (torch.contiguous_format, torch.channels_last):
            raise ValueError(f"memory_format must be torch.contiguous_format or torch.channels_last, but got {memory_format}")
        self.memory_format = memory_format
        self.to(memory_format=memory_format)
        return self

    def materialize(self) -> nn.Module:
        raise NotImplementedError

    def stored_count(self) -> int:
        """Stored trainable parameters: what a budget limits and reports plot."""
        return trainable_count(self)

    def virtual_count(self) -> int:
        raise NotImplementedError

    def final_stored_count(self) -> int:
        """The stored count once training is done (what a search compares before training)."""
        return self.stored_count()

    def describe(self) -> dict[str, Any]:
        return {}

    def layout(self) -> list[Any]:
        """What the stored tensors alone do not pin down about the rebuilt model.

        A compact file records it and loading checks it, so a base model of other
        shapes whose variables happen to have the same sizes is refused.
        """
        return []

    def input_size(self, default: int) -> int:
        """The input side this model expects; methods that change resolution override it."""
        return default

    def variable_names(self) -> list[str]:
        """Names of the method's shared variables (SMH's U and V, ...), which train at their own
        rates (:meth:`variable_rates`). Dense weights and gains are not among them."""
        return []

    def training_form(self) -> dict[str, str]:
        """How this model trains beyond its variables' multipliers (:meth:`variable_rates`): rules applied
        in its own backward, by name. Benchmarks key the reuse of a stored run on both, so a rule changed
        here trains the runs it touches again."""
        return {}

    def variable_rates(self, optimizer: Optimizer) -> dict[str, VariableRate]:
        """Each variable's learning-rate multiplier under ``optimizer`` ("sgd" or "adamw").

        The multiplier makes one step move each computed weight as the dense model's weight
        moves at the dense learning rate (``methods/_rates.py`` states the rule; each method's
        module derives its own). A method without shared variables trains as a dense model.
        """
        return {name: VariableRate(1.0) for name in self.variable_names()}

    def param_groups(self, lr: float, weight_decay: float = 0.0, optimizer: Optimizer = "sgd",
                     variable_lr_mult: float = 1.0) -> list[dict[str, Any]]:
        """torch.optim parameter groups at the rates :meth:`variable_rates` derives: a plain optimizer
        at the dense model's ``lr`` then trains this model fairly. ``variable_lr_mult`` multiplies the
        variables' rates on top (for sweeps). Gains and norms get no weight decay.

        >>> import torch, smhsearch
        >>> m = smhsearch.compress(smhsearch.create_model("resnet8", widths=(4, 8, 8)), smhsearch.SMH(budget="30%"))
        >>> opt = torch.optim.AdamW(m.param_groups(lr=1e-3, weight_decay=1e-2, optimizer="adamw"))
        >>> [g["name"] for g in opt.param_groups]
        ['no_decay', 'variables:U,V']
        >>> opt.param_groups[1]["lr"] > 1e-3  # U and V of unit-std products move faster than dense weights
        True
        """
        return param_groups(self, lr, weight_decay, optimizer, variable_lr_mult)

    def quant_segments(self, name: str) -> list[int] | None:
        """For a vector variable that holds several layers' values (HashedNets' per-layer pools), the lengths of its
        parts, each quantised with a scale of its own below 32 bits (``methods/_precision.py``); None: one scale."""
        return None

    def set_progress(self, fraction: float) -> None:
        """Tell the model how far training has got (0 at the start, 1 at the end).

        The trainer calls it every step. Methods that change during training (gradual
        pruning) follow it; the others ignore it. A model meets its budget at 1.
        """

    def compact_state_dict(self) -> dict[str, torch.Tensor]:
        """The tensors a compact file stores (no two sharing memory, as safetensors asks)."""
        return {k: v.detach().clone().contiguous() for k, v in self.state_dict().items()}

    def load_compact_state_dict(
        self, tensors: dict[str, torch.Tensor], metadata: dict[str, dict[str, Any]] | None = None
    ) -> None:
        """Inverse of :meth:`compact_state_dict`; raises RuntimeError on a mismatch.

        ``metadata``: the module versions the state was saved with (:func:`state_metadata`);
        None takes this model's own, the versions of the modules that were just built.
        """
        self.load_state_dict(with_metadata(tensors, state_metadata(self) if metadata is None else metadata), strict=True)


class ReparametrizedModel(CompressedModel):
    """A base architecture whose chosen weights are computed from other variables.

    The base is kept as a skeleton: each hashed parameter slot holds ``None``, so the
    skeleton owns only the unhashed parameters. ``forward`` computes all hashed
    weights at once (``dense_weights``), puts them into their slots for the duration
    of the base model's forward, and empties the slots again. In eval mode without
    autograd the computed weights are cached until a variable changes, so validation
    costs what the dense model costs.
    """

    def __init__(self, base: nn.Module, targets: Sequence[Target], config: MethodConfig) -> None:
        super().__init__(config, arch_of(base))
        skeleton = copy.deepcopy(base)
        for p in skeleton.parameters():  # no gradient history leaks in from a used base
            p.grad = None
        for t in targets:
            for mod_name, attr in t.slots:
                skeleton.get_submodule(mod_name)._parameters[attr] = None
        self.base = skeleton
        self.targets: tuple[Target, ...] = tuple(targets)
        self.sizes: list[int] = [t.numel for t in targets]
        self.hashed_count: int = sum(self.sizes)
        self._slots = [[(skeleton.get_submodule(m), a) for m, a in t.slots] for t in targets]
        self._cache = WeightCache()

    def dense_weights(self) -> list[torch.Tensor]:
        """The hashed weights, one tensor per target in target order, shaped as in the base."""
        raise NotImplementedError

    def _variables(self) -> Iterable[torch.Tensor]:
        # Every tensor the hashed weights are computed from, held in submodules too (LowRank's
        # and Prune's ParameterLists): the eval cache is valid only while none of them changed.
        # The base skeleton holds only the unhashed parameters, which the cache does not hold.
        return [v for n, v in [*self.named_parameters(), *self.named_buffers()] if not n.startswith("base.")]

    def _laid_out(self) -> list[torch.Tensor]:
        """``dense_weights()`` with 4-D weights in the model's memory format (a copy only when it is channels_last)."""
        weights = self.dense_weights()
        if self.memory_format == torch.contiguous_format:
            return weights
        return [w.contiguous(memory_format=self.memory_format) if w.ndim == 4 else w for w in weights]

    def _weights(self) -> list[torch.Tensor]:
        if self.training or torch.is_grad_enabled():
            self._cache.clear()
            return self._laid_out()
        return self._cache.get("weights", self._variables(), self._laid_out, torch.is_autocast_enabled(), self.memory_format)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        weights = self._weights()
        for slots, w in zip(self._slots, weights):
            for mod, attr in slots:
                mod._parameters[attr] = w  # a plain tensor in the slot for this call only
        try:
            return self.base(*args, **kwargs)
        finally:
            for slots in self._slots:
                for mod, attr in slots:
                    mod._parameters[attr] = None

    @torch.no_grad()
    def materialize(self) -> nn.Module:
        dense = copy.deepcopy(self.base)
        was_training = self.training
        self.eval()
        weights = self._weights()
        self.train(was_training)
        for t, w in zip(self.targets, weights):
            p = nn.Parameter(w.detach().to(torch.float32).clone(memory_format=torch.contiguous_format))
            for mod_name, attr in t.slots:  # same Parameter in every tied slot; key order kept
                dense.get_submodule(mod_name)._parameters[attr] = p
        dense.train(was_training)
        return dense

    def virtual_count(self) -> int:
        return trainable_count(self.base) + self.hashed_count

    def layout(self) -> list[Any]:
        return [[t.name, list(t.shape)] for t in self.targets]
