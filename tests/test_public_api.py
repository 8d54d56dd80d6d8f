"""The public API is typed (PEP 561) and its docstring examples run (as doctests, in `make test`)."""

from __future__ import annotations

import doctest
import importlib
import subprocess
import sys
from importlib import resources

import smhsearch


def test_the_package_says_it_is_typed():
    assert resources.files("smhsearch").joinpath("py.typed").is_file()


def test_every_public_name_resolves_and_is_documented():
    for name in smhsearch.__all__:
        obj = getattr(smhsearch, name)
        assert obj is not None and (name == "__version__" or obj.__doc__), name
    assert set(smhsearch.__all__) <= set(dir(smhsearch))


def test_importing_the_package_loads_no_torch():
    code = "import sys, smhsearch; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


def test_the_package_example_runs():
    # the docstring of smhsearch itself: compress ResNet-32 to 46K stored parameters and materialise it
    result = doctest.testmod(importlib.import_module("smhsearch"), verbose=False)
    assert result.attempted >= 4 and result.failed == 0
