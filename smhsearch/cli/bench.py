"""``smhsearch bench``: time a run's finished models again on this machine (the deployment target) and store the figures."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ._common import BadInput, load_run


def add(sub) -> None:
    s = sub.add_parser("bench", help="time a run's finished models on this machine, for pick and report --speed")
    s.add_argument("run", type=Path, metavar="RUN")
    s.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N, xla, auto")
    s.add_argument("--runtime", default="torch", help="torch (default) | onnxruntime (the ONNX file export writes)")
    s.add_argument("--batch-size", type=int, default=64, help="batch of the throughput figure (latency is batch 1); default 64")
    s.add_argument("--name", help="the target's name, for pick/report --speed (default: <host>-<device>-<runtime>-b<batch>)")
    s.add_argument(
        "--trial", type=int, action="append", dest="trials", help="only this trial (repeatable; default: every finished one)"
    )
    s.add_argument("--max-steps", type=int, default=100, help="most timed steps per figure (rounds stop earlier once stable)")
    s.add_argument("--force", action="store_true", help="time trials the target already holds again (default: only new ones)")
    s.add_argument("--json", dest="as_json", action="store_true")
    s.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Time the run's finished models on this machine; store them as ``RUN/bench/<name>.json``."""
    import re
    import sys

    from ..bench import RUNTIMES, BenchError, bench_run

    if args.runtime not in RUNTIMES:  # before loading anything
        raise BadInput(f"--runtime: unknown runtime {args.runtime!r}; allowed: {', '.join(RUNTIMES)}")
    if args.max_steps < 4:
        raise BadInput(f"--max-steps: expected at least 4 (a spread needs four steps), but got {args.max_steps}")
    if args.name is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", args.name):
        raise BadInput(f"--name: {args.name!r} is not a plain name (letters, digits, '_', '.', '-')")
    run = load_run(args.run)
    log = (lambda m: print(m, file=sys.stderr)) if args.as_json else print
    try:
        path, record, timed = bench_run(run, device=args.device, runtime=args.runtime, batch_size=args.batch_size, name=args.name,
                                        trials=args.trials, force=args.force, max_steps=args.max_steps, log=log)
    except BenchError as e:
        flag = {"trials": "--trial", "batch_size": "--batch-size"}.get(e.option, f"--{e.option}")
        raise BadInput(str(e) if e.option == "device" else f"{flag}: {e}") from None  # resolve_device names --device itself
    if args.as_json:
        print(json.dumps({"file": str(path), "timed_networks": timed, **record}, indent=2))
        return 0
    rows = [(n, f) for n, f in record["trials"].items() if args.trials is None or int(n) in args.trials]
    print(f"{path}: {len(record['trials'])} trials on {record['device']} ({record['runtime']}, batch {record['batch_size']}); "
          f"{timed} networks timed now")
    for n, f in rows:
        t = run.trial(int(n))
        print(f"  #{n} {t.label}: {f['throughput']:,.0f} samples/s (spread {100 * f['throughput_spread']:.1f}%), "
              f"latency {1e3 * f['latency_s']:.3g} ms")
    print(
        f"use it with: smhsearch pick {args.run} --speed {record['name']} ...  /  "
        f"smhsearch report {args.run} --speed {record['name']}"
    )
    return 0
