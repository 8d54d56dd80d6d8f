"""Deployable files: the dense materialised model and the compact file of stored variables.

The compact file is a safetensors file (no pickle, so loading never runs code) holding
the compressed model's state as the method packs it (``compact_state_dict``): the
method's variables (for SMH: U, V, the per-layer scales; for pruning: the nonzero
values and a bitmask), every unhashed parameter, and the buffers the base keeps
(batch-norm running statistics), which eval outputs need. Its header metadata records, as JSON, the method
config and the architecture's registry name and arguments, so
:func:`load_compact` can rebuild the module; a file made from a user ``nn.Module``
needs that module passed back in.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._version import __version__
from .methods._base import CompressedModel, compress, config_from_dict

COMPACT_FORMAT = "smhsearch.compact"
COMPACT_VERSION = "1"


def materialize(model: nn.Module) -> nn.Module:
    """A plain dense copy of the base architecture whose eval outputs equal ``model``'s.

    Its state dict loads into ``create_model(name)`` of the same architecture, and its
    inference costs exactly what the base architecture costs. A model that is not
    compressed comes back as a copy.
    """
    if isinstance(model, CompressedModel):
        return model.materialize()
    return copy.deepcopy(model)


def save_compact(model: CompressedModel, path: str | os.PathLike) -> Path:
    """Write ``model``'s stored variables and what rebuilds it to ``path`` (safetensors)."""
    from safetensors.torch import save_file

    if not isinstance(model, CompressedModel):
        raise TypeError(f"save_compact takes a compressed model (from smhsearch.compress), but got {type(model).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": COMPACT_FORMAT,
        "format_version": COMPACT_VERSION,
        "smhsearch_version": __version__,
        "method": json.dumps(model.config.to_dict()),
        "arch": json.dumps(model.arch),
        "layout": json.dumps(model.layout()),
    }
    tmp = path.with_name(path.name + ".tmp")
    save_file(model.compact_state_dict(), str(tmp), metadata=meta)
    os.replace(tmp, path)  # a crash mid-write never leaves a half file under the real name
    return path


def read_compact_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The method config and architecture a compact file records (no tensors are read)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no compact file at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for a bad header
        raise ValueError(f"{path} is not a safetensors file: {e}") from None
    if meta.get("format") != COMPACT_FORMAT:
        raise ValueError(f"{path} is not an smhsearch compact file (format={meta.get('format')!r}, expected {COMPACT_FORMAT!r})")
    if meta.get("format_version") != COMPACT_VERSION:
        raise ValueError(f"{path}: compact format version {meta.get('format_version')!r} is not supported (this smhsearch reads {COMPACT_VERSION!r})")
    return {
        "method": json.loads(meta["method"]),
        "arch": json.loads(meta["arch"]),
        "layout": json.loads(meta.get("layout", "[]")),
        "smhsearch_version": meta.get("smhsearch_version"),
    }


def load_compact(path: str | os.PathLike, model: nn.Module | None = None, device: str | torch.device = "cpu") -> CompressedModel:
    """Rebuild the compressed module saved by :func:`save_compact`, in eval mode.

    ``model``: the base module, needed only when the file was made from a model that
    :func:`smhsearch.create_model` did not build (its shape must match).
    """
    from safetensors.torch import load_file

    from .models import create_model

    meta = read_compact_metadata(path)
    config = config_from_dict(meta["method"])
    if model is None:
        arch = meta["arch"]
        if arch is None:
            raise ValueError(f"{path} was saved from a user nn.Module: pass that module as load_compact(path, model=...)")
        model = create_model(arch["name"], **arch["kwargs"])
    compressed = compress(model, config)
    layout = compressed.layout()
    if layout != meta["layout"]:
        first = next((f"{a} != {b}" for a, b in zip(layout, meta["layout"]) if a != b), f"{len(layout)} != {len(meta['layout'])} entries")
        raise ValueError(f"{path} does not fit the rebuilt model (was `model` the same architecture?): hashed layout differs, {first}")
    try:
        compressed.load_compact_state_dict(load_file(str(path), device=str(device)))
    except RuntimeError as e:
        raise ValueError(f"{path} does not fit the rebuilt model (was `model` the same architecture?): {e}") from None
    return compressed.to(device).eval()
