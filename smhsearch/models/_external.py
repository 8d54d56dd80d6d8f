"""Architectures from outside the registry: timm's models and a user's own factory.

Both are named by a string, so a space's ``arch`` axis, a study's categorical parameter,
a trial's record and a compact file's header carry them as they carry ``resnet32``:

- ``timm/<name>``: ``timm.create_model(name, pretrained=False, ...)``; timm is imported
  only when such a name is looked up (``pip install 'smhsearch[timm]'``);
- ``package.module:factory``: ``factory(**kwargs)`` of an importable module, which must
  return an ``nn.Module``.

Either may carry keyword arguments, written as a call with literal values:
``package.module:factory(width=8, hidden=[16, 16])`` (a space may write the mapping
``{import: "package.module:factory", kwargs: {width: 8}}``, which :func:`arch_name`
turns into that string, with the keywords sorted). The dataset's class count, channels
and (for a model built for one input size) side are passed as each builder names them:
timm's ``num_classes``, ``in_chans`` and ``img_size``; a factory's ``num_classes``,
``in_channels`` and ``image_size`` where its signature has them.

No weights are downloaded, so ``pretrained`` is refused: trained weights come from a local file
(``create_model(..., weights=FILE)``, :mod:`smhsearch.models._weights`).

>>> arch_name({"import": "pkg.nets:small", "kwargs": {"width": 8, "act": "relu"}})
"pkg.nets:small(act='relu', width=8)"
>>> split_call("timm/resnet10t")
('timm/resnet10t', {})
"""

from __future__ import annotations

import ast
import difflib
import importlib
import inspect
import re
from typing import Any, Iterable

from .._registry import UnknownNameError

TIMM = "timm/"
IMPLIED = ("num_classes", "in_channels", "image_size")
"""What the dataset sets; a spec's own kwargs may not set them."""
_TARGET = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


class ArchError(UnknownNameError):
    """An architecture spec that cannot be built: the message names the spec and what is wrong."""


def is_external(name: str) -> bool:
    """Whether ``name`` is a timm model or a user factory (not a registry name)."""
    return name.startswith(TIMM) or ":" in name


def _literal(key: str, v: Any) -> Any:
    try:
        if ast.literal_eval(repr(v)) == v:
            return v
    except (ValueError, SyntaxError):
        pass
    raise ArchError(f"kwargs: {key}={v!r} is not a plain value (numbers, strings, booleans, null, lists, mappings)")


def arch_name(v: Any) -> str:
    """The architecture string of a space's ``arch`` entry: a name, or ``{import: "pkg.mod:factory", kwargs: {...}}``."""
    if isinstance(v, str):
        split_call(v)  # a malformed call is refused here
        return v
    if not isinstance(v, dict):
        raise ArchError(
            f"an architecture is a name or a mapping {{import: 'package.module:factory', kwargs: {{...}}}}, but got {v!r}"
        )
    unknown = sorted(set(v) - {"import", "kwargs"})
    if unknown or "import" not in v:
        raise ArchError(f"an architecture mapping has keys import (required) and kwargs, but got {sorted(v)}")
    target, kwargs = v["import"], v.get("kwargs") or {}
    if not isinstance(target, str) or not _TARGET.match(target):
        raise ArchError(f"import: {target!r} is not 'package.module:factory'")
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) and k.isidentifier() for k in kwargs):
        raise ArchError(f"kwargs: a mapping of keyword names to values, but got {kwargs!r}")
    return format_call(target, {k: _literal(k, x) for k, x in kwargs.items()})


def format_call(target: str, kwargs: dict[str, Any]) -> str:
    return f"{target}({', '.join(f'{k}={kwargs[k]!r}' for k in sorted(kwargs))})" if kwargs else target


def split_call(name: str) -> tuple[str, dict[str, Any]]:
    """(target, kwargs) of ``target`` or ``target(k=literal, ...)``."""
    if not name.endswith(")"):
        return name, {}
    head = name[: name.index("(")] if "(" in name else name
    try:
        call = ast.parse(f"_f{name[len(head):]}", mode="eval").body
        if not isinstance(call, ast.Call) or call.args:
            raise ValueError("only keyword arguments")
        return head, {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg is not None}
    except (SyntaxError, ValueError) as e:
        raise ArchError(f"{name!r}: keyword arguments are written target(key=value, ...) with literal values ({e})") from None


def resolve(name: str) -> dict[str, Any] | None:
    """The fields of a registry entry (``ModelEntry``) for a timm name or a user factory; None for any other name."""
    if name.startswith(TIMM):
        return _timm_entry(name)
    if ":" in name:
        return _import_entry(name)
    return None


def _implied_given(name: str, kwargs: dict[str, Any], own: Iterable[str]) -> None:
    given = sorted(set(kwargs) & set(own))
    if given:
        raise ArchError(
            f"{name}: {', '.join(given)} is set from the dataset (or create_model's arguments), not in the architecture's kwargs"
        )


