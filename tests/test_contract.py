"""The method contract (``smhsearch.testing.MethodContract``, STYLE.md #6) run on every registered method.

One test class per method is made from the registry, so a newly registered method is tested
by adding nothing here. Each config is built with a budget of half the base alone (where
the method reads a budget), or with no option at all.
"""

from __future__ import annotations

import subprocess
import sys

from smhsearch.methods import METHODS
from smhsearch.testing import MethodContract

FRACTION = 0.5  # half the base: every method can reach it on every tiny model (rank 1 on the user net needs 40%)


def default_config(name: str):
    cls = METHODS.get(name).config_cls
    return cls(budget=FRACTION) if "budget" in cls.axes else cls()


for _name in METHODS.names():
    globals()[f"Test_{_name}"] = type(f"Test_{_name}", (MethodContract,), {"config": default_config(_name)})


def make(method: str, model_name: str, seed: int = 0, **fields):
    """(base, compressed, input shape) of ``method`` at its contract config on a tiny model: what other tests build on."""
    return globals()[f"Test_{method}"]().make(model_name, seed, **fields)


def test_registry_is_not_empty():
    assert "smh" in METHODS.names()


def test_the_package_does_not_import_the_suite_or_pytest():
    """``smhsearch.testing`` needs pytest (a development dependency): nothing a user imports loads it."""
    code = ("import sys, smhsearch; smhsearch.compress, smhsearch.save_compact, smhsearch.list_methods(); "
            "print(sorted(m for m in ('pytest', 'smhsearch.testing') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
