"""Pages generated from the code and the benchmarks' files when the docs are built (``docs/_hooks.py``).

- ``reference/api.md``: the Python API, from the docstrings of ``smhsearch.__all__``;
- ``reference/cli.md``: every command and flag, read from the argparse parsers;
- ``reference/yaml.md``: every key of a space file with its type, default and allowed values, read from the
  validated schema, and every method's options, read from the method registry;
- ``results/<benchmark>.md``: each benchmark's results file with its device, date, commit and protocol.

The tests compare these pages with the parsers and the registry, so a flag or key cannot go undocumented.
"""

from __future__ import annotations

import argparse
import json
import typing
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


# -- the command line ------------------------------------------------------------------------------

def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse keeps its subparsers only here
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def cli_flags() -> dict[str, list[str]]:
    """Every command's option strings (``--budget``) and positional names, as the parsers define them."""
    from smhsearch.cli import COMMANDS, build_parser

    out = {}
    for name in COMMANDS:
        sub = _subcommands(build_parser(name))[name]
        out[name] = [s for a in sub._actions if not isinstance(a, argparse._HelpAction)
                     for s in (a.option_strings or [a.dest])]
    return out


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def cli_reference() -> str:
    from smhsearch.cli import COMMANDS, build_parser

    lines = ["# Command line", "", "Generated from the parsers of `smhsearch`; `smhsearch COMMAND --help` says the same.", ""]
    lines += ["| command | what it does |", "|---|---|"] + [
        f"| [`{n}`](#{n}) | {_cell(t)} |" for n, (_, _, t) in COMMANDS.items()
    ]
    for name in COMMANDS:
        sub = _subcommands(build_parser(name))[name]
        lines += [
            "",
            f"## {name}",
            "",
            _cell(sub.description or COMMANDS[name][2]),
            "",
            "```text",
            sub.format_usage().strip(),
            "```",
            "",
            "| argument | default | what it does |",
            "|---|---|---|",
        ]
        for a in sub._actions:
            if isinstance(a, argparse._HelpAction):
                continue
            names = ", ".join(f"`{s}`" for s in a.option_strings) or f"`{a.dest}`"
            choices = f" (one of: {', '.join(map(str, a.choices))})" if a.choices else ""
            default = "" if a.default in (None, argparse.SUPPRESS) or a.option_strings == [] else f"`{a.default}`"
            helptext = (
                (a.help or "") % {"default": a.default, "prog": "smhsearch"} if a.help and "%(" in a.help else (a.help or "")
            )
            lines.append(f"| {names} | {_cell(default)} | {_cell(helptext + choices)} |")
    return "\n".join(lines) + "\n"


# -- space files ----------------------------------------------------------------------------------

def _type_name(ann: Any) -> str:
    origin = typing.get_origin(ann)
    if ann is type(None):
        return "null"
    if origin is typing.Literal:
        return " \\| ".join(json.dumps(v) for v in typing.get_args(ann))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " or ".join(_type_name(a) for a in typing.get_args(ann))
    if origin in (list, tuple):
        args = [a for a in typing.get_args(ann) if a is not Ellipsis]
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return "mapping"
    if isinstance(ann, type):
        return {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}.get(ann.__name__, ann.__name__)
    return str(ann).replace("typing.", "")


def _model_of(ann: Any):
    from pydantic import BaseModel

    for a in (ann, *typing.get_args(ann)):
        if isinstance(a, type) and issubclass(a, BaseModel):
            return a
        for b in typing.get_args(a):
            if isinstance(b, type) and issubclass(b, BaseModel):
                return b
    return None


