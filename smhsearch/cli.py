"""The ``smhsearch`` command.

Every subcommand is a typed function; argparse only maps flags onto it. Bad input
(an unknown architecture, a budget the model cannot meet, ...) prints one message
naming the flag and the allowed values to stderr and exits with status 2, having
written nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

EXIT_BAD_INPUT = 2


class BadInput(Exception):
    """Input the user must fix; the CLI prints it and exits with status 2."""


def _table(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def cmd_models(family: str | None = None, as_json: bool = False) -> int:
    """List the registered architectures."""
    from .models import MODELS, list_models

    names = list_models(family)
    if family is not None and not names:
        families = sorted({MODELS.get(n).family for n in list_models()})
        raise BadInput(f"--family: unknown family {family!r}; allowed: {', '.join(families)}")
    rows = [{"name": n, "family": MODELS.get(n).family, "num_classes": MODELS.get(n).default_num_classes,
             "input_size": MODELS.get(n).default_input_size, "doc": MODELS.get(n).doc} for n in names]
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['name']:<20} {r['family']:<13} {r['input_size']:>4}px  {r['doc']}")
    return 0


def cmd_methods() -> int:
    """List the registered compression methods and their config fields."""
    import dataclasses

    from .methods import METHODS

    for name in METHODS.names():
        cls = METHODS.get(name).config_cls
        fields = ", ".join(f.name for f in dataclasses.fields(cls))
        print(f"{name:<10} {cls.__name__}({fields})")
    return 0


def method_config(method: str, budget: str | None, scope: str = "all", scale: str = "fixed", seed: int = 0,
                  hashes: int = 1, alpha: float | None = None, resolution: bool = False):
    """The method config the flags describe; BadInput naming the flag when they do not."""
    from .methods import METHODS

    if method not in METHODS:
        raise BadInput(f"--method: {METHODS.unknown_message(method)}")
    cls = METHODS.get(method).config_cls
    kwargs = {"budget": None if budget is None else _budget_arg(budget), "scope": scope, "scale": scale, "seed": seed,
              "hashes": hashes, "alpha": alpha, "resolution": resolution}
    kwargs = {k: v for k, v in kwargs.items() if k in cls.__dataclass_fields__}
    if budget is None and "alpha" not in kwargs:
        raise BadInput(f"--budget: method {method!r} needs a budget (46000, 46K, 5.3M, 25% or 0.25)")
    try:
        return cls(**kwargs)
    except ValueError as e:
        raise BadInput(f"{_flag_for(str(e))}{e}") from None


def build(arch: str, config, **model_kwargs):
    """(base, compressed) for ``arch``; a config of None leaves the model dense."""
    from .methods import compress
    from .models import MODELS, create_model

    if arch not in MODELS:
        raise BadInput(f"ARCH: {MODELS.unknown_message(arch)}")
    try:
        base = create_model(arch, **model_kwargs)
        return base, (compress(base, config) if config is not None else base)
    except ValueError as e:
        raise BadInput(f"{_flag_for(str(e))}{e}") from None


def model_facts(base, model, input_shape: tuple[int, int, int]) -> dict:
    """Sizes and costs of a (compressed) model, as every command reports them."""
    from . import measure
    from .methods import CompressedModel

    base_count = measure.stored_parameters(base)
    stored = measure.stored_parameters(model)
    facts = {
        "base_parameters": base_count,
        "stored_parameters": stored,
        "virtual_parameters": measure.virtual_parameters(model),
        "compression": base_count / stored,
        "flops_per_sample": measure.flops(model, input_shape),
        "input_shape": list(input_shape),
    }
    if isinstance(model, CompressedModel):
        facts["compact_bytes"] = measure.compact_bytes(model)
        facts.update({f"{model.config.method}_{k}": v for k, v in model.describe().items() if not isinstance(v, (list, dict))})
    return facts


def _print_facts(facts: dict, as_json: bool) -> None:
    from ._budget import format_count

    if as_json:
        print(json.dumps(facts, indent=2, default=str))
        return
    rows = [(k, format_count(v) if isinstance(v, int) and k.endswith(("parameters", "flops_per_sample")) else
             (f"{v:.2f}x" if k == "compression" else (f"{v:.4f}" if isinstance(v, float) else str(v)))) for k, v in facts.items()]
    print(_table(rows))


def cmd_compress(arch: str, budget: str | None, method: str = "smh", scope: str = "all", scale: str = "fixed", seed: int = 0,
                 num_classes: int | None = None, in_channels: int | None = None, input_size: int | None = None,
                 out: Path | None = None, as_json: bool = False, hashes: int = 1, alpha: float | None = None,
                 resolution: bool = False) -> int:
    """Compress an architecture to a budget and print its sizes and costs; optionally save the compact file."""
    from .export import save_compact
    from .models import MODELS

    config = method_config(method, budget, scope, scale, seed, hashes, alpha, resolution)
    base, model = build(arch, config, num_classes=num_classes, in_channels=in_channels)
    side = input_size or MODELS.get(arch).default_input_size
    model.set_progress(1.0)  # report the model as it stands after training (gradual pruning finishes)
    facts = {"arch": arch, "method": config.to_dict(), **model_facts(base, model, (base.smhsearch_arch["kwargs"]["in_channels"], side, side))}
    if out is not None:
        facts["saved"] = str(save_compact(model, out))
    _print_facts(facts, as_json)
    return 0


def cmd_train(arch: str, dataset: str = "fashion-mnist-small", root: Path | None = None, method: str = "none",
              budget: str | None = None, scope: str = "all", scale: str = "fixed", seed: int = 0, hashes: int = 1,
              alpha: float | None = None, resolution: bool = False, epochs: int = 5, batch_size: int = 128, lr: float = 0.05,
              optimizer: str = "sgd", variable_lr_mult: float = 1.0, weight_decay: float = 5e-4, device: str | None = None,
              out: Path | None = None, as_json: bool = False) -> int:
    """Compress (or not), train on a dataset, measure, and report one model."""
    import platform

    import torch

    from ._version import __version__
    from .data import DatasetNotFound, load_dataset
    from .export import save_trained
    from .methods import CompressedModel
    from .models import MODELS
    from .train import TrainConfig, TrainingDiverged, train

    config = None if method == "none" else method_config(method, budget, scope, scale, seed, hashes, alpha, resolution)
    try:
        tcfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,  # type: ignore[arg-type]
                           variable_lr_mult=variable_lr_mult, weight_decay=weight_decay, seed=seed)
    except ValueError as e:
        raise BadInput(str(e)) from None
    try:
        data = load_dataset(dataset, root)
    except DatasetNotFound as e:
        raise BadInput(f"--dataset/--root: {e}") from None
    except ValueError as e:
        raise BadInput(f"--dataset: {e}") from None
    if arch in MODELS and MODELS.get(arch).family == "mlp":
        extra = {"image_size": data.input_size}
    else:
        extra = {}
    base, model = build(arch, config, num_classes=data.num_classes, in_channels=data.in_channels, **extra)
    try:
        result = train(model, data, tcfg, device=device)
    except TrainingDiverged as e:
        print(f"smhsearch train: training diverged: {e}", file=sys.stderr)
        return 1
    model = model.cpu()
    side = model.input_size(data.input_size) if isinstance(model, CompressedModel) else data.input_size
    facts = {
        "arch": arch, "dataset": data.describe(), "method": config.to_dict() if config else {"method": "none"},
        "train": tcfg.__dict__, "test_acc": result.test_acc, "best_val_acc": result.best_val_acc,
        "train_seconds": result.seconds, "device": result.device,
        **model_facts(base, model, (data.in_channels, data.input_size, data.input_size)),
        "trained_input_size": side,
        "versions": {"smhsearch": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "history": [h.__dict__ for h in result.history],
    }
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        facts["model_file"] = str(save_trained(model, out / "model.safetensors"))  # compact, or the dense weights
        (out / "result.json").write_text(json.dumps(facts, indent=2, default=str) + "\n")
    shown = {k: v for k, v in facts.items() if k not in ("history", "train", "dataset", "versions")} if not as_json else facts
    _print_facts(shown, as_json)
    return 0


def _load_space(path: Path):
    from .space import SpaceError, load_space

    try:
        return load_space(path)
    except SpaceError as e:
        raise BadInput(str(e)) from None


def cmd_check(space_path: Path, as_json: bool = False) -> int:
    """Validate a space, count its trials and pre-screen every candidate's cost before any training."""
    import torch

    from . import measure
    from ._budget import format_count
    from .methods import compress
    from .models import create_model
    from .search import plan_run
    from .space import dataset_model_kwargs, dataset_shape

    space = _load_space(space_path)
    try:
        plan = plan_run(space, space_path)
    except ValueError as e:
        raise BadInput(f"{space_path}: search.max_params: {e}") from None
    kw = dataset_model_kwargs(space)
    _, channels, size = dataset_shape(space)
    shape = (channels, size, size)
    rows = []
    t0 = time.perf_counter()
    for c in plan.candidates:
        torch.manual_seed(0)
        base = create_model(c.arch, **kw(c.arch))
        cfg = c.method_config()
        model = compress(base, cfg) if cfg is not None else base
        rows.append({"candidate": c.label(), "stored_params": measure.final_stored_parameters(model), "flops": measure.flops(model, shape),
                     "infer_per_s": measure.throughput(model, shape, batch_size=32, mode="infer", warmup=1, repeats=3).samples_per_s})
    summary = {"space": str(space_path), "name": space.name, "candidates": len(plan.candidates), "trials": plan.target_trials,
               "sampler": space.search.sampler, "dataset": space.dataset.name, "epochs": space.train.epochs,
               "prescreen_seconds": round(time.perf_counter() - t0, 1), "prescreen": rows}
    if as_json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{space_path}: valid. {len(plan.candidates)} candidates, {plan.target_trials} trials ({space.search.sampler}), "
          f"{space.train.epochs} epochs each on {space.dataset.name}")
    width = max(len(r["candidate"]) for r in rows)
    print(f"{'candidate':<{width}}  {'stored':>9}  {'FLOPs':>9}  {'infer/s':>9}")
    for r in rows:
        print(f"{r['candidate']:<{width}}  {format_count(r['stored_params']):>9}  {format_count(r['flops']):>9}  {r['infer_per_s']:>9.0f}")
    print(f"pre-screen took {summary['prescreen_seconds']}s")
    return 0


