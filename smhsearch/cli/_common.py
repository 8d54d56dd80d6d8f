"""What every command shares: the bad-input error, tables, and flags derived from typed configs.

A config's :class:`~smhsearch.ConfigError` names its field; :func:`method_flag` and :func:`train_flag`
turn that field into the flag that sets it, so a refusal names the flag the user typed.

Method flags come from the registered method configs' fields and training flags from
:class:`smhsearch.train.TrainConfig`'s: a method added in one file gets its flags here
without an edit. A flag that was not given is absent (``argparse.SUPPRESS``), so a
command can tell "not given" from "given as the default", and a flag that does not
apply to the chosen method is an error, never silently dropped.
"""

from __future__ import annotations

import argparse
import json
import types
import typing
from pathlib import Path
from typing import Any

from .._errors import ConfigError

EXIT_BAD_INPUT = 2


class BadInput(Exception):
    """Input the user must fix; the CLI prints it and exits with status 2."""


def arch_entry(name: str, flag: str = "ARCH"):
    """The registry entry of an architecture named on the command line (a registry name, ``timm/<name>`` or
    ``package.module:factory(...)``, imported now); BadInput naming ``flag`` and the nearest names."""
    from ..models import MODELS
    from .._registry import UnknownNameError

    try:
        return MODELS.get(name)
    except UnknownNameError as e:
        raise BadInput(f"{flag}: {e}") from None