def yaml_keys(model=None, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every key of a space file as a dotted path (``search.max_params``) with its pydantic field."""
    from smhsearch.space._schema import Space

    model = Space if model is None else model
    for name, f in model.model_fields.items():
        key = f"{prefix}{f.alias or name}"
        yield key, f
        inner = _model_of(f.annotation)
        if inner is not None and inner is not model:
            yield from yaml_keys(inner, key + ".")


def method_options() -> dict[str, dict[str, Any]]:
    """Each registered method's options (name -> OptionInfo), as the registry declares them."""
    from smhsearch.methods import METHODS
    from smhsearch.methods._config import options_of

    return {name: options_of(METHODS.get(name).config_cls) for name in METHODS.names()}


def yaml_reference() -> str:
    from pydantic_core import PydanticUndefined

    lines = ["# Space files", "", "Generated from the validated schema and the method registry. A key not listed here is an "
             "error naming the allowed ones.", "", "| key | type | default | what it does |", "|---|---|---|---|"]
    for key, f in yaml_keys():
        default = "required" if f.default is PydanticUndefined and f.default_factory is None else \
            f"`{json.dumps(f.default if f.default_factory is None else f.default_factory(), default=str)}`"
        if _model_of(f.annotation) is not None and default.startswith("`{"):
            default = "(section)"
        lines.append(f"| `{key}` | {_type_name(f.annotation)} | {_cell(default)} | {_cell(f.description or '')} |")
    lines += [
        "",
        "## Method options",
        "",
        "What an entry of `space.method` may set (`{name: hashednets, hashes: 2}`) and the flags of "
        "`compress` and `train` set, by method:",
        "",
    ]
    for method, options in method_options().items():
        lines += [f"### {method}", "", "| option | type | default | what it does |", "|---|---|---|---|"]
        for o in options.values():
            lines.append(
                f"| `{o.name}` | {_type_name(o.annotation)} | `{json.dumps(o.default, default=str)}` | {_cell(o.describe())} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


# -- results --------------------------------------------------------------------------------------

def _table(rows: list[dict[str, Any]]) -> list[str]:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys and not isinstance(r[k], (dict, list))]
    if not keys:
        return []
    out = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        out.append("| " + " | ".join(_cell(_fmt(r.get(k, ""))) for k in keys) + " |")
    return out


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def results_pages() -> dict[str, str]:
    """``results/<name>.md`` for each ``benchmarks/results/<name>.json``, and the index ``results/index.md``."""
    pages, index = {}, ["# Results", "", "Every figure below is read from a benchmark's results file in `benchmarks/results/`, "
                        "written by the script of the same name in `benchmarks/`; each page names the device, date and "
                        "commit that produced it and the protocol it followed.", "", "| benchmark | device | date | commit |",
                        "|---|---|---|---|"]
    for path in sorted(RESULTS.glob("*.json")):
        data = json.loads(path.read_text())
        name = path.stem
        meta = {k: data.get(k, "") for k in ("device", "date", "commit")} if isinstance(data, dict) else {}
        index.append(f"| [{name}]({name}.md) | {_cell(meta.get('device', ''))} | {_cell(meta.get('date', ''))} | "
                     f"`{str(meta.get('commit', ''))[:10]}` |")
        script = name.split("-")[0]
        lines = [f"# {name}", "", f"Written by `benchmarks/{script}.py` into `benchmarks/results/{path.name}`.", ""]
        if meta:
            lines += [
                "| device | date | commit | torch |",
                "|---|---|---|---|",
                f"| {_cell(meta['device'])} | {_cell(meta['date'])} | `{meta['commit']}` | {_cell(data.get('torch', ''))} |",
                "",
            ]
        if isinstance(data, dict) and isinstance(data.get("protocol"), dict):
            lines += ["## Protocol", "", "| setting | value |", "|---|---|"]
            lines += [f"| {k} | {_cell(json.dumps(v, default=str))} |" for k, v in data["protocol"].items()] + [""]
        md = path.with_suffix(".md")
        if md.exists():
            text = md.read_text().strip()
            lines += ["## Tables", "", *[("#" + ln if ln.startswith("#") else ln) for ln in text.splitlines()], ""]
        for section in ("summary", "targets"):
            value = data.get(section) if isinstance(data, dict) else None
            if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
                lines += [f"## {section.capitalize()}", "", *_table(value), ""]
        pages[f"results/{name}.md"] = "\n".join(lines) + "\n"
    pages["results/index.md"] = "\n".join(index) + "\n"
    return pages


def api_names() -> list[str]:
    """The names the package exports (``smhsearch.__all__``), which the API page documents."""
    import smhsearch

    return [n for n in smhsearch.__all__ if not n.startswith("_")]


def api_reference() -> str:
    lines = ["# Python API", "", "Generated from the docstrings of the names `smhsearch` exports (`smhsearch.__all__`).", ""]
    for name in api_names():
        lines += [f"::: smhsearch.{name}", "    options:", "      show_root_full_path: false", ""]
    return "\n".join(lines)


def generated_pages() -> dict[str, str]:
    """Every generated page by its path under docs/."""
    return {"reference/api.md": api_reference(), "reference/cli.md": cli_reference(), "reference/yaml.md": yaml_reference(),
            **results_pages()}