def cmd_run(space_path: Path, out: Path | None = None, address: str | None = None, max_trials: int | None = None,
            fresh: bool = False) -> int:
    """Run (or resume) the search a space describes."""
    from .search import plan_run, run_search

    space = _load_space(space_path)
    if max_trials is not None and max_trials < 1:
        raise BadInput(f"--max-trials must be >= 1, but got {max_trials}")
    try:
        plan = plan_run(space, space_path, out, max_trials)
    except ValueError as e:
        raise BadInput(f"{space_path}: search.max_params: {e}") from None
    print(f"{space.name}: {plan.target_trials} trials over {len(plan.candidates)} candidates -> {plan.run_dir}", flush=True)
    try:
        summary = run_search(plan, address=address, fresh=fresh)
    except ValueError as e:  # e.g. the space changed under an existing run folder
        raise BadInput(str(e)) from None
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _load_run(run_path: Path):
    from .runs import RunError, load_run

    try:
        return load_run(run_path)
    except RunError as e:
        raise BadInput(f"RUN: {e}") from None


def _accuracy_key(accuracy: str) -> str:
    keys = {"val": "val_acc", "test": "test_acc"}
    if accuracy not in keys:
        raise BadInput(f"--accuracy: unknown accuracy {accuracy!r}; allowed: val, test")
    return keys[accuracy]


