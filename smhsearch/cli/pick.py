"""``smhsearch pick``: the most accurate finished trial within the constraints."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ._common import BadInput, accuracy_key, load_run, table


def add(sub) -> None:
    s = sub.add_parser("pick", help="the best finished trial under a size budget and other constraints")
    s.add_argument("run", type=Path, metavar="RUN")
    s.add_argument("--max-params", help="most stored parameters: 20000, 20K, 5.3M")
    s.add_argument("--max-bytes", help="largest model file: 100000, 100KB, 1.5MB, 2MiB (KB = 1000 bytes, KiB = 1024)")
    s.add_argument("--min-throughput", help="least inference samples/s (the run's figures, or --speed's)")
    s.add_argument("--max-latency", help="most time for one sample alone (batch 1), with its unit: 5ms, 0.2s, 300us")
    s.add_argument("--speed", metavar="TARGET", help="speed figures from this `smhsearch bench` target instead of the search's")
    s.add_argument("--min-accuracy", help="least accuracy: 0.8 or 80%%")
    s.add_argument("--accuracy", default="val", help="rank on val (default) or test accuracy")
    s.add_argument("--json", dest="as_json", action="store_true")
    s.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    return cmd_pick(args.run, max_params=args.max_params, max_bytes=args.max_bytes, min_throughput=args.min_throughput,
                    min_accuracy=args.min_accuracy, accuracy=args.accuracy, as_json=args.as_json, max_latency=args.max_latency,
                    speed=args.speed)


def _constraint(flag: str, text: str | None, parse) -> float | None:
    if text is None:
        return None
    try:
        return parse(text)
    except ValueError as e:
        raise BadInput(f"{flag}: {e}") from None


def _trial_summary(t) -> dict:
    keys = ("val_acc", "test_acc", "stored_params", "stored_bytes", "throughput", "latency_s", "flops", "compact_bytes")
    return {"number": t.number, "label": t.label, "config": t.config, **{k: t.get(k) for k in keys},
            "model_file": str(t.model_file) if t.model_file else None}


MISS = {"max_params": "over --max-params", "min_throughput": "under --min-throughput", "min_accuracy": "under --min-accuracy",
        "max_latency": "over --max-latency", "max_bytes": "over --max-bytes"}


def cmd_pick(run_path: Path, max_params: str | None = None, min_throughput: str | None = None, min_accuracy: str | None = None,
             accuracy: str = "val", as_json: bool = False, max_latency: str | None = None, speed: str | None = None,
             max_bytes: str | None = None) -> int:
    """Choose the most accurate finished trial within the constraints; exit 1 (listing the nearest) when none fits."""
    from .._budget import format_count, parse_accuracy, parse_bytes, parse_count, parse_duration
    from ..pareto import Constraints, pick

    acc_key = accuracy_key(accuracy)
    if max_params is not None and max_params.strip().endswith("%"):
        raise BadInput(f"--max-params: give an absolute count (20000, 20K, 5.3M), not {max_params!r}: "
                       "a run can hold several architectures, so a percentage has no single base")
    c = Constraints(
        _constraint("--max-params", max_params, parse_count),
        _constraint("--min-throughput", min_throughput, parse_count),
        _constraint("--min-accuracy", min_accuracy, parse_accuracy),
        max_latency=_constraint("--max-latency", max_latency, parse_duration),
        max_bytes=_constraint("--max-bytes", max_bytes, parse_bytes),
    )
    run = load_run(run_path, speed)
    result = pick(run.trials, c, acc_key)
    finished = sum(t.status == "complete" for t in run.trials)
    if as_json:
        print(
            json.dumps(
                {
                    "constraints": c.__dict__,
                    "accuracy": acc_key,
                    "finished_trials": finished,
                    "speed_from": run.speed_source,
                    "chosen": _trial_summary(result.chosen) if result.chosen else None,
                    "satisfying": [t.number for t in result.satisfying],
                    "nearest": [{**_trial_summary(t), "shortfalls": s} for t, s in result.nearest],
                },
                indent=2,
                default=str,
            )
        )
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
    rows = [
        ("trial", f"#{t.number} {t.label}"),
        (
            "why",
            f"the highest {acc_key.replace('_', ' ')} of the {len(result.satisfying)} "
            f"finished trials that satisfy {c.describe()}",
        ),
    ]
    if c.max_params is not None:
        rows.append(("stored parameters", f"{int(t.get('stored_params')):,} <= {c.max_params:,.0f}"))
    else:
        rows.append(("stored parameters", f"{int(t.get('stored_params')):,}"))
    if t.get("stored_bytes") is not None:
        rows.append(
            ("stored bytes", f"{int(t.get('stored_bytes')):,}" + (f" <= {c.max_bytes:,.0f}" if c.max_bytes is not None else ""))
        )
    thr, lat = t.get("throughput"), t.get("latency_s")
    rows.append(("inference throughput", (f"{thr:,.1f}/s" if thr is not None else "not measured")
                 + (f" >= {c.min_throughput:,.1f}/s" if c.min_throughput is not None else "")))
    if lat is not None:
        rows.append(
            (
                "latency (batch 1)",
                f"{1e3 * lat:.3g} ms" + (f" <= {1e3 * c.max_latency:.3g} ms" if c.max_latency is not None else ""),
            )
        )
    rows.append(("speed measured on", run.speed_source))
    acc = t.get(acc_key)
    rows.append(
        (
            acc_key.replace("_", " "),
            f"{100 * acc:.2f}%" + (f" >= {100 * c.min_accuracy:.2f}%" if c.min_accuracy is not None else ""),
        )
    )
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
    print(table(rows))
    return 0
