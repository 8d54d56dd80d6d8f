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


def test_readme_lists_every_command_and_only_real_ones():
    from smhsearch.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    commands = set(sub.choices)
    text = README.read_text()
    listed = set(re.findall(r"^smhsearch (\w+) ", text, re.M))
    assert listed == commands
    # every flag of report, pick and export is documented
    for name in ("report", "pick", "export"):
        flags = {o for a in sub.choices[name]._actions for o in a.option_strings if o.startswith("--") and o != "--help"}
        line = re.search(rf"^smhsearch {name} .*$", text, re.M).group(0)
        assert all(f in line for f in flags), (name, flags)
