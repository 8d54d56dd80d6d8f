"""How long the per-tensor precision solver takes: one precision per tensor under a byte budget, solved exactly.

Protocol: random instances of 10, 100 and 1,000 tensors (sizes log-uniform in 100..100,000 elements),
each with the candidate precisions 16, 8, 4 and 1 bits (bytes = elements x bits / 8 + 4 for a scale) and
loss increases that grow as the bits fall; budgets at 10%, 30% and 60% of the way from the smallest to the
largest file; 3 instances each. The wall time of ``methods._knapsack.solve`` per solve, its median and
maximum. Target: under 1 s for 1,000 tensors.

Results: ``benchmarks/results/solver_speed-cpu.json``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from _common import write_result  # type: ignore[import-not-found]

BITS = (16, 8, 4, 1)


def instance(tensors: int, seed: int):
    rng = np.random.default_rng(seed)
    numel = np.exp(rng.uniform(np.log(100), np.log(100_000), size=tensors)).astype(int)
    cost = [[int(n * b // 8) + 4 for b in BITS] for n in numel]
    loss = [[0.0, *np.cumsum(rng.exponential(1.0, size=len(BITS) - 1) * rng.random())] for _ in numel]
    return cost, loss


def main() -> None:
    import torch

    from smhsearch.methods._knapsack import solve

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    p.add_argument("--instances", type=int, default=3)
    a = p.parse_args()
    if any(s < 1 for s in a.sizes) or a.instances < 1:
        p.error("--sizes and --instances must be at least 1")
    rows = []
    for tensors in a.sizes:
        times = []
        for seed in range(a.instances):
            cost, loss = instance(tensors, seed)
            lo, hi = sum(min(c) for c in cost), sum(max(c) for c in cost)
            for frac in (0.1, 0.3, 0.6):
                budget = int(lo + frac * (hi - lo))
                t0 = time.perf_counter()
                plan = solve(cost, loss, budget)
                times.append(time.perf_counter() - t0)
                assert plan.bytes <= budget
        rows.append({"tensors": tensors, "solves": len(times), "median_s": statistics.median(times), "max_s": max(times)})
        print(rows[-1])
    target = next((r for r in rows if r["tensors"] == 1000), None)
    summary = {"target": "under 1 s for 1,000 tensors",
               "met": None if target is None else target["max_s"] < 1.0}
    write_result("solver_speed", torch.device("cpu"), {"protocol": {"bits": list(BITS), "instances": a.instances,
                                                                     "budget_fractions": [0.1, 0.3, 0.6]},
                                                        "rows": rows, "summary": [summary]})


if __name__ == "__main__":
    main()
