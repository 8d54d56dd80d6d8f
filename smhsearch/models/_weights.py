"""Trained weights into an architecture: read a file, check it fits, load it, say what changed.

A weights file is a safetensors file (smhsearch's own dense exports among them) or a
PyTorch checkpoint, read with ``torch.load(weights_only=True)`` only: a file that needs code to
unpickle is refused, never run. Checkpoints nest their state dict (``state_dict``, ``model``,
``model_state_dict``, ``module``, ``ema``...) and prefix its keys (``module.`` from DataParallel,
``_orig_mod.`` from ``torch.compile``); both are undone. Every key and shape must fit the
architecture; with ``head="reinit"`` the tensors whose shapes do not fit (an ImageNet classifier on a
10-class set, a first convolution for other channels) keep their fresh initialisation instead, and
are named.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

HEADS: tuple[str, ...] = ("keep", "reinit")
"""``keep``: every tensor of the file must fit; ``reinit``: misshapen tensors keep their fresh initialisation."""
Head = Literal["keep", "reinit"]

WEIGHTS_ATTR = "smhsearch_weights"
"""Attribute set on a model whose weights came from a file: a :class:`WeightsInfo`."""

_NESTS = ("state_dict", "model_state_dict", "model", "module", "net", "network", "ema", "model_ema", "state_dict_ema")
_PREFIXES = ("module.", "_orig_mod.", "model.")
_SHOWN = 4


class WeightsError(ValueError):
    """A weights file that cannot be used; the message is one line naming the file and what is wrong."""


@dataclass(frozen=True)
class WeightsInfo:
    """Where a model's weights came from: what every record, fingerprint and report names."""

    path: str
    sha256: str
    head: Head = "keep"
    reinitialised: tuple[str, ...] = field(default=())
    """The tensors that did not fit and kept their fresh initialisation (``head="reinit"``)."""

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "head": self.head, "reinitialised": list(self.reinitialised)}


def file_sha256(path: str | os.PathLike) -> str:
    """The hex sha256 of a file's bytes (read in blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _is_state(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(k, str) for k in obj) and \
        any(isinstance(v, torch.Tensor) for v in obj.values())


def _unnest(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The state dict inside a checkpoint: the object itself, or under one of the usual keys (searched in order)."""
    for _ in range(4):
        if _is_state(obj):
            return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if not isinstance(obj, dict):
            break
        inner = next((obj[k] for k in _NESTS if k in obj and isinstance(obj[k], dict)), None)
        if inner is None:
            break
        obj = inner
    keys = sorted(obj)[:8] if isinstance(obj, dict) else []
    raise WeightsError(f"{path}: holds no state dict of tensors (looked at the top level and under "
                       f"{', '.join(_NESTS)}; top-level keys: {keys or type(obj).__name__})")


