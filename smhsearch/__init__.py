"""smhsearch: compress networks with Structured Multi-Hashing and search for the model to ship.

>>> import smhsearch
>>> base = smhsearch.create_model("resnet32")
>>> model = smhsearch.compress(base, smhsearch.SMH(budget="46K", scope="all", scale="learnable"))
>>> smhsearch.measure.stored_parameters(model) <= 46_000
True
>>> dense = smhsearch.materialize(model)   # plain ResNet-32 for deployment

Importing this package loads nothing heavy: torch comes with the first model, method or
measurement asked for, and torchvision, fvcore, Ray, Optuna and Plotly with the functions
that need them.
"""

from typing import TYPE_CHECKING

from ._errors import ConfigError
from ._version import __version__

# Public name -> the module that defines it. Imported on first use (PEP 562), so that
# `smhsearch pick` / `report` of a run, which read JSON and an Optuna study, never pay for torch.
_LAZY = {
    "measure": None,
    "Budget": "._budget",
    "load_compact": ".export",
    "materialize": ".export",
    "read_compact_metadata": ".export",
    "save_compact": ".export",
    "quantize": ".export",
    **{
        n: ".methods"
        for n in (
            "SMH",
            "CompressedModel",
            "Dense",
            "HashedNets",
            "LowRank",
            "Prune",
            "WidthMultiplier",
            "MethodConfig",
            "compress",
            "config_from_dict",
            "list_methods",
            "register_method",
            "ScopeRule",
            "param_groups",
            "selection_summary",
        )
    },
    **{n: ".models" for n in ("create_model", "list_models", "register_model")},
}

if TYPE_CHECKING:  # what type checkers and IDEs see (py.typed): the same names, imported eagerly
    from . import measure
    from ._budget import Budget
    from .export import load_compact, materialize, quantize, read_compact_metadata, save_compact
    from .methods import (
        SMH,
        CompressedModel,
        Dense,
        HashedNets,
        LowRank,
        MethodConfig,
        Prune,
        ScopeRule,
        WidthMultiplier,
        compress,
        config_from_dict,
        list_methods,
        param_groups,
        register_method,
        selection_summary,
    )
    from .models import create_model, list_models, register_model


def __getattr__(name: str):
    import importlib

    if name not in _LAZY:
        raise AttributeError(f"module 'smhsearch' has no attribute {name!r}")
    module = _LAZY[name]
    value = (
        importlib.import_module(f".{name}", __name__)
        if module is None
        else getattr(importlib.import_module(module, __name__), name)
    )
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "SMH",
    "Budget",
    "CompressedModel",
    "ConfigError",
    "Dense",
    "HashedNets",
    "LowRank",
    "MethodConfig",
    "Prune",
    "ScopeRule",
    "WidthMultiplier",
    "__version__",
    "compress",
    "config_from_dict",
    "create_model",
    "list_methods",
    "list_models",
    "load_compact",
    "materialize",
    "measure",
    "param_groups",
    "quantize",
    "read_compact_metadata",
    "register_method",
    "register_model",
    "save_compact",
    "selection_summary",
]
