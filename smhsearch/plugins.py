"""Plugins: modules that register methods, models or datasets, imported before anything is looked up.

A method, architecture or dataset added in a user's own module (``register_method``,
``register_model``, ``register_dataset``) is found by smhsearch once that module is
imported. Three ways name it, and all three are honoured by the driver and by every
trial worker:

- a space's ``plugins: [mypkg.methods]`` key;
- the environment variable ``SMHSEARCH_PLUGINS=mypkg.methods,other.module``;
- the entry-point group ``smhsearch.plugins`` of an installed package.

The module must be importable where the trial runs (installed, or on ``PYTHONPATH``).
"""

from __future__ import annotations

import importlib
import os
from typing import Iterable

ENV = "SMHSEARCH_PLUGINS"
ENTRY_POINTS = "smhsearch.plugins"


class PluginError(ImportError):
    """A named plugin module that cannot be imported; the message names it and why."""


def load_plugins(names: Iterable[str] = ()) -> list[str]:
    """Import ``names``, the modules in ``$SMHSEARCH_PLUGINS`` and the ``smhsearch.plugins`` entry points;
    return what was imported."""
    from importlib.metadata import entry_points

    wanted = [n.strip() for n in [*names, *os.environ.get(ENV, "").split(",")] if n and n.strip()]
    done = []
    for name in dict.fromkeys(wanted):
        try:
            importlib.import_module(name)
        except Exception as e:  # a plugin's own error is reported, not hidden behind ours
            raise PluginError(f"cannot import plugin module {name!r}: {type(e).__name__}: {e}") from e
        done.append(name)
    for ep in entry_points(group=ENTRY_POINTS):
        try:
            ep.load()
        except Exception as e:
            raise PluginError(
                f"cannot load entry point {ep.name!r} ({ep.value}) of group {ENTRY_POINTS}: {type(e).__name__}: {e}"
            ) from e
        done.append(ep.value)
    return done