def _strip_prefixes(state: dict[str, torch.Tensor], wanted: set[str]) -> dict[str, torch.Tensor]:
    """Drop a prefix every key carries (``module.``, ``_orig_mod.``) when the architecture's keys do not."""
    changed = True
    while changed:
        changed = False
        for p in _PREFIXES:
            if state and all(k.startswith(p) for k in state) and not any(k.startswith(p) for k in wanted):
                state = {k[len(p):]: v for k, v in state.items()}
                changed = True
    return state


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a weights file by name (see the module's docstring for the formats); a
    :class:`WeightsError` naming the file when it is missing, unreadable or refused."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    with open(path, "rb") as f:
        magic = f.read(16)
    if path.suffix == ".safetensors" or (len(magic) >= 9 and magic[8:9] == b"{"):
        return _read_safetensors(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle.UnpicklingError for code or a foreign file, RuntimeError/EOFError for a cut one
        code = _globals_needed(path)
        if code:
            raise WeightsError(f"{path}: refused: loading it needs code to run ({', '.join(code[:_SHOWN])}), which "
                               "torch.load(weights_only=True) does not run; save the state dict alone "
                               "(torch.save(model.state_dict(), path)) or as safetensors") from None
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        detail = next((ln for ln in lines if ln.startswith(("Unsupported", "Trying"))), lines[0] if lines else "")
        raise WeightsError(f"{path}: not a safetensors file or a PyTorch checkpoint that torch.load(weights_only=True) "
                           f"reads ({type(e).__name__}: {detail})") from None
    return _unnest(obj, path)


def _globals_needed(path: Path) -> list[str]:
    """The code a PyTorch checkpoint names (``os.system``, a user's class): what weights_only refuses to run."""
    try:
        return [str(g) for g in torch.serialization.get_unsafe_globals_in_checkpoint(str(path))]
    except Exception:  # not a checkpoint at all
        return []


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise WeightsError(
            f"{path}: not a readable safetensors file ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from None
    if meta.get("format") == "smhsearch.compact":  # a compressed model: its weights are computed, not stored
        raise WeightsError(f"{path}: a compressed model's file (smhsearch.compact) holds its method's variables, not the "
                           "architecture's weights; write them out first: smhsearch.export.save_dense("
                           "smhsearch.load_compact(path), out), or smhsearch export RUN --trial N --format safetensors")
    return state


def load_weights(model: nn.Module, path: str | os.PathLike, head: Head = "keep") -> WeightsInfo:
    """Load the weights file ``path`` into ``model`` in place and return where they came from.

    Every key of the model must be in the file and every tensor of the file must be a key of the
    model with its shape; ``head="reinit"`` lets the misshapen ones keep their fresh values instead.

    >>> import tempfile, os, torch
    >>> from smhsearch.models import create_model
    >>> trained = create_model("mlp", hidden=(16,))
    >>> path = os.path.join(tempfile.mkdtemp(), "mlp.pt"); torch.save(trained.state_dict(), path)
    >>> m = create_model("mlp", hidden=(16,), weights=path)
    >>> all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), trained.state_dict().values()))
    True
    """
    if head not in HEADS:
        raise WeightsError(f"head must be one of {' | '.join(HEADS)}, but got {head!r}")
    path = Path(path)
    own = model.state_dict()
    state = _strip_prefixes(read_state_dict(path), set(own))
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    misshapen = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (" + ", ".join(f"{k} {list(own[k].shape)}" for k in missing[:_SHOWN])
                         + (", ..." if len(missing) > _SHOWN else "") + ")")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (" + ", ".join(f"{k} {list(state[k].shape)}" for k in unexpected[:_SHOWN])
                         + (", ..." if len(unexpected) > _SHOWN else "") + ")")
        raise WeightsError(
            f"{path}: does not fit the architecture: keys {'; '.join(parts)}; is it a file of another architecture?"
        )
    if misshapen and head != "reinit":
        shown = ", ".join(f"{k} {list(state[k].shape)} (the model's {list(own[k].shape)})" for k in misshapen[:_SHOWN])
        raise WeightsError(f"{path}: {len(misshapen)} tensor(s) of other shapes: {shown}"
                           f"{', ...' if len(misshapen) > _SHOWN else ''}; to keep these freshly initialised "
                           "(a classifier for another number of classes), ask head: reinit (--reinit-head)")
    with torch.no_grad():
        for k, v in own.items():
            if k in misshapen:
                continue
            if v.dtype != state[k].dtype and not (v.is_floating_point() and state[k].is_floating_point()):
                raise WeightsError(f"{path}: {k} is {state[k].dtype} in the file, {v.dtype} in the model")
            v.copy_(state[k])
    info = WeightsInfo(str(path), file_sha256(path), head, tuple(misshapen))
    setattr(model, WEIGHTS_ATTR, info)
    return info


def weights_of(model: nn.Module) -> WeightsInfo | None:
    """Where ``model``'s weights came from, or None for a freshly initialised model."""
    return getattr(model, WEIGHTS_ATTR, None)
