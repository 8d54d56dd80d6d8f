"""The docs site: built with no warning, and its reference pages cover every flag, key and exported name."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "docs"))

import _gen  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("mkdocs", path=str(Path(sys.executable).parent)) is None,
                                reason="mkdocs is not installed (pip install -e '.[dev]' installs it)")


def test_every_cli_flag_is_in_the_command_line_reference():
    page = _gen.cli_reference()
    flags = _gen.cli_flags()
    assert {"compress", "train", "run", "report", "pick", "export"} <= set(flags)
    for command, names in flags.items():
        section = page.split(f"\n## {command}\n", 1)[1].split("\n## ", 1)[0]
        missing = [n for n in names if f"`{n}`" not in section]
        assert not missing, f"{command}: {missing} are not in the generated reference"


def test_every_space_key_and_method_option_is_in_the_yaml_reference():
    page = _gen.yaml_reference()
    keys = [k for k, _ in _gen.yaml_keys()]
    assert {"name", "space.arch", "space.method", "search.max_params", "train.epochs"} <= set(keys)
    assert not [k for k in keys if f"| `{k}` |" not in page]
    for method, options in _gen.method_options().items():
        section = page.split(f"\n### {method}\n", 1)[1].split("\n### ", 1)[0]
        assert not [o for o in options if f"| `{o}` |" not in section], method


def test_every_exported_name_is_in_the_api_reference():
    import smhsearch

    page = _gen.api_reference()
    assert not [n for n in smhsearch.__all__ if not n.startswith("_") and f"::: smhsearch.{n}\n" not in page]


def test_every_results_file_has_a_page_naming_its_device_date_and_commit():
    pages = _gen.results_pages()
    for path in sorted((ROOT / "benchmarks" / "results").glob("*.json")):
        page = pages[f"results/{path.stem}.md"]
        data = json.loads(path.read_text())
        assert data["device"] in page and data["date"] in page, path.name
        assert f"[{path.stem}]({path.stem}.md)" in pages["results/index.md"]


def test_the_site_builds_with_no_warning(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT)}
    mkdocs = str(Path(sys.executable).parent / "mkdocs")
    r = subprocess.run([mkdocs, "build", "--strict", "-d", str(tmp_path / "site")], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "WARNING" not in r.stderr, r.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "cli" / "index.html").exists()
    assert (tmp_path / "site" / "results" / "bytes-cpu" / "index.html").exists()


def test_a_broken_link_fails_the_build(tmp_path):
    # the build checks internal links and anchors: a page linking to a missing one fails
    docs = tmp_path / "project"
    shutil.copytree(ROOT / "docs", docs / "docs", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "mkdocs.yml", docs / "mkdocs.yml")
    (docs / "benchmarks").symlink_to(ROOT / "benchmarks")
    (docs / "docs" / "index.md").write_text((ROOT / "docs" / "index.md").read_text() + "\n[gone](nowhere.md#here)\n")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT)}
    r = subprocess.run([str(Path(sys.executable).parent / "mkdocs"), "build", "--strict", "-d", str(tmp_path / "site")], cwd=docs,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "nowhere.md" in r.stderr
