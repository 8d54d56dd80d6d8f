"""The search driver's own cost per trial (Ray, Optuna, bookkeeping) beside the trials' work.

20 trivial trials (an MLP, one epoch on a 256-image slice of the embedded data, one at a
time so nothing overlaps), run through ``smhsearch run``. From each trial.json's start
and finish stamps: driver time per trial = (wall from the first trial's start to the
last one's finish - the sum of the trials' own time) / (trials - 1). Ray's start-up is
reported apart. Target: under 1 s per trial after start-up.

    python benchmarks/driver_overhead.py [--device cpu|cuda]    # cuda: each trial gets a whole GPU

Writes benchmarks/results/driver_overhead-<device>.json (``-cpu`` by default).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from smhsearch.search import plan_run, run_search
from smhsearch.space import load_space

from _common import add_device_argument, parse_device, write_result  # type: ignore[import-not-found]

SPACE = """name: overhead
dataset: {name: fashion-mnist-small}
train: {epochs: 1, batch_size: 256, lr: 0.05}
space: {arch: [mlp], budget: [%s], method: [smh]}
search: {sampler: grid}
scheduler: {kind: none}
resources: {cpus_per_trial: 1, gpus_per_trial: %s, max_concurrent: 1}
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_device_argument(p)
    device = parse_device(p.parse_args().device)
    n = 20
    budgets = ", ".join(str(20_000 + 1_000 * i) for i in range(n))
    tmp = Path(tempfile.mkdtemp())
    try:
        (tmp / "overhead.yaml").write_text(SPACE % (budgets, 1 if device.type == "cuda" else 0))
        space = load_space(tmp / "overhead.yaml")
        plan = plan_run(space, tmp / "overhead.yaml", tmp / "run")
        t0 = time.time()
        summary = run_search(plan)
        wall = time.time() - t0
        records = [json.loads(p.read_text()) for p in sorted((tmp / "run" / "trials").glob("*/trial.json"))]
        starts = sorted(r["started"] for r in records)
        finishes = sorted(r["finished"] for r in records)
        work = sum(r["finished"] - r["started"] for r in records)
        span = finishes[-1] - starts[0]
        per_trial = (span - work) / max(1, len(records) - 1)
        result = {"trials": len(records), "complete": summary["complete"], "wall_s": wall, "startup_s": starts[0] - t0,
                  "trials_work_s": work, "driver_s_per_trial_after_startup": per_trial, "target_s_per_trial": 1.0}
        print(json.dumps(result, indent=2))
        write_result("driver_overhead", device, result)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
