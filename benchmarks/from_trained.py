"""Compressing a model you already trained: every method from the trained weights, against from scratch.

Protocol. For each setting, the dense base is trained once to convergence (its full from-scratch length)
and saved to a weights file. Then every method, at 10% and 25% of the base's parameters, starts from
that file (``init="fit"``), with and without distillation from the trained model, and fine-tunes for 1,
3 and 10 epochs at a tenth of the base's learning rate (the usual fine-tuning rate); and the same method
trains from scratch for the base's full length at the base's rate. Each cell is run on 3 seeds. Each
records its test and validation accuracy, the accuracy of the fitted model before any training, the
fit's relative error and the training seconds.

Settings:
- ``resnet8``: ResNet-8 on the embedded Fashion-MNIST subset (7,200 / 800 / 2,000), SGD with Nesterov
  momentum, cosine, batch 128, lr 0.05, 15 epochs.
- ``mlp``: the 784-1000-10 MLP on MNIST's first 17,435 images (``../shared/data``), Adam without weight
  decay, one-cycle, batch 128, lr 1e-3, 15 epochs.

Results: ``benchmarks/results/from_trained-<device>.json`` and ``.md``. Finished cells are kept and
reused on a rerun of the same protocol.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from _common import add_device_argument, parse_device  # type: ignore[import-not-found]
from _harness import REPO, ResultsFile, joined_key, pool, split  # type: ignore[import-not-found]

METHODS = ("smh", "hashednets", "prune", "lowrank", "width")
BUDGETS = ("10%", "25%")
LENGTHS = (1, 3, 10)
FINETUNE_LR_FACTOR = 0.1
CACHE = REPO / ".data" / "from_trained"

SETTINGS: dict[str, dict[str, Any]] = {
    "resnet8": {"arch": "resnet8", "dataset": "fashion-mnist-small", "model": {"in_channels": 1},
                "train": {"epochs": 15, "batch_size": 128, "optimizer": "sgd", "lr": 0.05, "schedule": "cosine"}},
    "mlp": {"arch": "mlp_1x1000", "dataset": "mnist-17435", "model": {},
            "train": {"epochs": 15, "batch_size": 128, "optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.0,
                      "schedule": "onecycle"}},
}
KEY = ("setting", "method", "budget", "start", "epochs", "seed")


def load_data(setting: str):
    from smhsearch.data import load_dataset

    if SETTINGS[setting]["dataset"] == "mnist-17435":
        from hashednets_mnist import mnist_17k  # type: ignore[import-not-found]

        return mnist_17k()
    return load_dataset(SETTINGS[setting]["dataset"])


def config_for(method: str, budget: str, seed: int, init: str):
    import smhsearch

    if method == "smh":
        return smhsearch.SMH(budget=budget, scale="learnable", seed=seed, init=init)
    if method == "hashednets":
        return smhsearch.HashedNets(budget=budget, seed=seed, init=init)
    if method == "prune":
        return smhsearch.Prune(budget=budget, init=init)
    if method == "lowrank":
        return smhsearch.LowRank(budget=budget, seed=seed, init=init)
    return smhsearch.WidthMultiplier(budget=budget, init="scratch")  # it rebuilds its network: no fit


def base_file(setting: str, data) -> Path:
    """The trained dense base of ``setting``: trained once (seed 0, the full length) and kept in ``.data/``."""
    import smhsearch
    from smhsearch.train import TrainConfig, evaluate, train

    s = SETTINGS[setting]
    path = CACHE / f"{setting}.pt"
    if not path.exists():
        torch.manual_seed(0)
        model = smhsearch.create_model(s["arch"], num_classes=data.num_classes, **s["model"])
        train(model, data, TrainConfig(**s["train"], seed=0), progress=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), path)
        print(f"{setting}: trained the base, test accuracy {evaluate(model, data.test)[0]:.4f}", file=sys.stderr)
    return path


def plan(settings, methods, budgets, lengths, seeds) -> list[dict[str, Any]]:
    cells = []
    for setting in settings:
        full = SETTINGS[setting]["train"]["epochs"]
        for method in methods:
            for budget in budgets:
                for seed in range(seeds):
                    starts = [("scratch", full)]
                    if method != "width":
                        starts += [(start, n) for n in lengths for start in ("fit", "fit+kd")]
                    cells += [{"setting": setting, "method": method, "budget": budget, "start": start, "epochs": n, "seed": seed}
                              for start, n in starts]
    return cells


def run_cell(cell: dict[str, Any]) -> dict[str, Any]:
    import smhsearch
    from smhsearch.distill import DistillConfig
    from smhsearch.models import weights_of
    from smhsearch.train import TrainConfig, evaluate, train

    torch.set_num_threads(1)
    s = SETTINGS[cell["setting"]]
    data = load_data(cell["setting"])
    weights = base_file(cell["setting"], data)
    torch.manual_seed(cell["seed"])
    fit = cell["start"] != "scratch"
    base = smhsearch.create_model(s["arch"], num_classes=data.num_classes, weights=weights if fit else None, **s["model"])
    model = smhsearch.compress(base, config_for(cell["method"], cell["budget"], cell["seed"], "fit" if fit else "scratch"))
    out = dict(cell)
    if fit:
        out["weights_sha256"] = weights_of(base).sha256
        out["fit_error"] = (model.fit_error or {}).get("overall")
        at_budget = copy.deepcopy(model)
        at_budget.set_progress(1.0)  # pruning at its budget (one shot), as the model ships; the others are there already
        out["acc_before"] = evaluate(at_budget, data.test)[0]
    hp = dict(s["train"], epochs=cell["epochs"], seed=cell["seed"])
    if fit:
        hp["lr"] = hp["lr"] * FINETUNE_LR_FACTOR
    teacher = None
    if cell["start"] == "fit+kd":
        hp["distill"] = DistillConfig(temperature=4.0, alpha=0.9)
        teacher = smhsearch.create_model(s["arch"], num_classes=data.num_classes, weights=weights, **s["model"])
    t0 = time.perf_counter()
    r = train(model, data, TrainConfig(**hp), progress=False, teacher=teacher)
    out.update(test_acc=r.test_acc, val_acc=r.history[-1].val_acc, seconds=time.perf_counter() - t0,
               protocol=protocol(cell["setting"]))
    return out


def protocol(setting: str) -> dict[str, Any]:
    return {**SETTINGS[setting], "finetune_lr_factor": FINETUNE_LR_FACTOR, "distill": {"temperature": 4.0, "alpha": 0.9}}


def summarise(cells: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    groups: dict[tuple, list[dict]] = {}
    for c in cells:
        groups.setdefault((c["setting"], c["method"], c["budget"], c["start"], c["epochs"]), []).append(c)
    rows = []
    for (setting, method, budget, start, epochs), cs in sorted(groups.items()):
        accs = [c["test_acc"] for c in cs]
        row = {"setting": setting, "method": method, "budget": budget, "start": start, "epochs": epochs, "seeds": len(cs),
               "test_acc": statistics.mean(accs), "test_acc_sd": statistics.stdev(accs) if len(accs) > 1 else 0.0,
               "seconds": statistics.mean(c["seconds"] for c in cs)}
        if start != "scratch":
            row["acc_before"] = statistics.mean(c["acc_before"] for c in cs)
            row["fit_error"] = statistics.mean(c["fit_error"] for c in cs if c["fit_error"] is not None) \
                if any(c["fit_error"] is not None for c in cs) else None
        rows.append(row)
    return rows, targets(rows)


def targets(rows: list[dict[str, Any]]) -> list[str]:
    def get(**m):
        return next((r for r in rows if all(r[k] == v for k, v in m.items())), None)

    lines = []
    for setting in sorted({r["setting"] for r in rows}):
        base = SETTINGS[setting]
        for method in ("prune", "lowrank"):
            r = get(setting=setting, method=method, budget="25%", start="fit", epochs=1)
            if r is not None:
                lines.append(f"{setting}: {method} at 25% before training: {100 * r['acc_before']:.2f}%")
        for method in METHODS:
            for budget in BUDGETS:
                scratch = get(setting=setting, method=method, budget=budget, start="scratch", epochs=base["train"]["epochs"])
                best3 = [r for r in rows if r["setting"] == setting and r["method"] == method and r["budget"] == budget
                         and r["start"] in ("fit", "fit+kd") and r["epochs"] == 3]
                if scratch and best3:
                    b = max(best3, key=lambda r: r["test_acc"])
                    ok = b["test_acc"] >= scratch["test_acc"]
                    lines.append(f"{setting}: {method} {budget}: 3 epochs from the trained weights ({b['start']}) "
                                 f"{100 * b['test_acc']:.2f}% against {100 * scratch['test_acc']:.2f}% from scratch at "
                                 f"{base['train']['epochs']}: {'met' if ok else 'missed'}")
        for n in LENGTHS:
            kd, plain = get(setting=setting, method="smh", budget="10%", start="fit+kd", epochs=n), \
                get(setting=setting, method="smh", budget="10%", start="fit", epochs=n)
            if kd and plain:
                gain = 100 * (kd["test_acc"] - plain["test_acc"])
                lines.append(f"{setting}: SMH 10% distilled from the trained model, {n} epochs: {gain:+.2f} points "
                             f"({'met' if gain >= 0.5 else 'missed'}; target +0.5)")
    return lines


def table(rows: list[dict[str, Any]]) -> str:
    out = ["| setting | method | budget | start | epochs | seeds | test acc % | sd | before % | fit error | seconds |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        before = f"{100 * r['acc_before']:.2f}" if "acc_before" in r else ""
        fe = f"{r['fit_error']:.3f}" if r.get("fit_error") is not None else ""
        out.append(f"| {r['setting']} | {r['method']} | {r['budget']} | {r['start']} | {r['epochs']} | {r['seeds']} | "
                   f"{100 * r['test_acc']:.2f} | {100 * r['test_acc_sd']:.2f} | {before} | {fe} | {r['seconds']:.1f} |")
    return "\n".join(out) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--settings", default="mlp,resnet8", help=f"comma-separated, of {', '.join(SETTINGS)}")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(METHODS)}")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    add_device_argument(p)
    args = p.parse_args()
    settings, methods = args.settings.split(","), args.methods.split(",")
    bad = [s for s in settings if s not in SETTINGS] + [m for m in methods if m not in METHODS]
    if bad or args.seeds < 1 or args.workers < 1:
        p.error(f"--settings, --methods, --seeds >= 1, --workers >= 1: {bad or 'a count below 1'} not allowed; "
                f"settings: {', '.join(SETTINGS)}; methods: {', '.join(METHODS)}")
    device = parse_device(args.device)
    results = ResultsFile("from_trained", device)
    stored = {joined_key(c, KEY): c for c in results.old.get("cells", [])}
    cells = plan(settings, methods, BUDGETS, LENGTHS, args.seeds)
    reused, todo = split(
        cells, stored, lambda c: joined_key(c, KEY), lambda old, c: old.get("protocol") == protocol(c["setting"])
    )

    def check() -> None:  # data and the trained bases, here, before any worker starts
        for s in settings:
            base_file(s, load_data(s))

    done = dict(reused)
    for out in pool(run_cell, todo, args.workers, check):
        done[joined_key(out, KEY)] = out
        results.trained = True
        rows, lines = summarise(list(done.values()))
        results.write({"protocol": {s: protocol(s) for s in SETTINGS}, "summary": rows, "targets": lines,
                       "cells": sorted(done.values(), key=lambda c: joined_key(c, KEY))})
    rows, lines = summarise(list(done.values()))
    results.write({"protocol": {s: protocol(s) for s in SETTINGS}, "summary": rows, "targets": lines,
                   "cells": sorted(done.values(), key=lambda c: joined_key(c, KEY))})
    results.write_md("# Compressing a trained model (benchmarks/from_trained.py)\n\n" + table(rows) + "\n" +
                     "\n".join(f"- {t}" for t in lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
