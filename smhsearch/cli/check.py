"""``smhsearch check``: validate a space, count its trials and pre-screen every candidate before any training."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ._common import BadInput, load_space


def add(sub) -> None:
    s = sub.add_parser("check", help="validate a space and pre-screen every candidate's cost")
    s.add_argument("space", type=Path, metavar="SPACE")
    s.add_argument("--json", dest="as_json", action="store_true")
    s.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Validate a space, count its trials and pre-screen every candidate's cost before any training."""
    import torch

    from .. import measure
    from .._budget import format_count
    from ..search import plan_run
    from ..space import dataset_model_kwargs, dataset_shape

    space_path = args.space
    space = load_space(space_path)
    try:
        plan = plan_run(space, space_path)
    except ValueError as e:
        raise BadInput(f"{space_path}: search.max_params: {e}") from None
    from ..methods import compress
    from ..models import create_model

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
    if args.as_json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{space_path}: valid. {len(plan.candidates)} candidates, {plan.target_trials} trials ({space.search.sampler}), "
          f"{space.train.epochs} epochs each on {space.dataset.name}")
    if space.space.budget is not None and not isinstance(space.space.budget, list):  # a range: trials sample inside it
        b = space.space.budget
        print(f"space.budget is a range ({b.low} to {b.high}{', log' if b.log else ''}): candidates are shown at its two ends")
    width = max(len(r["candidate"]) for r in rows)
    print(f"{'candidate':<{width}}  {'stored':>9}  {'FLOPs':>9}  {'infer/s':>9}")
    for r in rows:
        print(f"{r['candidate']:<{width}}  {format_count(r['stored_params']):>9}  {format_count(r['flops']):>9}  {r['infer_per_s']:>9.0f}")
    print(f"pre-screen took {summary['prescreen_seconds']}s")
    return 0
