"""The ``smhsearch`` command: a table of contents.

Each command is one module beside this one, holding its arguments and its code; only
the module of the command being run is imported, so ``pick`` and ``report`` do not pay
for what ``train`` needs. Bad input (an unknown architecture, a budget the model cannot
meet, a flag that does not apply) prints one message naming the flag and the allowed
values to stderr and exits with status 2, having written nothing.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

from .._extras import MissingExtra
from ._common import EXIT_BAD_INPUT, BadInput

# command -> (module, function that adds its parser, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "models": ("models", "add_models", "list architectures"),
    "methods": ("models", "add_methods", "list compression methods, their presets, axes and options"),
    "compress": ("compress", "add", "compress an architecture to a budget and report its sizes"),
    "train": ("train", "add", "compress (or not), train on a dataset and report one model"),
    "check": ("check", "add", "validate a space and pre-screen every candidate's cost"),
    "run": ("run", "add", "run (or resume) the search a space describes"),
    "report": ("report", "add", "write a run's interactive Pareto report (self-contained HTML)"),
    "pick": ("pick", "add", "the best finished trial under a size budget and other constraints"),
    "bench": ("bench", "add", "time a run's finished models on this machine, for pick and report --speed"),
    "export": ("export", "add", "write a trial's model as deployable files, each checked against the trained model"),
}
NEEDS_PLUGINS = ("methods", "compress", "train")  # commands that look methods up before reading any space


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser; with ``only``, that command's arguments alone (the others are listed, not built)."""
    from .._version import __version__

    p = argparse.ArgumentParser(
        prog="smhsearch", description="Compress networks with Structured Multi-Hashing and search for the model to ship."
    )
    p.add_argument("--version", action="version", version=f"smhsearch {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, adder, text) in COMMANDS.items():
        if only is None or name == only:
            getattr(importlib.import_module(f".{module}", __name__), adder)(sub)
        else:
            sub.add_parser(name, help=text)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    only = command if command in COMMANDS else None
    if only in NEEDS_PLUGINS:
        from ..plugins import PluginError, load_plugins

        try:
            load_plugins()
        except PluginError as e:
            print(f"smhsearch: error: {e}", file=sys.stderr)
            return EXIT_BAD_INPUT
    args = build_parser(only).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (BadInput, MissingExtra) as e:  # MissingExtra: an optional dependency, named with the extra that installs it
        print(f"smhsearch {args.command}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as e:
        from .._atomic import STORAGE_ERRNOS

        if e.errno not in STORAGE_ERRNOS or args.verbose:  # a bug's traceback stays whole, and -v shows it
            raise
        # the storage failed, not the request: one line naming the file, status 1; nothing half-written stays
        print(f"smhsearch {args.command}: error: {e.filename or 'a file'}: {e.strerror}", file=sys.stderr)
        return 1


__all__ = ["BadInput", "build_parser", "main"]
