"""The README is short, its examples run and say what they claim, and its links lead somewhere."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def test_readme_python_example_runs(tmp_path, monkeypatch):
    text = README.read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(block, "README.md", "exec"), ns)  # noqa: S102 - our own documentation
    claimed = int(re.search(r"stored_parameters\(model\)\s+# ([\d,]+)", block).group(1).replace(",", ""))
    assert ns["smhsearch"].measure.stored_parameters(ns["model"]) == claimed
    assert ns["again"].stored_count() == claimed


def test_readme_commands_are_real_ones():
    from smhsearch.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    text = README.read_text()
    listed = set(re.findall(r"^smhsearch (\w+) ", text, re.M))
    assert {"check", "run", "report", "pick", "export"} <= listed <= set(sub.choices)


def test_readme_is_short_and_its_links_exist():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    assert links, "the README links into the docs"
    missing = [link for link in links if not link.startswith("http") and not (ROOT / link).exists()]
    assert not missing, missing


def test_no_user_facing_text_speaks_of_the_projects_issues():
    pattern = re.compile(r"\bissues?\b", re.I)
    allowed = re.compile(r"github issue|file an issue|issue tracker", re.I)
    found = []
    for path in [
        README,
        *(ROOT / "docs").rglob("*.md"),
        *(ROOT / "smhsearch").rglob("*.py"),
        *(ROOT / "benchmarks").rglob("*.py"),
    ]:
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line) and not allowed.search(line):
                found.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()[:100]}")
    assert not found, "\n".join(found)
