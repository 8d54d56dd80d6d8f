"""The code holds to its declared style: ruff's rules of pyproject.toml, lines at most the declared length."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUFF = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")


@pytest.mark.skipif(RUFF is None, reason="ruff is not installed (pip install -e '.[dev]' installs it)")
def test_ruff_finds_nothing():
    r = subprocess.run([RUFF, "check", "smhsearch", "tests", "benchmarks", "scripts", "docs"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def test_the_declared_line_length_is_enforced():
    text = (ROOT / "pyproject.toml").read_text()
    assert "line-length = 130" in text and '"E501"' in text