def table(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_typed(group, name: str, annotation: Any, help_text: str) -> None:
    """One flag for a typed field: bools as --x/--no-x, Literals as choices, the rest parsed later by the field's type."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)] if is_union(annotation) else [annotation]
    if args == [bool]:
        group.add_argument(
            flag(name), dest=name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text
        )
        return
    choices = typing.get_args(args[0]) if len(args) == 1 and typing.get_origin(args[0]) is typing.Literal else None
    metavar = "|".join(map(str, choices)) if choices else name.upper()
    group.add_argument(flag(name), dest=name, default=argparse.SUPPRESS, metavar=metavar, help=help_text)


def is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def given(args: argparse.Namespace, names) -> dict[str, Any]:
    """The flags among ``names`` the user gave (absent ones were suppressed)."""
    return {n: getattr(args, n) for n in names if hasattr(args, n)}


# --- methods -------------------------------------------------------------------------------------

def method_flag_names() -> list[str]:
    """Every method config field (but seed, which is its own flag), in first-seen order."""
    from ..methods import METHODS
    from ..methods._config import options_of

    names: dict[str, None] = {}
    for m in METHODS.names():
        names.update(dict.fromkeys(k for k in options_of(METHODS.get(m).config_cls) if k != "seed"))
    return list(names)


def add_method_flags(parser: argparse.ArgumentParser, default_method: str) -> None:
    from ..methods import METHODS
    from ..methods._config import options_of
    from ..methods._schema import applies_to, method_names

    parser.add_argument("--method", default=default_method, help=f"{' | '.join(method_names())} (default {default_method})")
    group = parser.add_argument_group("method options (each applies to the methods named)")
    for name in method_flag_names():
        owners = applies_to(name)
        info = options_of(METHODS.get(next(o for o in owners if o in METHODS)).config_cls)[name]
        text = "stored parameters: 46000, 46K, 5.3M, 25%% or 0.25" if name == "budget" else info.describe().replace("%", "%%")
        add_typed(group, name, info.annotation, f"{text} [{', '.join(owners)}]")


def method_from_flags(args: argparse.Namespace, seed: int):
    """The method config ``--method`` and its flags describe (``Dense()`` for dense); BadInput naming the flag when wrong."""
    from ..methods._config import options_of
    from ..methods._schema import applies_to, build_config, coerce, method_names, resolve, unknown_method

    method = args.method
    options = given(args, method_flag_names())
    if method not in method_names():
        raise BadInput(f"--method: {unknown_method(method)}")
    entry, _ = resolve(method)
    fields = options_of(entry.config_cls)
    for k in options:
        if k not in fields:
            raise BadInput(f"{flag(k)}: does not apply to method {method!r} (it applies to: {', '.join(applies_to(k))})")
    try:
        values = {k: coerce(fields[k], v) if isinstance(v, str) else v for k, v in options.items()}
    except ConfigError as e:
        raise BadInput(f"{method_flag(e)}: {e}") from None
    if "budget" in fields and fields["budget"].default is None and "budget" not in values and "alpha" not in values:
        raise BadInput(f"--budget: method {method!r} needs a budget (46000, 46K, 5.3M, 25% or 0.25)")
    try:
        return build_config(method, {}, values, seed=seed)
    except ConfigError as e:
        raise BadInput(f"{method_flag(e)}: {e}") from None
    except (ValueError, TypeError) as e:
        raise BadInput(f"--method: {e}") from None


def method_flag(err: ConfigError) -> str:
    """The flag that sets the method config field a ConfigError is about (a scope rule's parts: ``--scope``)."""
    return flag(err.field.split(".")[0])


def train_flag(err: ConfigError) -> str:
    """The flag that sets the training config field a ConfigError is about (``distill.alpha``: ``--distill-alpha``)."""
    return "--distill" if err.field == "distill" else flag(err.field.replace(".", "_"))


def config_flag(err: ConfigError) -> str:
    """The flag of a job's ConfigError: a training field's (``distill.*``), the weights' head rule, or a method field's."""
    if err.field.startswith("distill"):
        return train_flag(err)
    return "--reinit-head" if err.field == "head" else method_flag(err)


# --- trained weights -----------------------------------------------------------------------------

def add_weights_flags(parser: argparse.ArgumentParser, what: str = "the model starts from them") -> None:
    parser.add_argument("--weights", type=Path, metavar="FILE",
                        help=f"trained weights (safetensors, or a PyTorch checkpoint read with weights_only=True): {what}")
    parser.add_argument("--reinit-head", action="store_true", help="with --weights: the file's tensors that do not fit "
                        "(a classifier for another number of classes) keep their fresh initialisation, and are named")


def weights_from_flags(args: argparse.Namespace, config=None) -> tuple[str | None, str]:
    """(weights file or None, head rule) of ``--weights``/``--reinit-head``; BadInput where a flag needs ``--weights``
    (``--reinit-head``, ``--init fit``)."""
    weights = str(args.weights) if args.weights is not None else None
    if weights is None and args.reinit_head:
        raise BadInput("--reinit-head: applies only with --weights FILE")
    if weights is None and config is not None and config.init == "fit":
        raise BadInput("--init: fit needs --weights FILE (the trained weights to fit); without them the start is scratch")
    return weights, "reinit" if args.reinit_head else "keep"


def weights_error(err: Exception) -> BadInput:
    """A weights file that cannot be used (a WeightsError names the file), as the bad input of ``--weights``."""
    return BadInput(f"--weights: {err}")


# --- training ------------------------------------------------------------------------------------

TRAIN_FLAGS_SKIP = ("seed", "distill")  # distill: --distill and a --distill-FIELD flag per DistillConfig field


def add_train_flags(parser: argparse.ArgumentParser) -> None:
    import dataclasses

    from ..distill import DistillConfig
    from ..train import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    group = parser.add_argument_group("training (defaults: smhsearch.train.TrainConfig)")
    for f in dataclasses.fields(TrainConfig):
        if f.name not in TRAIN_FLAGS_SKIP:
            add_typed(group, f.name, hints[f.name], f"{f.metadata.get('help', '')} (default {f.default})".replace("%", "%%"))
    kd = parser.add_argument_group("distillation (smhsearch.distill.DistillConfig; the --distill-* flags need --distill)")
    kd.add_argument("--distill", action="store_true", default=argparse.SUPPRESS,
                    help="distil from a teacher: (1-alpha)*CE + alpha*T^2*KL(teacher/T || student/T)")
    kd_hints = typing.get_type_hints(DistillConfig)
    for f in dataclasses.fields(DistillConfig):
        add_typed(
            kd, f"distill_{f.name}", kd_hints[f.name], f"{f.metadata.get('help', '')} (default {f.default})".replace("%", "%%")
        )


def distill_from_flags(args: argparse.Namespace):
    """The DistillConfig ``--distill`` and its ``--distill-*`` flags describe, or None; BadInput naming the flag."""
    import dataclasses

    from ..distill import DistillConfig

    names = [f.name for f in dataclasses.fields(DistillConfig)]
    values = {n: getattr(args, f"distill_{n}") for n in names if hasattr(args, f"distill_{n}")}
    if not hasattr(args, "distill"):
        if values:
            raise BadInput(f"{flag('distill_' + next(iter(values)))}: applies with --distill only")
        return None
    typed = {}
    for k, v in values.items():
        try:
            typed[k] = v if k == "teacher" else (int(v) if k == "teacher_epochs" else float(v))
        except ValueError:
            raise BadInput(f"{flag('distill_' + k)}: {v!r} is not a number") from None
    try:
        return DistillConfig(**typed)
    except ConfigError as e:
        raise BadInput(f"{train_flag(e.within('distill'))}: {e}") from None


def train_from_flags(args: argparse.Namespace, seed: int):
    import dataclasses

    from pydantic import TypeAdapter, ValidationError

    from ..train import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    values = given(args, [f.name for f in dataclasses.fields(TrainConfig) if f.name not in TRAIN_FLAGS_SKIP])
    typed = {}
    for k, v in values.items():
        try:
            typed[k] = TypeAdapter(hints[k]).validate_python(v, strict=False) if isinstance(v, str) else v
        except ValidationError as e:
            raise BadInput(f"{flag(k)}: {v!r} is not valid ({e.errors()[0]['msg']})") from None
    distill = distill_from_flags(args)
    try:
        config = TrainConfig(**typed, seed=seed, distill=distill)
        config.check_set(typed)  # a flag given for another optimizer (--momentum with adamw) is refused, even at its default
    except ConfigError as e:
        raise BadInput(f"{train_flag(e)}: {e}") from None
    return config


# --- shared readers ------------------------------------------------------------------------------

def load_space(path: Path):
    from ..space import SpaceError
    from ..space import load_space as load

    try:
        return load(path)
    except SpaceError as e:
        raise BadInput(str(e)) from None


def load_run(run_path: Path, speed: str | None = None):
    """The run at ``run_path``; with ``speed``, its speed figures from that ``smhsearch bench`` target (``--speed``)."""
    from ..runs import RunError
    from ..runs import load_run as load

    try:
        run = load(run_path)
    except RunError as e:
        raise BadInput(f"RUN: {e}") from None
    try:
        return run if speed is None else run.with_speed(speed)
    except RunError as e:
        raise BadInput(f"--speed: {e}") from None


def accuracy_key(accuracy: str) -> str:
    keys = {"val": "val_acc", "test": "test_acc"}
    if accuracy not in keys:
        raise BadInput(f"--accuracy: unknown accuracy {accuracy!r}; allowed: val, test")
    return keys[accuracy]


def print_facts(facts: dict, as_json: bool) -> None:
    from .._budget import format_count

    if as_json:
        print(json.dumps(facts, indent=2, default=str))
        return
    rows = [(k, format_count(v) if isinstance(v, int) and k.endswith(("parameters", "flops_per_sample")) else
             (f"{v:.2f}x" if k == "compression" else (f"{v:.4f}" if isinstance(v, float) else str(v)))) for k, v in facts.items()]
    print(table(rows))


def refuse_overwrite(path: Path | None, force: bool, what: str = "--out") -> None:
    """No command replaces a user's file (or fills a non-empty folder) unless --force says so."""
    if path is None or force or not path.exists():
        return
    if path.is_dir() and not any(path.iterdir()):
        return
    raise BadInput(f"{what}: {path} exists; nothing was written (pass --force to replace it)")
