"""The README's API example runs and prints what it claims."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(tmp_path, monkeypatch):
    text = README.read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(block, "README.md", "exec"), ns)  # noqa: S102 - our own documentation
    claimed = int(re.search(r"stored_parameters\(model\)\s+# ([\d,]+)", block).group(1).replace(",", ""))
    assert ns["smhsearch"].measure.stored_parameters(ns["model"]) == claimed
    assert ns["again"].stored_count() == claimed
