"""``smhsearch report``: the run's interactive Pareto report, one self-contained HTML file."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import BadInput, accuracy_key, load_run, refuse_overwrite


def add(sub) -> None:
    s = sub.add_parser("report", help="write a run's interactive Pareto report (self-contained HTML)")
    s.add_argument("run", type=Path, metavar="RUN", help="run folder (runs/<space name>)")
    s.add_argument("--out", type=Path, help="report file (default: reports/<name>.html)")
    s.add_argument("--accuracy", default="val", help="val (default: selection is on validation) | test")
    s.add_argument("--speed", metavar="TARGET", help="speed figures from this `smhsearch bench` target instead of the search's")
    s.add_argument("--force", action="store_true", help="replace --out if it exists (the default file is always rewritten)")
    s.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Write the run's interactive report: one self-contained HTML file (default reports/<name>.html)."""
    from ..report import write_report

    acc_key = accuracy_key(args.accuracy)
    run = load_run(args.run, args.speed)
    out = args.out
    if out is not None and out.is_dir():
        raise BadInput(f"--out: {out} is a folder; give the report's file name, e.g. {out / (run.name + '.html')}")
    refuse_overwrite(out, args.force)
    path = write_report(run, out, acc_key)
    done = sum(t.status == "complete" for t in run.trials)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB; {len(run.trials)} trials, {done} finished); open it in a browser")
    return 0
