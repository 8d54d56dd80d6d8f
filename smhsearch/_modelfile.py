"""What a model file may ask for, checked before anything real is built.

A compact or dense file's header names an architecture (registry name and keyword
arguments), a method config and a layout; loading rebuilds what they describe and fills it
from the file's tensors. The header is the file author's to choose, so before a single
tensor is allocated:

- every header entry is JSON of the kind expected (:class:`ModelFileError` names the entry);
- the architecture is a registered one, and its keyword arguments fit its builder's
  signature and annotations (an unknown key, a float where a width goes, are refused);
- the method config is one a registered method accepts;
- the architecture is built on the meta device (shapes, no memory) under a guard that stops
  it as soon as it registers more parameter tensors than the file can describe (each is a
  tensor of the file or an entry of its layout; twice that, as a builder may replace a layer)
  or more parameters than the allowance holds;
- the memory the rebuild needs must fit the allowance: the base's parameters and buffers
  twice (the rebuilt model and, on export, its dense weights) plus the tables a method derives
  per weight (:meth:`MethodConfig.derived_bytes_per_weight`: HashedNets' K indices and signs).

The allowance is ``max(MIN_ALLOWANCE, MAX_EXPANSION x the file's bytes)``: declared limits, not
measured on any model. A compact file 1000x smaller than its dense weights (SMH at a 0.1%
budget) is within them; a 1 KB header asking for 1e8 hidden units or 1e5 hashes is not.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import typing
from pathlib import Path
from typing import Any

MAX_EXPANSION = 4096
"""Bytes of memory a rebuild may need per byte of the file."""
MIN_ALLOWANCE = 256 << 20
"""Bytes any file may rebuild, however small (a small model's file is small)."""
MAX_SIDE = 4096
"""Largest input side a dense file's up-sampling may name (a 4096 px side is already 200 MB a sample)."""


class ModelFileError(ValueError):
    """A model file whose header cannot be used; the message is one line naming the file and the entry."""


def allowance(path: Path) -> int:
    return max(MIN_ALLOWANCE, MAX_EXPANSION * Path(path).stat().st_size)


def entry(path: Path, meta: dict[str, str], key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
    """Header entry ``key`` as JSON of type ``kind`` (``default`` when absent, if given)."""
    if key not in meta:
        if default is ...:
            raise ModelFileError(f"{path}: the header has no {key!r} entry (the file was not written by smhsearch, or was cut)")
        return default
    try:
        value = json.loads(meta[key])
    except ValueError as e:
        raise ModelFileError(f"{path}: header entry {key!r} is not valid JSON ({e})") from None
    if not isinstance(value, kind):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise ModelFileError(f"{path}: header entry {key!r} must be a JSON {names}, but is {type(value).__name__}")
    return value


def check_layout(path: Path, layout: Any) -> list:
    """The method's layout is its own (compared with the rebuilt model's after the build): a list here."""
    if not isinstance(layout, list):
        raise ModelFileError(f"{path}: header entry 'layout' must be a JSON list, but is {type(layout).__name__}")
    return layout


def check_state_metadata(path: Path, value: Any) -> dict | None:
    if value is not None and not (isinstance(value, dict) and all(isinstance(v, dict) for v in value.values())):
        raise ModelFileError(f"{path}: header entry 'state_metadata' must map each module's name to a mapping")
    return value


def check_upsample(path: Path, side: Any) -> int | None:
    if side is not None and (isinstance(side, bool) or not isinstance(side, int) or not 1 <= side <= MAX_SIDE):
        raise ModelFileError(f"{path}: header entry 'upsample' must be null or an input side in 1..{MAX_SIDE}, but is {side!r}")
    return side


def method_config(path: Path, d: dict[str, Any]):
    """The method config a header records, as a registered method's config class accepts it."""
    from .methods._base import config_from_dict

    try:
        config = config_from_dict(d)
    except KeyError:
        from .methods import list_methods

        raise ModelFileError(f"{path}: header entry 'method': unknown method {d.get('method')!r}; "
                             f"known: {', '.join(list_methods())}") from None
    except (ValueError, TypeError) as e:
        raise ModelFileError(f"{path}: header entry 'method': {str(e).splitlines()[0]}") from None
    return config


def check_arch(path: Path, arch: Any) -> tuple[str, dict[str, Any]]:
    """(registry name, keyword arguments) of a header's architecture, the arguments checked against the builder's
    signature and annotations."""
    from pydantic import TypeAdapter, ValidationError

    from .models import MODELS

    if not (isinstance(arch, dict) and isinstance(arch.get("name"), str) and isinstance(arch.get("kwargs", {}), dict)):
        raise ModelFileError(f"{path}: header entry 'arch' must be {{\"name\": an architecture, \"kwargs\": {{...}}}}")
    name, kwargs = arch["name"], dict(arch.get("kwargs") or {})
    if name not in MODELS:
        raise ModelFileError(f"{path}: header entry 'arch': {MODELS.unknown_message(name)}")
    builder = MODELS.get(name).builder
    signature = inspect.signature(builder)
    try:
        hints = typing.get_type_hints(builder)
    except Exception:  # annotations that do not resolve (a user factory's, under TYPE_CHECKING): the signature still binds
        hints = {}
    for k in ("num_classes", "in_channels"):
        v = kwargs.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ModelFileError(f"{path}: header entry 'arch': {k} must be an int >= 1, but is {v!r}")
    try:
        signature.bind(**{"num_classes": 1, "in_channels": 1, **kwargs})
    except TypeError as e:
        allowed = [p for p in signature.parameters if p not in ("num_classes", "in_channels")]
        raise ModelFileError(f"{path}: header entry 'arch': {name} does not take these arguments ({e}); "
                             f"allowed: num_classes, in_channels, {', '.join(allowed)}") from None
    for k, v in kwargs.items():
        if k in hints and k not in ("num_classes", "in_channels"):
            try:
                TypeAdapter(hints[k]).validate_python(v, strict=True)
            except ValidationError as e:
                raise ModelFileError(f"{path}: header entry 'arch': {name}'s {k} must be {hints[k]}, but is {v!r} "
                                     f"({e.errors()[0]['msg']})") from None
    return name, kwargs


class _TooLarge(Exception):
    pass


@contextlib.contextmanager
def _registration_guard(max_tensors: int, max_params: int):
    """Stop a module build (raise :class:`_TooLarge`) once it registers more parameter tensors or parameters."""
    from torch.nn.modules import module

    seen = {"tensors": 0, "params": 0}

    def on_parameter(mod, name, param):
        if param is None:
            return
        seen["tensors"] += 1
        seen["params"] += param.numel()
        if seen["tensors"] > max_tensors:
            raise _TooLarge(f"more than {max_tensors} parameter tensors")
        if seen["params"] > max_params:
            raise _TooLarge(f"more than {max_params:,} parameters")

    handle = module.register_module_parameter_registration_hook(on_parameter)
    try:
        yield seen
    finally:
        handle.remove()


def check_size(path: Path, name: str, kwargs: dict[str, Any], described: int, config=None) -> None:
    """Build ``name(**kwargs)`` on the meta device under the guard and refuse it when the rebuild would need more
    than the file's allowance. ``described``: parameter tensors the file can account for (tensors plus layout)."""
    import torch

    from .models import create_model

    limit = allowance(path)
    size = Path(path).stat().st_size
    try:
        with torch.device("meta"), _registration_guard(2 * described + 8, limit // 8):
            base = create_model(name, **kwargs)
    except _TooLarge as e:
        raise ModelFileError(
            f"{path}: header entry 'arch' asks for {name} with {e}, more than a {size:,}-byte file "
            f"can hold (allowance {limit:,} bytes: {MAX_EXPANSION}x the file, at least {MIN_ALLOWANCE >> 20} MiB)"
        ) from None
    except (TypeError, ValueError, RuntimeError) as e:
        raise ModelFileError(
            f"{path}: header entry 'arch': {name} cannot be built from {kwargs}: {str(e).splitlines()[0]}"
        ) from None
    weights = sum(p.numel() for p in base.parameters())
    base_bytes = sum(t.numel() * t.element_size() for t in (*base.parameters(), *base.buffers()))
    need = 2 * base_bytes + (0 if config is None else weights * config.derived_bytes_per_weight())
    if need > limit:
        raise ModelFileError(
            f"{path}: rebuilding it needs about {need:,} bytes ({name}, {weights:,} weights"
            f"{'' if config is None else f', method {config.method}'}), more than a {size:,}-byte file may "
            f"ask for (allowance {limit:,} bytes: {MAX_EXPANSION}x the file, at least {MIN_ALLOWANCE >> 20} MiB)"
        )
