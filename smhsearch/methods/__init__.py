"""Compression methods behind one registry and one verb, :func:`compress`."""

from . import _dense, _hashed, _lowrank, _prune, _smh, _width  # noqa: F401  (registration)
from ._base import (
    METHODS,
    CompressedModel,
    MethodConfig,
    ReparametrizedModel,
    compress,
    compress_shapes,
    config_from_dict,
    list_methods,
    register_method,
)
from ._dense import Dense, DenseModel, as_compressed
from ._hashed import HashedNets, HashedNetsModel
from ._lowrank import LowRank, LowRankModel
from ._prune import Prune, PruneModel
from ._rates import OPTIMIZERS, VariableRate, param_groups
from ._smh import SMH, SMHModel
from ._selection import Selection, TensorChoice, format_selection, selection_summary
from ._width import WidthModel, WidthMultiplier
from ._targets import SCOPES, ScopeRule, Target, select_targets

__all__ = [
    "METHODS",
    "SMH",
    "HashedNets",
    "HashedNetsModel",
    "CompressedModel",
    "Dense",
    "DenseModel",
    "LowRank",
    "LowRankModel",
    "MethodConfig",
    "OPTIMIZERS",
    "Prune",
    "PruneModel",
    "ReparametrizedModel",
    "SCOPES",
    "SMHModel",
    "ScopeRule",
    "Selection",
    "Target",
    "VariableRate",
    "TensorChoice",
    "WidthModel",
    "WidthMultiplier",
    "as_compressed",
    "compress",
    "compress_shapes",
    "config_from_dict",
    "format_selection",
    "list_methods",
    "param_groups",
    "register_method",
    "select_targets",
    "selection_summary",
]