def cmd_report(run_path: Path, out: Path | None = None, accuracy: str = "val") -> int:
    """Write the run's interactive report: one self-contained HTML file (default reports/<name>.html)."""
    from .report import write_report

    acc_key = _accuracy_key(accuracy)
    run = _load_run(run_path)
    if out is not None and out.is_dir():
        raise BadInput(f"--out: {out} is a folder; give the report's file name, e.g. {out / (run.name + '.html')}")
    path = write_report(run, out, acc_key)
    done = sum(t.status == "complete" for t in run.trials)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB; {len(run.trials)} trials, {done} finished); open it in a browser")
    return 0


def _constraint(flag: str, text: str | None, parse) -> float | None:
    if text is None:
        return None
    try:
        return parse(text)
    except ValueError as e:
        raise BadInput(f"{flag}: {e}") from None


def _trial_summary(t) -> dict:
    keys = ("val_acc", "test_acc", "stored_params", "throughput", "flops", "compact_bytes")
    return {"number": t.number, "label": t.label, "config": t.config, **{k: t.get(k) for k in keys},
            "model_file": str(t.model_file) if t.model_file else None}


MISS = {"max_params": "over --max-params", "min_throughput": "under --min-throughput", "min_accuracy": "under --min-accuracy"}


def cmd_pick(run_path: Path, max_params: str | None = None, min_throughput: str | None = None, min_accuracy: str | None = None,
             accuracy: str = "val", as_json: bool = False) -> int:
    """Choose the most accurate finished trial within the constraints; exit 1 (listing the nearest) when none fits."""
    from ._budget import format_count, parse_accuracy, parse_count
    from .pareto import Constraints, pick

    acc_key = _accuracy_key(accuracy)
    if max_params is not None and max_params.strip().endswith("%"):
        raise BadInput(f"--max-params: give an absolute count (20000, 20K, 5.3M), not {max_params!r}: "
                       "a run can hold several architectures, so a percentage has no single base")
    c = Constraints(_constraint("--max-params", max_params, parse_count), _constraint("--min-throughput", min_throughput, parse_count),
                    _constraint("--min-accuracy", min_accuracy, parse_accuracy))
    run = _load_run(run_path)
    result = pick(run.trials, c, acc_key)
    finished = sum(t.status == "complete" for t in run.trials)
    if as_json:
        print(json.dumps({"constraints": c.__dict__, "accuracy": acc_key, "finished_trials": finished,
                          "chosen": _trial_summary(result.chosen) if result.chosen else None,
                          "satisfying": [t.number for t in result.satisfying],
                          "nearest": [{**_trial_summary(t), "shortfalls": s} for t, s in result.nearest]}, indent=2, default=str))
        return 0 if result.chosen else 1

    def facts(t) -> str:
        acc = t.get(acc_key)
        return (f"{acc_key.replace('_acc', '')} acc {100 * acc:.2f}%, " if acc is not None else "") + \
            f"{format_count(int(t.get('stored_params')))} stored, {t.get('throughput') or 0:,.0f} samples/s"

    if result.chosen is None:
        print(f"{run_path}: no finished trial satisfies {c.describe()} ({finished} finished trials of {len(run.trials)}).")
        if result.nearest:
            print("nearest:")
            for t, short in result.nearest:
                misses = ", ".join(f"{MISS[k]} by {100 * v:.1f}%" for k, v in short.items())
                print(f"  #{t.number} {t.label}: {facts(t)} -- {misses}")
        return 1
    t = result.chosen
    rows = [("trial", f"#{t.number} {t.label}"), ("why", f"the highest {acc_key.replace('_', ' ')} of the {len(result.satisfying)} "
                                                         f"finished trials that satisfy {c.describe()}")]
    if c.max_params is not None:
        rows.append(("stored parameters", f"{int(t.get('stored_params')):,} <= {c.max_params:,.0f}"))
    else:
        rows.append(("stored parameters", f"{int(t.get('stored_params')):,}"))
    thr = t.get("throughput")
    rows.append(("inference throughput", f"{thr:,.1f}/s" + (f" >= {c.min_throughput:,.1f}/s" if c.min_throughput is not None else "")))
    acc = t.get(acc_key)
    rows.append((acc_key.replace("_", " "), f"{100 * acc:.2f}%" + (f" >= {100 * c.min_accuracy:.2f}%" if c.min_accuracy is not None else "")))
    other = "test_acc" if acc_key == "val_acc" else "val_acc"
    if t.get(other) is not None:
        rows.append((other.replace("_", " "), f"{100 * t.get(other):.2f}%"))
    if t.get("flops") is not None:
        rows.append(("FLOPs per sample", f"{int(t.get('flops')):,}"))
    if len(result.satisfying) > 1:
        r = result.satisfying[1]
        rows.append(("runner-up", f"#{r.number} {r.label}: {facts(r)}"))
    rows.append(("model file", str(t.model_file) if t.model_file else "none saved"))
    rows.append(("export with", f"smhsearch export {run_path} --trial {t.number} --out DIR"))
    print(_table(rows))
    return 0


