"""The package's shape: data flows one way (DESIGN.md), no import cycles, modules of one concern.

Imports are read from the source (module level and inside functions alike: a lazy import
still couples two modules), so a cycle hidden behind a function-level import fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "smhsearch"

# Lower layers first; a module may import its own layer and the layers before it.
LAYERS = [
    {"_budget", "_registry", "_version", "_fvcore", "_checkpoint", "_atomic", "_redact", "_storage", "_rdb", "_extras", "plugins",
     "device", "stats", "_errors", "_keys", "_timing", "_layout", "_record", "_objectives"},
    {"models"},
    {"methods"},
    {"measure", "_modelfile", "export", "int8", "data"},
    {"train", "distill", "_compile"},
    {"speed", "teachers"},
    {"job"},
    {"space"},
    {"search", "runs", "bench"},
    {"pareto", "baselines"},
    {"testing"},
    {"report"},
    {"cli", "__main__", "__init__"},
]


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = list(p.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            stem = base[: len(base) - (node.level - 1)] if node.level else []
            target = ".".join(stem + ([node.module] if node.module else [])) if node.level else (node.module or "")
            cands = [target, *(f"{target}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            cands = [a.name for a in node.names]
        else:
            continue
        for t in cands:
            if t in known and t != name:
                found.add(t)
                parts = t.split(".")  # importing a.b.c runs a.b's __init__ too
                found.update(".".join(parts[:i]) for i in range(2, len(parts)) if not name.startswith(".".join(parts[:i]) + "."))
    # a package's own __init__ has run before any of its modules: not an edge
    return {t for t in found & known if t != name and not name.startswith(t + ".")}


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(m, p, set(mods)) for m, p in mods.items()}


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    return next(i for i, group in enumerate(LAYERS) if top in group)


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (cycle := visit(n)):
                return cycle
        state[m] = 2
        stack.pop()
        return None

    for m in sorted(graph):
        if m not in state:
            cycle = visit(m)
            assert cycle is None, " -> ".join(cycle)


def test_data_flows_one_way():
    graph = _graph()
    for m, targets in graph.items():
        if m == "smhsearch" or m.startswith("smhsearch.cli"):  # the API's table of contents and the command see everything
            continue
        for t in targets:
            assert _layer(t) <= _layer(m), f"{m} (layer {_layer(m)}) imports {t} (layer {_layer(t)}), which sits above it"


def test_every_module_is_in_a_layer_and_reads_as_one_concern():
    for m, p in _modules().items():
        _layer(m)  # StopIteration for a top-level module no layer names
        lines = len(p.read_text().splitlines())
        assert lines <= 450, f"{p.relative_to(PKG.parent)} has {lines} lines: split it by concern"


def test_the_checks_see_a_cycle_and_a_reach_back(tmp_path, monkeypatch):
    """The detectors themselves: a planted cycle and a layer violation are found."""
    pkg = tmp_path / "smhsearch"
    (pkg / "methods").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "methods" / "__init__.py").write_text("def f():\n    from ..space import X\n")
    (pkg / "space.py").write_text("from .methods import f\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["PKG"]), "PKG", pkg)
    graph = _graph()
    assert "smhsearch.space" in graph["smhsearch.methods"] and "smhsearch.methods" in graph["smhsearch.space"]
    assert _layer("smhsearch.space") > _layer("smhsearch.methods")
