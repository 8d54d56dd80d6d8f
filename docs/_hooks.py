"""MkDocs hook: adds the pages generated from the code and the results files (``docs/_gen.py``) to the build."""

from __future__ import annotations

import sys
from pathlib import Path

from mkdocs.structure.files import File, Files

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _gen  # noqa: E402


def on_files(files: Files, config) -> Files:
    for path, content in _gen.generated_pages().items():
        files.append(File.generated(config, path, content=content))
    return files
