"""The ``smhsearch`` command.

Every subcommand is a typed function; argparse only maps flags onto it. Bad input
(an unknown architecture, a budget the model cannot meet, ...) prints one message
naming the flag and the allowed values to stderr and exits with status 2, having
written nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Callable, Sequence

EXIT_BAD_INPUT = 2


class BadInput(Exception):
    """Input the user must fix; the CLI prints it and exits with status 2."""


def _table(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def cmd_models(family: str | None = None, as_json: bool = False) -> int:
    """List the registered architectures."""
    from .models import MODELS, list_models

    names = list_models(family)
    if family is not None and not names:
        families = sorted({MODELS.get(n).family for n in list_models()})
        raise BadInput(f"--family: unknown family {family!r}; allowed: {', '.join(families)}")
    rows = [{"name": n, "family": MODELS.get(n).family, "num_classes": MODELS.get(n).default_num_classes,
             "input_size": MODELS.get(n).default_input_size, "doc": MODELS.get(n).doc} for n in names]
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['name']:<20} {r['family']:<13} {r['input_size']:>4}px  {r['doc']}")
    return 0


def cmd_methods() -> int:
    """List the registered compression methods and their config fields."""
    import dataclasses

    from .methods import METHODS

    for name in METHODS.names():
        cls = METHODS.get(name).config_cls
        fields = ", ".join(f.name for f in dataclasses.fields(cls))
        print(f"{name:<10} {cls.__name__}({fields})")
    return 0


def cmd_compress(arch: str, budget: str | None, method: str = "smh", scope: str = "all", scale: str = "fixed", seed: int = 0,
                 num_classes: int | None = None, in_channels: int | None = None, input_size: int | None = None,
                 out: Path | None = None, as_json: bool = False, hashes: int = 1, alpha: float | None = None,
                 resolution: bool = False) -> int:
    """Compress an architecture to a budget and print its sizes and costs; optionally save the compact file."""
    from . import measure
    from ._budget import format_count
    from .export import save_compact
    from .methods import METHODS, compress
    from .models import MODELS, create_model

    if arch not in MODELS:
        raise BadInput(f"ARCH: {MODELS.unknown_message(arch)}")
    if method not in METHODS:
        raise BadInput(f"--method: {METHODS.unknown_message(method)}")
    cls = METHODS.get(method).config_cls
    kwargs = {"budget": None if budget is None else _budget_arg(budget), "scope": scope, "scale": scale, "seed": seed,
              "hashes": hashes, "alpha": alpha, "resolution": resolution}
    kwargs = {k: v for k, v in kwargs.items() if k in cls.__dataclass_fields__}
    if budget is None and "alpha" not in kwargs:
        raise BadInput(f"--budget: method {method!r} needs a budget (46000, 46K, 5.3M, 25% or 0.25)")
    try:
        config = cls(**kwargs)
        base = create_model(arch, num_classes=num_classes, in_channels=in_channels)
        model = compress(base, config)
    except ValueError as e:
        raise BadInput(f"{_flag_for(str(e))}{e}") from None
    info = MODELS.get(arch)
    side = input_size or info.default_input_size
    shape = (base.smhsearch_arch["kwargs"]["in_channels"], side, side)
    model.set_progress(1.0)  # report the model as it stands after training (gradual pruning finishes)
    base_count = measure.stored_parameters(base)
    facts = {
        "arch": arch,
        "method": config.to_dict(),
        "base_parameters": base_count,
        "stored_parameters": measure.stored_parameters(model),
        "virtual_parameters": measure.virtual_parameters(model),
        "compression": base_count / measure.stored_parameters(model),
        "flops_per_sample": measure.flops(model, shape),
        "input_shape": list(shape),
        "compact_bytes": measure.compact_bytes(model),
        **{f"{method}_{k}": v for k, v in model.describe().items() if not isinstance(v, (list, dict))},
    }
    if out is not None:
        facts["saved"] = str(save_compact(model, out))
    if as_json:
        print(json.dumps(facts, indent=2))
    else:
        rows = [(k, format_count(v) if isinstance(v, int) and k.endswith(("parameters", "flops", "flops_per_sample")) else
                 (f"{v:.2f}x" if k == "compression" else str(v))) for k, v in facts.items()]
        print(_table(rows))
    return 0


def _budget_arg(text: str) -> int | float | str:
    """Budgets from the command line: digits are an absolute count, everything else is parsed as given."""
    t = text.strip()
    if t.isdigit():
        return int(t)
    try:
        f = float(t)
        return f if f < 1 else int(f)
    except ValueError:
        return t


def _flag_for(message: str) -> str:
    """The flag a config error is about: messages start with the key, after an optional 'METHOD: '."""
    head = message.split(": ", 1)[1] if message[:12].count(": ") and message.split(": ", 1)[0].isalpha() else message
    for key in ("budget", "scope", "scale", "seed", "num_classes", "in_channels", "hashes", "alpha", "resolution", "give exactly one"):
        if head.startswith(key):
            return "--budget/--alpha: " if key == "give exactly one" else f"--{key.replace('_', '-')}: "
    return ""


def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__

    p = argparse.ArgumentParser(prog="smhsearch", description="Compress networks with Structured Multi-Hashing and search for the model to ship.")
    p.add_argument("--version", action="version", version=f"smhsearch {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("models", help="list architectures")
    s.add_argument("--family", help="only this family (resnet_cifar, efficientnet, mobilenet, resnet, mlp)")
    s.add_argument("--json", dest="as_json", action="store_true")
    s.set_defaults(func=lambda a: cmd_models(a.family, a.as_json))

    s = sub.add_parser("methods", help="list compression methods")
    s.set_defaults(func=lambda a: cmd_methods())

    s = sub.add_parser("compress", help="compress an architecture to a budget and report its sizes")
    s.add_argument("arch", metavar="ARCH", help="architecture name (see `smhsearch models`)")
    s.add_argument("--budget", help="stored parameters: 46000, 46K, 5.3M, 25%% or 0.25 (width: or --alpha)")
    s.add_argument("--method", default="smh", help="compression method (see `smhsearch methods`)")
    s.add_argument("--scope", default="all", help="all | conv")
    s.add_argument("--scale", default="fixed", help="fixed | learnable")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--hashes", type=int, default=1, help="hashednets: number of independent hash functions")
    s.add_argument("--alpha", type=float, help="width: the multiplier itself, instead of a budget")
    s.add_argument("--resolution", action="store_true", help="width: up-sample the input to keep the base FLOPs")
    s.add_argument("--num-classes", type=int)
    s.add_argument("--in-channels", type=int)
    s.add_argument("--input-size", type=int, help="input side in pixels for FLOPs (default: the architecture's)")
    s.add_argument("--out", type=Path, help="write the compact file here")
    s.add_argument("--json", dest="as_json", action="store_true")
    s.set_defaults(func=lambda a: cmd_compress(a.arch, a.budget, a.method, a.scope, a.scale, a.seed, a.num_classes,
                                               a.in_channels, a.input_size, a.out, a.as_json, a.hashes, a.alpha,
                                               a.resolution))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except BadInput as e:
        print(f"smhsearch {args.command}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
