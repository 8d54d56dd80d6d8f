"""Early stopping that keeps the small models: the search's ``pareto`` rule against accuracy-only ASHA and no stopping.

The case that matters: a ResNet-8 space of SMH and the width multiplier at 2%, 5%, 10%, 25% and
50% (4 epochs, grace 1, reduction factor 2), where ASHA threw away SMH at 2% after one
epoch although no trial at that rung was both smaller and more accurate.

Every candidate is trained once for every epoch by ``smhsearch.job.run_job`` (the one job
path), and its validation accuracy after each epoch is kept. The schedulers' decisions
are then replayed on those curves, so each rule sees the very same trials: trials start
in a random order on ``--workers`` workers, each epoch takes one tick, and at every rung
the rule judges a trial against the peers that reached the rung before it (the
asynchrony of ASHA and of :class:`smhsearch.search._scheduler.ParetoRungs`). The rules:

- ``none``: every trial runs every epoch;
- ``asha``: ``ParetoRungs`` with accuracy as its only objective, which is ASHA's rule
  (stop when at least ``n / rf`` of the ``n`` trials at the rung are more accurate);
- ``pareto``: the search's default, on (accuracy, stored parameters).

Per rule, over ``--orders`` arrival orders: the epochs spent, the hypervolume of the
finished trials' front (stored parameters, final validation accuracy; one reference for
all: twice the dense model's size, accuracy 0) as a share of ``none``'s, and how many
trials of ``none``'s final front the rule stopped, plus whether any stopped trial was
non-dominated at its rung (the pareto rule promises never).

    python benchmarks/early_stopping.py [--arch resnet8] [--epochs 4] [--orders 20] [--workers 2]
    python benchmarks/early_stopping.py --smoke    # mlp, 2 budgets, 2 epochs; writes nothing under results/

Writes benchmarks/results/early_stopping-<device>.json and .md.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import numpy as np

from smhsearch.job import JobSpec, run_job
from smhsearch.methods import SMH, WidthMultiplier
from smhsearch.models import create_model
from smhsearch.pareto import hypervolume, non_dominated
from smhsearch.search._scheduler import ParetoRungs
from smhsearch.train import TrainConfig

from _common import write_or_say, add_device_argument, parse_device  # type: ignore[import-not-found]

BUDGETS = ("2%", "5%", "10%", "25%", "50%")
RULES = {"none": None, "asha": [("val_acc", "max")], "pareto": [("val_acc", "max"), ("stored_params", "min")]}


def curves(arch: str, budgets, epochs: int, device) -> list[dict]:
    """Each candidate trained once, every epoch: [{label, stored_params, acc: [val acc after epoch 1..E]}]."""
    out = []
    train = TrainConfig(epochs=epochs, batch_size=128, lr=0.05)
    for method in (SMH, WidthMultiplier):
        for b in budgets:
            accs: list[float] = []
            spec = JobSpec(arch=arch, method=method(budget=b), dataset="fashion-mnist-small", train=train)
            t0 = time.time()
            m = run_job(spec, device=device, on_epoch=lambda e, _s: accs.append(float(e.val_acc))).metrics
            out.append({"label": f"{arch} {method.method}@{b}", "stored_params": int(m["stored_params"]), "acc": accs[:epochs]})
            print(f"{out[-1]['label']}: {out[-1]['stored_params']:,} stored, val acc by epoch "
                  f"{[round(a, 4) for a in out[-1]['acc']]} ({time.time() - t0:.0f}s)", flush=True)
    return out


def replay(trials: list[dict], rule, epochs: int, grace: int, rf: float, workers: int, order: list[int]) -> dict:
    """One asynchronous run of ``rule`` over the recorded curves, trials started in ``order``."""
    rungs = ParetoRungs(rule, grace, rf, epochs) if rule is not None else None
    queue, running, done = list(order), {}, {}  # running: trial -> epochs run
    spent, bad_stops = 0, 0
    while queue or running:
        while queue and len(running) < workers:
            running[queue.pop(0)] = 0
        for i in list(running):
            running[i] += 1
            spent += 1
            e, t = running[i], trials[i]
            if e == epochs:
                done[i] = "complete"
                del running[i]
            elif rungs is not None and rungs.on_result(
                str(i), {"epoch": e, "val_acc": t["acc"][e - 1], "stored_params": t["stored_params"]}
            ):
                rung = max(m for m in rungs.milestones if m <= e)
                peers = [trials[int(j)] for j in rungs.recorded[rung]]
                x = [p["stored_params"] for p in peers]
                acc = [p["acc"][rung - 1] for p in peers]
                mask = non_dominated(x, acc, "min")
                bad_stops += bool(mask[[int(j) for j in rungs.recorded[rung]].index(i)])
                done[i] = f"stopped@{e}"
                del running[i]
    finished = [i for i, s in done.items() if s == "complete"]
    return {"epochs": spent, "finished": sorted(finished), "stopped_non_dominated": bad_stops,
            "points": [(trials[i]["stored_params"], trials[i]["acc"][-1]) for i in finished]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="resnet8")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--grace", type=int, default=1)
    p.add_argument("--reduction-factor", type=float, default=2)
    p.add_argument("--orders", type=int, default=20, help="random arrival orders replayed per rule")
    p.add_argument("--workers", type=int, default=2, help="trials running at once in the replay")
    p.add_argument("--smoke", action="store_true", help="mlp, 2 budgets, 2 epochs, 3 orders; nothing written under results/")
    add_device_argument(p)
    a = p.parse_args()
    budgets = BUDGETS
    if a.smoke:
        a.arch, a.epochs, a.orders, budgets = "mlp", 2, 3, ("5%", "25%")
    device = parse_device(a.device)
    t0 = time.time()
    trials = curves(a.arch, budgets, a.epochs, device)
    dense = sum(q.numel() for q in create_model(a.arch, num_classes=10, in_channels=1).parameters())
    ref = (2.0 * dense, 0.0)
    final_front = {
        i
        for i, keep in enumerate(non_dominated([t["stored_params"] for t in trials], [t["acc"][-1] for t in trials], "min"))
        if keep
    }
    rng = random.Random(0)
    orders = [rng.sample(range(len(trials)), len(trials)) for _ in range(a.orders)]
    results = {name: [replay(trials, rule, a.epochs, a.grace, a.reduction_factor, a.workers, o) for o in orders]
               for name, rule in RULES.items()}
    hv_none = statistics.fmean(hypervolume(r["points"], ref) for r in results["none"])
    summary = {}
    for name, runs in results.items():
        hv = [hypervolume(r["points"], ref) for r in runs]
        summary[name] = {
            "epochs_mean": statistics.fmean(r["epochs"] for r in runs),
            "epochs_share": statistics.fmean(r["epochs"] for r in runs) / (len(trials) * a.epochs),
            "hv_mean": statistics.fmean(hv),
            "hv_share": statistics.fmean(hv) / hv_none,
            "hv_min_share": min(hv) / hv_none,
            "front_members_stopped_mean": statistics.fmean(len(final_front - set(r["finished"])) for r in runs),
            "stopped_non_dominated_total": sum(r["stopped_non_dominated"] for r in runs),
        }
    md = [
        f"{a.arch}, SMH and width at {', '.join(budgets)}; {a.epochs} epochs, grace {a.grace}, reduction factor "
        f"{a.reduction_factor:g}; {a.orders} arrival orders on {a.workers} workers, replayed on the same trained curves.",
        "",
        "| rule | epochs spent (share of none) | front hypervolume (share of none; worst order) | "
        "trials of the final front stopped | stops of a trial non-dominated at its rung |",
        "|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        md.append(f"| {name} | {s['epochs_mean']:.1f} ({s['epochs_share']:.0%}) | {s['hv_mean']:.4f} ({s['hv_share']:.1%}; "
                  f"{s['hv_min_share']:.1%}) | {s['front_members_stopped_mean']:.2f} of {len(final_front)} | "
                  f"{s['stopped_non_dominated_total']} |")
    payload = {
        "arch": a.arch,
        "budgets": list(budgets),
        "epochs": a.epochs,
        "grace": a.grace,
        "reduction_factor": a.reduction_factor,
        "orders": a.orders,
        "workers": a.workers,
        "reference": list(ref),
        "trials": trials,
        "final_front": sorted(final_front),
        "summary": summary,
        "wall_s": round(time.time() - t0, 1),
        "replays": {k: [{**r, "points": [list(map(float, q)) for q in r["points"]]} for r in v] for k, v in results.items()},
    }
    write_or_say("early_stopping", device, payload, md, a.smoke)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