def _timm_entry(name: str) -> dict[str, Any]:
    model, kwargs = split_call(name[len(TIMM):])
    try:
        import timm
        from timm.models import get_pretrained_cfg
    except ImportError:
        raise ArchError(f"{name}: timm is not installed; install it with pip install 'smhsearch[timm]'") from None
    if not timm.is_model(model):
        near = difflib.get_close_matches(model, timm.list_models(), n=5, cutoff=0.6)
        raise ArchError(f"{name}: timm has no model {model!r}" + (f"; nearest: {', '.join(TIMM + n for n in near)}" if near else
                                                                  "; timm.list_models() lists them"))
    _implied_given(name, kwargs, ("num_classes", "in_chans", "img_size", *IMPLIED))
    if "pretrained" in kwargs or "checkpoint_path" in kwargs or "pretrained_cfg" in kwargs:
        raise ArchError(f"{name}: smhsearch downloads nothing: name a local weights file instead "
                        "(create_model(..., weights=FILE), a space's arch entry {name: ..., weights: FILE}, --weights FILE)")
    cfg = get_pretrained_cfg(model)
    fixed = bool(cfg and cfg.fixed_input_size)

    def build(num_classes: int, in_channels: int, image_size: int | None = None, **kw: Any):
        sized = {"img_size": image_size} if image_size is not None else {}
        try:
            return timm.create_model(
                model, pretrained=False, num_classes=num_classes, in_chans=in_channels, **sized, **{**kwargs, **kw}
            )
        except TypeError as e:  # a keyword the model does not take
            raise ValueError(f"{name}: {e}") from None

    return dict(builder=build, family="timm", default_num_classes=int(cfg.num_classes) if cfg and cfg.num_classes else 1000,
                default_input_size=int(cfg.input_size[-1]) if cfg else None, doc=f"timm's {model}, randomly initialised",
                takes_image_size=fixed, takes_width=False)


def _import_entry(name: str) -> dict[str, Any]:
    from torch import nn

    target, kwargs = split_call(name)
    if not _TARGET.match(target):
        raise ArchError(
            f"{name}: a user architecture is 'package.module:factory' (with kwargs: 'package.module:factory(key=value)')"
        )
    module_name, _, attr = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise ArchError(f"{name}: cannot import {module_name} ({e}); it must be importable where smhsearch runs "
                        "(installed, or on PYTHONPATH)") from None
    except Exception as e:  # the user's module failed while importing
        raise ArchError(f"{name}: importing {module_name} failed: {type(e).__name__}: {e}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ArchError(f"{name}: module {module_name} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ArchError(f"{name}: {target} is a {type(obj).__name__}, not a callable that returns an nn.Module")
    try:
        params = dict(inspect.signature(obj).parameters)
    except (TypeError, ValueError):  # a builtin without a signature: pass only the spec's kwargs
        params = {}
    _implied_given(name, kwargs, IMPLIED)
    if params:
        try:
            inspect.signature(obj).bind_partial(**kwargs)
        except TypeError as e:
            raise ArchError(f"{name}: kwargs do not fit {target}{inspect.signature(obj)}: {e}") from None
    takes = {k for k in (*IMPLIED, "width") if k in params and params[k].kind != inspect.Parameter.POSITIONAL_ONLY}

    def default(key: str, fallback: int | None) -> int | None:
        d = params[key].default if key in params else None
        return d if isinstance(d, int) and not isinstance(d, bool) else fallback

    def build(num_classes: int, in_channels: int, **kw: Any) -> nn.Module:
        passed = {"num_classes": num_classes, "in_channels": in_channels, **kw}
        model = obj(**{**kwargs, **{k: v for k, v in passed.items() if k in takes or k not in (*IMPLIED, "width")}})
        if not isinstance(model, nn.Module):
            raise ArchError(f"{name}: {target} returned a {type(model).__name__}, not an nn.Module")
        return model

    return dict(
        builder=build,
        family="user",
        default_num_classes=default("num_classes", 10),
        default_input_size=default("image_size", None),
        default_in_channels=default("in_channels", 3),
        doc=(inspect.getdoc(obj) or "").split("\n")[0],
        takes_image_size="image_size" in takes,
        takes_width="width" in takes,
    )


def imported_module(arch: dict[str, Any] | None) -> str | None:
    """The module a recorded architecture (``{"name": ..., "kwargs": ...}``) imports to rebuild, if any
    (timm is a library, not user code)."""
    if not arch or not isinstance(arch.get("name"), str) or arch["name"].startswith(TIMM) or ":" not in arch["name"]:
        return None
    return split_call(arch["name"])[0].partition(":")[0]


def check_import_allowed(arch: dict[str, Any] | None, allow_import: Iterable[str], where: str) -> None:
    """Refuse to rebuild a recorded user architecture whose module the caller did not name.

    A file's header is data: importing what it names would run whatever code that module
    holds. ``allow_import`` lists the modules (or packages: ``pkg`` allows ``pkg.nets``) the
    caller agrees to import.
    """
    module = imported_module(arch)
    if module is None:
        return
    allowed = list(allow_import)
    if not any(module == a or module.startswith(a + ".") for a in allowed):
        raise PermissionError(
            f"{where} rebuilds its model by importing {module} ({arch['name']}); "  # type: ignore[index]
            f"name that module to allow it: allow_import=[{module!r}] (the command line: --allow-import {module})"
        )
