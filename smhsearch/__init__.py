"""smhsearch: compress networks with Structured Multi-Hashing and search for the model to ship.

>>> import smhsearch
>>> base = smhsearch.create_model("resnet32")
>>> model = smhsearch.compress(base, smhsearch.SMH(budget="46K", scope="all", scale="learnable"))
>>> smhsearch.measure.stored_parameters(model) <= 46_000
True
>>> dense = smhsearch.materialize(model)   # plain ResNet-32 for deployment

Importing this package loads torch only: torchvision, fvcore, Ray, Optuna and Plotly
are imported by the functions that need them.
"""

from . import measure
from ._budget import Budget
from ._version import __version__
from .export import load_compact, materialize, read_compact_metadata, save_compact
from .methods import (SMH, CompressedModel, HashedNets, LowRank, MethodConfig, Prune, ScopeRule, WidthMultiplier, compress,
                      config_from_dict, list_methods, param_groups, register_method, selection_summary)
from .models import create_model, list_models, register_model

__all__ = [
    "SMH",
    "Budget",
    "CompressedModel",
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
    "read_compact_metadata",
    "register_method",
    "register_model",
    "save_compact",
    "selection_summary",
]
