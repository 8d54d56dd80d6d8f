"""Which tensors a scope selects for hashing, in what order, and their init stds.

Selection is by tensor, not only by module type, so a method reaches every weight of
any network: attention's ``in_proj_weight`` (which ``nn.MultiheadAttention`` uses
functionally), positional embeddings, ``nn.Embedding``, a user layer's own
``nn.Parameter`` matrices, parameters registered on the root module.

- ``"all"``: every trainable weight of a conv, linear or embedding layer and its bias,
  and every other trainable tensor with two or more dimensions of size > 1 (a
  matrix or more), with its bias (a ``*bias*`` tensor of a module that holds such a
  matrix: ``in_proj_bias`` beside ``in_proj_weight``, a user layer's ``bias`` beside
  its ``kernel``). A tensor shaped for broadcasting but holding one
  vector, such as ConvNeXt's layer scale (C, 1, 1) or Swin-V2's logit scale
  (heads, 1, 1), is a per-channel gain like a bias without a weight: it stays dense,
  because its constant init (1e-6, log 10) cannot be given by random products.
- ``"conv"``: weights and biases of ``nn.Conv*d`` (depthwise and 1x1 included).
- ``"linear"``: weights and biases of ``nn.Linear`` (attention's ``out_proj`` is one).
- a :class:`ScopeRule`: parameter names matched by regular expressions, as the official
  SMH code selects its variables by name pattern.

Normalisation parameters (batch, layer, group, instance, RMS norm) are never
selected, under any scope: their scale and shift fold into the next operation at
inference. Tied tensors are one target with several slots, hashed once.

Order is the base model's parameter order (``named_parameters()``), which for every
model built in the usual way is the order of creation the SMH paper tiles by.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal, Sequence, get_args

import torch
from torch import nn

from .._errors import ConfigError

Scope = Literal["all", "conv", "linear"]
SCOPES: tuple[str, ...] = get_args(Scope)
Kind = Literal["conv", "linear", "embedding", "tensor"]

_RULE_KEYS = ("include", "exclude", "min_size")
_RULE_SYNTAX = "a rule {include: [regex, ...], exclude: [regex, ...], min_size: N}"


@dataclass(frozen=True)
class ScopeRule:
    """Select trainable parameters by name: any name matching an ``include`` pattern, none
    matching an ``exclude`` pattern, and at least ``min_size`` elements.

    Patterns are Python regular expressions searched anywhere in the full parameter name
    (``re.search``, as TensorFlow's ``filter_variables``, which the official SMH code
    uses). A tied tensor counts every name it has. Normalisation is never selected.

    >>> ScopeRule(include=[r"\\.weight$"], exclude=[r"^head\\."], min_size=1000).to_dict()
    {'include': ['\\\\.weight$'], 'exclude': ['^head\\\\.'], 'min_size': 1000}
    """

    include: tuple[str, ...] = (".",)
    exclude: tuple[str, ...] = ()
    min_size: int = 0

    def __post_init__(self) -> None:
        for key in ("include", "exclude"):
            value = getattr(self, key)
            patterns = (value,) if isinstance(value, str) else value
            if not isinstance(patterns, (list, tuple)) or not all(isinstance(p, str) for p in patterns):
                raise ConfigError(f"scope.{key}", f"scope.{key} must be a list of regular expressions", value)
            for p in patterns:
                try:
                    re.compile(p)
                except re.error as e:
                    raise ConfigError(f"scope.{key}", f"scope.{key} must list regular expressions", p,
                                      got=f"{p!r} ({e})") from None
            object.__setattr__(self, key, tuple(patterns))
        if not self.include:
            raise ConfigError("scope.include", "scope.include must list at least one pattern (use '.' for every parameter)",
                              self.include)
        m = self.min_size
        if isinstance(m, bool) or not isinstance(m, int) or m < 0:
            raise ConfigError("scope.min_size", "scope.min_size must be an int >= 0", m)

    def refuses(self, names: Sequence[str], numel: int) -> str | None:
        """Why a tensor with these names and size is not selected, or None when it is."""
        if not any(re.search(p, n) for p in self.include for n in names):
            return "no include pattern matches"
        hit = next((p for p in self.exclude for n in names if re.search(p, n)), None)
        if hit is not None:
            return f"excluded by {hit!r}"
        if numel < self.min_size:
            return f"smaller than min_size={self.min_size}"
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"include": list(self.include), "exclude": list(self.exclude), "min_size": self.min_size}

    def __str__(self) -> str:
        parts = [f"include={list(self.include)}"] + ([f"exclude={list(self.exclude)}"] if self.exclude else [])
        return "rule(" + ", ".join(parts + ([f"min_size={self.min_size}"] if self.min_size else [])) + ")"


def parse_scope(scope: Any) -> str | ScopeRule:
    """A scope as configs hold it: one of :data:`SCOPES`, or a :class:`ScopeRule` (from a rule or its dict)."""
    if isinstance(scope, ScopeRule):
        return scope
    if isinstance(scope, dict):
        unknown = sorted(set(scope) - set(_RULE_KEYS))
        if unknown:
            raise ConfigError("scope", f"a scope rule takes the keys {list(_RULE_KEYS)}", scope, got=f"unknown key(s) {unknown}")
        return ScopeRule(**scope)
    if isinstance(scope, str) and scope in SCOPES:
        return scope
    raise ConfigError("scope", f"scope must be one of {', '.join(repr(s) for s in SCOPES)} or {_RULE_SYNTAX}", scope)


def scope_label(scope: str | ScopeRule) -> str:
    """A one-line text of a scope, for tables and ``describe()``."""
    return str(scope)


@dataclass(frozen=True)
class Target:
    """One hashed tensor of the base model."""

    name: str
    """Full parameter name in the base model, e.g. ``"layer1.0.conv1.weight"``."""
    slots: tuple[tuple[str, str], ...]
    """Every (module name, attribute) holding this tensor; more than one when weights are tied."""
    shape: tuple[int, ...]
    kind: Kind
    """The layer type holding it (``"tensor"``: a parameter of any other module)."""
    init_std: float
    """The std the base model's own initialisation gave this tensor (see :func:`init_std`)."""

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


