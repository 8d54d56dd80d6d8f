"""``smhsearch models`` and ``smhsearch methods``: what is registered."""

from __future__ import annotations

import argparse
import json

from ._common import BadInput


def add_models(sub) -> None:
    s = sub.add_parser("models", help="list architectures")
    s.add_argument("--family", help="only this family (resnet_cifar, efficientnet, mobilenet, resnet, mlp, ...; "
                   "timm: timm's models, named timm/<name>)")
    s.add_argument("--json", dest="as_json", action="store_true")
    s.set_defaults(func=models)


def models(args: argparse.Namespace) -> int:
    """List the registered architectures."""
    from ..models import MODELS, list_models

    names = _timm_names() if args.family == "timm" else list_models(args.family)
    if args.family is not None and not names:
        families = sorted({MODELS.get(n).family for n in list_models()} | {"timm"})
        raise BadInput(f"--family: unknown family {args.family!r}; allowed: {', '.join(families)}")
    rows = [{"name": n, "family": MODELS.get(n).family, "num_classes": MODELS.get(n).default_num_classes,
             "input_size": MODELS.get(n).default_input_size, "doc": MODELS.get(n).doc} for n in names]
    if args.as_json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['name']:<20} {r['family']:<13} {r['input_size'] or '?':>4}px  {r['doc']}")
    return 0


def _timm_names() -> list[str]:
    """timm's architectures as smhsearch names them (``timm/<name>``); timm is imported only for this listing."""
    try:
        import timm
    except ImportError:
        raise BadInput("--family: timm is not installed; install it with pip install 'smhsearch[timm]'") from None
    return [f"timm/{n}" for n in timm.list_models()]


def add_methods(sub) -> None:
    s = sub.add_parser("methods", help="list compression methods, their presets, axes and options")
    s.add_argument("--json", dest="as_json", action="store_true")
    s.set_defaults(func=methods)


def methods(args: argparse.Namespace) -> int:
    """List the registered compression methods: config, presets, the space axes they read, their options."""
    from ..methods import METHODS
    from ..methods._config import options_of

    rows = []
    for name in METHODS.names():
        cls = METHODS.get(name).config_cls
        rows.append({"name": name, "config": cls.__name__, "presets": {k: dict(v) for k, v in cls.presets.items()},
                     "axes": list(cls.axes), "space_options": list(cls.space_options),
                     "fields": {k: {"default": v.default, "help": v.describe()} for k, v in options_of(cls).items()}})
    if args.as_json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    for r in rows:
        presets = ", ".join(f"{k}={v}" for k, v in r["presets"].items())
        print(f"{r['name']:<11} {r['config']}({', '.join(r['fields'])})")
        print(f"{'':<11} axes: {', '.join(r['axes'])}; space options: {', '.join(r['space_options']) or 'none'}"
              + (f"; presets: {presets}" if presets else ""))
    return 0