DEFAULT_EXPORT = ("safetensors", "onnx", "compact")


def cmd_export(run_path: Path, trial: int, out: Path, formats: str | None = None, as_json: bool = False) -> int:
    """Write a trial's model as deployable files; each is reloaded and compared with the trained model first."""
    import shutil
    import tempfile

    from .data import normalization
    from .export import FORMATS, export_model, load_trained, readable_mode
    from .methods import CompressedModel

    wanted = DEFAULT_EXPORT if formats is None else tuple(f.strip() for f in formats.split(",") if f.strip())
    unknown = [f for f in wanted if f not in FORMATS]
    if not wanted or unknown:
        raise BadInput(f"--format: unknown format {(unknown or [formats])[0]!r}; allowed: {', '.join(FORMATS)} (comma-separated)")
    run = _load_run(run_path)
    try:
        t = run.trial(trial)
    except ValueError as e:
        raise BadInput(f"--trial: {e}") from None
    if t.status != "complete" or t.model_file is None:
        with_models = ", ".join(str(x.number) for x in run.trials if x.status == "complete" and x.model_file) or "none"
        why = {"early_stopped": "was stopped early by the scheduler, so it has no trained model to export",
               "failed": f"failed ({t.error}), so it has no trained model to export",
               "interrupted": "was interrupted, so it has no trained model to export",
               "running": "is still running", "queued": "has not started"}.get(
            t.status, "has no model.safetensors in its folder (saved by smhsearch run for every finished trial)")
        raise BadInput(f"--trial: trial {trial} ({t.label}) {why}; trials with a model: {with_models}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BadInput(f"--out: {out} exists and is not an empty folder; nothing was written")
    model = load_trained(t.model_file)
    if "compact" in wanted and not isinstance(model, CompressedModel):
        if formats is not None:
            raise BadInput(f"--format: trial {trial} is a dense model, so it has no compact file; "
                           f"allowed for it: {', '.join(f for f in FORMATS if f != 'compact')}")
        wanted = tuple(f for f in wanted if f != "compact")  # the default list: compact applies to compressed trials only
    from .space import dataset_shape

    side = int(t.get("input_size") or 0)
    _, channels, data_side = dataset_shape(run.space)
    shape = (channels, data_side, data_side)  # what the trained model takes (a width_res model up-samples inside)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out.parent if out.parent.exists() else None))
    try:
        records = export_model(model, staging, shape, wanted)
        bad = [r for r in records if not r["ok"]]
        if bad:
            for r in bad:
                print(f"smhsearch export: {r['format']}: outputs differ from the trained model by {r['max_abs_diff']:.3g} "
                      f"(tolerance {r['tolerance']:.3g}); nothing was written", file=sys.stderr)
            return 1
        manifest = {"run": str(run_path), "trial": t.number, "label": t.label, "config": t.config, "metrics": t.metrics,
                    "input_shape": [None, *shape], "model_input_size": side or None, "preprocess": normalization(run.dataset),
                    "source_file": str(t.model_file),
                    "files": [{**r, "path": Path(r["path"]).name} for r in records]}
        (staging / "export.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        os.chmod(staging, readable_mode(0o777))  # mkdtemp makes it private; the export is an ordinary folder
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists():
            out.rmdir()
        shutil.move(str(staging), str(out))
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    if as_json:
        print(json.dumps(manifest, indent=2, default=str))
        return 0
    print(f"exported trial {t.number} ({t.label}) to {out}; input (N, {', '.join(map(str, shape))})")
    for r in manifest["files"]:
        print(f"  {r['format']:<12} {r['path']:<28} {r['bytes']:>12,} bytes  max |diff| {r['max_abs_diff']:.2e} (ok)")
    return 0


def _budget_arg(text: str) -> int | float | str:
    """Budgets from the command line: digits are an absolute count, everything else is parsed as given."""
    t = text.strip()
    if t.isdigit():
        return int(t)
    try:
        f = float(t)
        return f if f < 1 else int(f)
    except ValueError:
        return t


def _flag_for(message: str) -> str:
    """The flag a config error is about: messages start with the key, after an optional 'METHOD: '."""
    head = message.split(": ", 1)[1] if message[:12].count(": ") and message.split(": ", 1)[0].isalpha() else message
    for key in ("budget", "scope", "scale", "seed", "num_classes", "in_channels", "hashes", "alpha", "resolution", "give exactly one"):
        if head.startswith(key):
            return "--budget/--alpha: " if key == "give exactly one" else f"--{key.replace('_', '-')}: "
    return ""


def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__

    p = argparse.ArgumentParser(prog="smhsearch", description="Compress networks with Structured Multi-Hashing and search for the model to ship.")
    p.add_argument("--version", action="version", version=f"smhsearch {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("models", help="list architectures")
    s.add_argument("--family", help="only this family (resnet_cifar, efficientnet, mobilenet, resnet, mlp)")
    s.add_argument("--json", dest="as_json", action="store_true")
    s.set_defaults(func=lambda a: cmd_models(a.family, a.as_json))

    s = sub.add_parser("methods", help="list compression methods")
    s.set_defaults(func=lambda a: cmd_methods())

    s = sub.add_parser("compress", help="compress an architecture to a budget and report its sizes")
    s.add_argument("arch", metavar="ARCH", help="architecture name (see `smhsearch models`)")
    s.add_argument("--budget", help="stored parameters: 46000, 46K, 5.3M, 25%% or 0.25 (width: or --alpha)")
    s.add_argument("--method", default="smh", help="compression method (see `smhsearch methods`)")
    s.add_argument("--scope", default="all", help="all | conv")
    s.add_argument("--scale", default="fixed", help="fixed | learnable")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--hashes", type=int, default=1, help="hashednets: number of independent hash functions")
    s.add_argument("--alpha", type=float, help="width: the multiplier itself, instead of a budget")
    s.add_argument("--resolution", action="store_true", help="width: up-sample the input to keep the base FLOPs")
    s.add_argument("--num-classes", type=int)
    s.add_argument("--in-channels", type=int)
    s.add_argument("--input-size", type=int, help="input side in pixels for FLOPs (default: the architecture's)")
    s.add_argument("--out", type=Path, help="write the compact file here")
    s.add_argument("--json", dest="as_json", action="store_true")
    s.set_defaults(func=lambda a: cmd_compress(a.arch, a.budget, a.method, a.scope, a.scale, a.seed, a.num_classes,
                                               a.in_channels, a.input_size, a.out, a.as_json, a.hashes, a.alpha,
                                               a.resolution))

    s = sub.add_parser("check", help="validate a space and pre-screen every candidate's cost")
    s.add_argument("space", type=Path, metavar="SPACE")
    s.add_argument("--json", dest="as_json", action="store_true")
    s.set_defaults(func=lambda a: cmd_check(a.space, a.as_json))

    s = sub.add_parser("run", help="run (or resume) the search a space describes")
    s.add_argument("space", type=Path, metavar="SPACE")
    s.add_argument("--out", type=Path, help="run folder (default: runs/<space name>)")
    s.add_argument("--address", help="Ray cluster: auto, or ray://host:port (default: a local Ray)")
    s.add_argument("--max-trials", type=int, help="stop after this many trials in all")
    s.add_argument("--fresh", action="store_true", help="discard the study in the run folder and start over")
    s.set_defaults(func=lambda a: cmd_run(a.space, a.out, a.address, a.max_trials, a.fresh))

    s = sub.add_parser("report", help="write a run's interactive Pareto report (self-contained HTML)")
    s.add_argument("run", type=Path, metavar="RUN", help="run folder (runs/<space name>)")
    s.add_argument("--out", type=Path, help="report file (default: reports/<name>.html)")
    s.add_argument("--accuracy", default="val", help="val (default: selection is on validation) | test")
    s.set_defaults(func=lambda a: cmd_report(a.run, a.out, a.accuracy))

    s = sub.add_parser("pick", help="the best finished trial under a size budget and other constraints")
    s.add_argument("run", type=Path, metavar="RUN")
    s.add_argument("--max-params", help="most stored parameters: 20000, 20K, 5.3M")
    s.add_argument("--min-throughput", help="least inference samples/s, as measured in the run")
    s.add_argument("--min-accuracy", help="least accuracy: 0.8 or 80%%")
    s.add_argument("--accuracy", default="val", help="rank on val (default) or test accuracy")
    s.add_argument("--json", dest="as_json", action="store_true")
    s.set_defaults(func=lambda a: cmd_pick(a.run, a.max_params, a.min_throughput, a.min_accuracy, a.accuracy, a.as_json))

    s = sub.add_parser("export", help="write a trial's model as deployable files, each checked against the trained model")
    s.add_argument("run", type=Path, metavar="RUN")
    s.add_argument("--trial", type=int, required=True, help="trial number (see the report or `smhsearch pick`)")
    s.add_argument("--out", type=Path, required=True, help="folder to create (must not exist, or be empty)")
    s.add_argument("--format", dest="formats", default=None,
                   help="comma-separated: safetensors (dense), torchscript, pt2 (torch.export), onnx, compact "
                        "(default: safetensors,onnx,compact; compact only for compressed trials)")
    s.add_argument("--json", dest="as_json", action="store_true")
    s.set_defaults(func=lambda a: cmd_export(a.run, a.trial, a.out, a.formats, a.as_json))

    s = sub.add_parser("train", help="compress (or not), train on a dataset and report one model")
    s.add_argument("arch", metavar="ARCH")
    s.add_argument("--dataset", default="fashion-mnist-small", help="dataset name (default: the embedded fashion-mnist-small)")
    s.add_argument("--root", type=Path, help="dataset folder")
    s.add_argument("--method", default="none", help="none (dense) or a compression method")
    s.add_argument("--budget")
    s.add_argument("--scope", default="all")
    s.add_argument("--scale", default="fixed")
    s.add_argument("--hashes", type=int, default=1)
    s.add_argument("--alpha", type=float)
    s.add_argument("--resolution", action="store_true")
    s.add_argument("--epochs", type=int, default=5)
    s.add_argument("--batch-size", type=int, default=128)
    s.add_argument("--lr", type=float, default=0.05)
    s.add_argument("--optimizer", default="sgd", help="sgd | adamw")
    s.add_argument("--variable-lr-mult", type=float, default=1.0, help="lr multiplier of U, V / the pool / low-rank factors")
    s.add_argument("--weight-decay", type=float, default=5e-4)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when available)")
    s.add_argument("--out", type=Path, help="write result.json (and the compact file) here")
    s.add_argument("--json", dest="as_json", action="store_true")
    s.set_defaults(func=lambda a: cmd_train(a.arch, a.dataset, a.root, a.method, a.budget, a.scope, a.scale, a.seed, a.hashes,
                                            a.alpha, a.resolution, a.epochs, a.batch_size, a.lr, a.optimizer,
                                            a.variable_lr_mult, a.weight_decay, a.device, a.out, a.as_json))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except BadInput as e:
        print(f"smhsearch {args.command}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
