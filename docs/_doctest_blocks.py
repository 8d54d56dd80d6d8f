"""Griffe extension for the API reference: a docstring's doctest examples (``>>>`` runs and their output)
are shown as Python console code blocks, rather than read as Markdown."""

from __future__ import annotations

from typing import Any

import griffe


def fence_doctests(text: str) -> str:
    out, block = [], []
    for line in text.splitlines() + [""]:
        stripped = line.lstrip()
        if stripped.startswith(">>>") or (block and stripped):
            block.append(line)
            continue
        if block:
            indent = len(block[0]) - len(block[0].lstrip())
            out += [" " * indent + "```pycon", *block, " " * indent + "```"]
            block = []
        out.append(line)
    return "\n".join(out[:-1])


class DoctestBlocks(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None and ">>>" in obj.docstring.value:
            obj.docstring.value = fence_doctests(obj.docstring.value)