_NORM_TYPES: tuple[type, ...] = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)
_NORM_TYPES += (nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()
_NORM_NAME = re.compile(r"Norm(\d[dD])?$")  # a user's RMSNorm, torchvision's LayerNorm2d, timm's ...Norm2d


def is_normalisation(module: nn.Module) -> bool:
    """True for normalisation layers: torch's own, and any class whose name ends in ``Norm`` / ``Norm2d``."""
    return isinstance(module, _NORM_TYPES) or bool(_NORM_NAME.search(type(module).__name__))


def layer_kind(module: nn.Module) -> Kind:
    if isinstance(module, nn.modules.conv._ConvNd):
        return "conv"
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
        return "embedding"
    return "tensor"


def is_matrix(shape: Sequence[int]) -> bool:
    """Two or more dimensions of size > 1: a matrix, a kernel, an embedding table (not a vector in disguise)."""
    return sum(1 for s in shape if s > 1) >= 2


def _weight_of(attr: str) -> str | None:
    """The weight a bias attribute belongs to: ``bias`` -> ``weight``, ``in_proj_bias`` -> ``in_proj_weight``."""
    return attr.replace("bias", "weight") if "bias" in attr else None


def _refuses_slot(module: nn.Module, attr: str, scope: str) -> str | None:
    """Why a named scope leaves this (module, attribute) dense, or None when it selects it."""
    kind = layer_kind(module)
    if scope == "conv":
        return None if kind == "conv" else "not a convolution (scope 'conv')"
    if scope == "linear":
        return None if kind == "linear" else "not an nn.Linear (scope 'linear')"
    if kind != "tensor" and attr in ("weight", "bias"):
        return None
    p = module._parameters[attr]
    if is_matrix(p.shape):
        return None
    if "bias" in attr and any(q is not None and is_matrix(q.shape) for q in module._parameters.values()):
        return None  # a bias of a layer that holds a weight matrix, whatever the names (in_proj_bias, a user's kernel + bias)
    return "a vector (gain, scale or token), not a weight matrix or its bias"


@dataclass(frozen=True)
class Choice:
    """One trainable tensor of a model and what a scope does with it."""

    name: str
    slots: tuple[tuple[str, str], ...]
    shape: tuple[int, ...]
    refused: str | None
    """Why the tensor stays dense; None when the scope selects it."""

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def _owners(model: nn.Module) -> dict[int, list[tuple[str, str, nn.Module]]]:
    owners: dict[int, list[tuple[str, str, nn.Module]]] = {}
    for mod_name, mod in model.named_modules(remove_duplicate=False):
        for attr, p in mod._parameters.items():
            if p is not None:
                owners.setdefault(id(p), []).append((mod_name, attr, mod))
    return owners


def classify(model: nn.Module, scope: str | ScopeRule) -> list[tuple[Choice, nn.Module]]:
    """Every trainable parameter of ``model`` in parameter order, with the scope's verdict and its first owner."""
    scope = parse_scope(scope)
    owners = _owners(model)
    out = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        slots = owners[id(p)]
        names = [f"{m}.{a}" if m else a for m, a, _ in slots]
        if any(is_normalisation(mod) for _, _, mod in slots):
            refused: str | None = "normalisation"
        elif isinstance(scope, ScopeRule):
            refused = scope.refuses(names, p.numel())
        else:
            reasons = [_refuses_slot(mod, attr, scope) for _, attr, mod in slots]
            refused = next((r for r in reasons if r), None)
            if refused and len(slots) > 1 and None in reasons:
                refused = f"tied with a tensor the scope leaves dense ({refused})"
        out.append((Choice(name, tuple((m, a) for m, a, _ in slots), tuple(p.shape), refused), slots[0][2]))
    return out


def init_std(tensor: torch.Tensor, owner: nn.Module, attr: str = "weight") -> float:
    """The std to start a hashed tensor at: the one its base initialisation gave it.

    A tensor whose initialisation is constant (torchvision zero-initialises many
    biases, MHA its ``in_proj_bias``) cannot be matched by products of random
    variables, and a zero scale would freeze it for good; it gets the std of PyTorch's
    default init for that layer instead, ``1 / sqrt(3 * fan_in)`` (uniform on
    +-1/sqrt(fan_in)), fan_in read from the weight beside it.
    """
    if tensor.is_meta:  # shapes only (feasibility checks): there is no value to measure
        return 1.0
    t = tensor.detach().double()
    std = float(t.std()) if t.numel() > 1 else 0.0
    if std > 0.0 and math.isfinite(std):
        return std
    weight: torch.Tensor | None = tensor  # a weight: the fan-in of its own rows
    if "bias" in attr:  # a bias: its weight's fan-in (the one of the same name, else the module's matrix)
        weight = owner._parameters.get(_weight_of(attr) or "")
        if weight is None:
            weight = next((q for q in owner._parameters.values() if q is not None and is_matrix(q.shape)), None)
    fan_in = weight[0].numel() if weight is not None and weight.dim() >= 2 else t.numel()
    return 1.0 / math.sqrt(3.0 * max(fan_in, 1))


def _nothing_selected(scope: str | ScopeRule) -> ConfigError:
    if isinstance(scope, ScopeRule):
        return ConfigError("scope", "scope must select a trainable parameter of the model (normalisation is never selected)",
                           scope, got=f"scope {scope}, which selects none")
    what = {"conv": "convolution", "linear": "linear", "all": "convolution, linear, embedding or other weight-matrix"}[scope]
    hint = {"conv": "hashable layers are nn.Conv1d/2d/3d", "linear": "hashable layers are nn.Linear",
            "all": "scope 'all' takes tensors of two or more dimensions and their biases; normalisation never"}[scope]
    return ConfigError("scope", f"scope must select trainable {what} weights of the model to hash ({hint})", scope,
                       got=f"scope={scope!r}, and the model has none")


def select_targets(model: nn.Module, scope: str | ScopeRule, require: bool = False) -> list[Target]:
    """The trainable tensors of ``model`` that ``scope`` selects, in parameter order.

    With ``require=True`` a model with nothing to hash is a ``ConfigError`` about ``scope``.

    >>> from smhsearch.models import create_model
    >>> [t.name for t in select_targets(create_model("mlp_1x1000"), "all")]
    ['net.1.weight', 'net.1.bias', 'net.3.weight', 'net.3.bias']
    """
    scope = parse_scope(scope)
    targets: list[Target] = []
    for c, owner in classify(model, scope):
        if c.refused is None:
            attr = c.slots[0][1]
            kind = layer_kind(owner) if attr in ("weight", "bias") else "tensor"
            p = owner._parameters[attr]
            targets.append(Target(c.name, c.slots, c.shape, kind, init_std(p, owner, attr)))
    if require and not targets:
        raise _nothing_selected(scope)
    return targets


_LOADING = contextvars.ContextVar("smhsearch_loading", default=False)


@contextlib.contextmanager
def state_to_be_loaded() -> Iterator[None]:
    """Within it, a compressed model is built to receive a saved state: the init arithmetic whose
    results the state replaces (SMH's calibration matmul, HashedNets' calibration gather) is skipped."""
    token = _LOADING.set(True)
    try:
        yield
    finally:
        _LOADING.reset(token)


def init_scales(targets: list[Target], raw: Callable[[], list[torch.Tensor]]) -> torch.Tensor:
    """:func:`calibrated_scales` of ``raw()``; ones, without calling ``raw``, when a saved state will replace them."""
    if _LOADING.get():
        return torch.ones(len(targets), dtype=torch.float32)
    return calibrated_scales(targets, raw())


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
