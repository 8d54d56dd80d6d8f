"""Are the derived learning rates right? Every method at its default rates against the best of a sweep of its own.

A comparison of compression methods is only fair if each trains at its own right rate.
Each method derives its variables' learning-rate multipliers from the dense model's rate
(smhsearch/methods/_rates.py); this benchmark checks them. First the dense model sweeps
its learning rate, and the best point on validation becomes the base rate of its setting
and optimizer: the multipliers are relative to a dense rate that is right. Then every
method, optimizer and budget trains at the default and at x{1/10, 1/3, 1, 3, 10} of the
method's own rates; the best point on validation (mean over seeds) is picked, and the
test error at the default is reported beside the test error at that point. Target: the
default within 0.3 points of the best on MNIST and 0.5 on the Fashion-MNIST subset.

The point picked is reported on the seeds that picked it, so the gap carries a winner's curse: the
best of five noisy means is biased low. ``--confirm K`` trains K fresh seeds at the default and at
the picked point of every group whose pick is not the default, and reports that gap beside the
other (the fresh seeds pick nothing). A confirmed gap is an estimate without the selection bias;
the target is stated against both.

- Settings: ``mnist-mlp``, the 784-1000-10 MLP on the first 17,435 MNIST training images
  (../shared/data/mnist, as benchmarks/hashednets_mnist.py), budgets 1/8 and 1/64, 10
  epochs; ``fashion-resnet8``, ResNet-8 on the embedded Fashion-MNIST subset, budgets 10%
  and 25%, 5 epochs.
- Optimizers: SGD (Nesterov momentum 0.9, weight decay 5e-4, the dense sweep centred on
  lr 0.05) and AdamW (weight decay 1e-2, centred on lr 1e-3); batch 128, cosine schedule
  after a linear warm-up over the first 10% of the epochs. Without it, SMH at the dense
  model's best SGD rate diverged in its first 20 steps where the dense model did not
  (MNIST MLP, 1/64, lr 0.15): products of variables amplify the large first gradients.
- Methods: smh, smh_learnable, hashed1, hashed2, hashed10 (HashedNets' default per-layer
  pools), prune, lowrank, width, and dense for reference. Methods with shared variables
  sweep them (``variable_lr_mult``); prune, width (whose per-layer Adam rates are
  multiples of it) and dense, which have none, sweep the
  whole learning rate.

    python benchmarks/lr_fairness.py               # the full run (680 trainings); --jobs N on N idle cores
    python benchmarks/lr_fairness.py --quick       # 3 / 2 epochs, one seed, x{1/3, 1, 3}
    python benchmarks/lr_fairness.py --smoke       # < 2 minutes, tiny subsets: checks the script, not the rates
    python benchmarks/lr_fairness.py --epochs 10   # a longer protocol, in lr_fairness-e10-*
    python benchmarks/lr_fairness.py --base centre # the methods at 0.05 / 1e-3 rather than the dense model's best
    python benchmarks/lr_fairness.py --confirm 2   # and the default and the picked point on 2 fresh seeds

Resumable: every finished training is written to the JSON at once, and a rerun reuses
the cells whose protocol (epochs, data size, rates) is unchanged. Writes
benchmarks/results/lr_fairness-cpu.json and .md (``--quick``: lr_fairness-quick-cpu.*;
``--smoke``: lr_fairness-smoke-cpu.*, which git ignores).
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import json
import math
import os
import statistics
import time
from pathlib import Path

import torch

import smhsearch
from smhsearch import SMH, HashedNets, LowRank, Prune, WidthMultiplier
from smhsearch.data import load_dataset
from smhsearch.data._splits import TensorSplit
from smhsearch.train import TrainConfig, TrainingDiverged, train

from _common import RESULTS, device_slug, rate_fingerprint, recorded_environment  # type: ignore[import-not-found]
from _harness import pool, split  # type: ignore[import-not-found]

SETTINGS = {
    "mnist-mlp": {"arch": "mlp_1x1000", "kwargs": {}, "budgets": ["1/8", "1/64"], "epochs": 10, "target": 0.3},
    "fashion-resnet8": {"arch": "resnet8", "kwargs": {"in_channels": 1}, "budgets": ["10%", "25%"], "epochs": 5, "target": 0.5},
}
OPTIMIZERS = {"sgd": {"lr": 0.05, "weight_decay": 5e-4}, "adamw": {"lr": 1e-3, "weight_decay": 1e-2}}
METHODS = {
    "dense": None,
    "smh": lambda b, s: SMH(budget=b, seed=s),
    "smh_learnable": lambda b, s: SMH(budget=b, scale="learnable", seed=s),
    "hashed1": lambda b, s: HashedNets(budget=b, hashes=1, seed=s),
    "hashed2": lambda b, s: HashedNets(budget=b, hashes=2, seed=s),
    "hashed10": lambda b, s: HashedNets(budget=b, hashes=10, seed=s),
    "prune": lambda b, s: Prune(budget=b),
    "lowrank": lambda b, s: LowRank(budget=b, seed=s),
    "width": lambda b, s: WidthMultiplier(budget=b, seed=s),
}
SWEEPS_WHOLE_LR = {"dense", "prune", "width"}  # no shared variables: their rate is the whole learning rate
SWEEP = [0.1, 1 / 3, 1.0, 3.0, 10.0]
BATCH = 128

_DATA: dict[tuple, object] = {}  # per worker process


def budget_value(b: str) -> float | str:
    return 1 / int(b.split("/")[1]) if b.startswith("1/") else b


def subset(data, n_train: int | None, n_test: int | None):
    """The first ``n_train`` training (a quarter as many validation) and ``n_test`` test images; None keeps all."""
    if n_train is None:
        return data
    cut = lambda s, n: TensorSplit(s.x[:n], s.y[:n], s.mean, s.std, s.augment)  # noqa: E731
    return dataclasses.replace(data, train=cut(data.train, n_train), val=cut(data.val, max(1, n_train // 4)),
                               test=cut(data.test, n_test))


def dataset(setting: str, n_train: int | None, n_test: int | None):
    key = (setting, n_train, n_test)
    if key not in _DATA:
        if setting == "mnist-mlp":
            from hashednets_mnist import mnist_17k  # type: ignore[import-not-found]

            full = mnist_17k()
        else:
            full = load_dataset("fashion-mnist-small")
        _DATA[key] = subset(full, n_train, n_test)
    return _DATA[key]


_RATES: dict[tuple, dict[str, float]] = {}


def default_rates(setting: str, method: str, budget: str, optimizer: str) -> dict[str, float]:
    """The method's own learning-rate multipliers at its default, per parameter group (3 significant digits):
    part of every cell, so a change of a method's rule trains its cells again, and only its."""
    key = (setting, method, budget, optimizer)
    if key not in _RATES:
        s = SETTINGS[setting]
        def build() -> torch.nn.Module:
            base = smhsearch.create_model(s["arch"], **s["kwargs"])
            return base if method == "dense" else smhsearch.compress(base, METHODS[method](budget_value(budget), 0))

        _RATES[key] = rate_fingerprint(build, optimizer)
    return _RATES[key]


def cell_key(c: dict) -> str:
    role = "|confirm" if c.get("role") == "confirm" else ""
    return f"{c['setting']}|{c['budget']}|{c['method']}|{c['optimizer']}|lr{c['lr']:.3g}|x{c['factor']:.4g}|seed{c['seed']}{role}"



def run_cell(c: dict) -> dict:
    """One training; the seed sets the initialisation, the method's own seed and the data order."""
    torch.set_num_threads(1)
    s = SETTINGS[c["setting"]]
    data = dataset(c["setting"], c["n_train"], c["n_test"])
    torch.manual_seed(c["seed"])
    base = smhsearch.create_model(s["arch"], **s["kwargs"])
    model = (
        base if c["method"] == "dense" else smhsearch.compress(base, METHODS[c["method"]](budget_value(c["budget"]), c["seed"]))
    )
    whole = c["method"] in SWEEPS_WHOLE_LR
    cfg = TrainConfig(
        epochs=c["epochs"],
        batch_size=BATCH,
        optimizer=c["optimizer"],
        lr=c["lr"] * (c["factor"] if whole else 1.0),
        weight_decay=c["weight_decay"],
        warmup_epochs=c["warmup_epochs"],
        variable_lr_mult=1.0 if whole else c["factor"],
        seed=c["seed"],
    )
    t0 = time.perf_counter()
    out = {**c, "swept": "lr" if whole else "variable_lr_mult"}
    try:
        r = train(model, data, cfg, device=c["device"], progress=False)
    except TrainingDiverged as e:
        return {**out, "diverged": str(e), "seconds": time.perf_counter() - t0}
    stored = model.final_stored_count() if hasattr(model, "final_stored_count") else sum(p.numel() for p in model.parameters())
    return {**out, "val_acc": r.history[-1].val_acc, "test_error_pct": 100 * (1 - r.test_acc), "stored": stored,
            "seconds": time.perf_counter() - t0}


def plan(a, methods: list[str], base_lr: dict[tuple[str, str], float]) -> list[dict]:
    """The trainings of ``methods``; ``base_lr[(setting, optimizer)]`` is the rate their sweep multiplies."""
    cells = []
    for name in a.settings:
        s = SETTINGS[name]
        epochs = 1 if a.smoke else (max(2, s["epochs"] * 3 // 10) if a.quick else a.epochs or s["epochs"])
        budgets = [b for b in s["budgets"] if a.budgets is None or b in a.budgets]
        budgets = budgets[:1] if a.smoke else budgets
        for method in methods:
            for budget in (["-"] if method == "dense" else budgets):  # dense: the reference, budget-free
                for opt in a.optimizers:
                    for f in a.sweep:
                        for seed in range(a.seeds):
                            cells.append({"setting": name, "budget": budget, "method": method, "optimizer": opt, "factor": f,
                                          "seed": seed, "epochs": epochs, "n_train": a.n_train, "n_test": a.n_test,
                                          "lr": base_lr[(name, opt)], "weight_decay": OPTIMIZERS[opt]["weight_decay"],
                                          "warmup_epochs": a.warmup * epochs,
                                          "rates": default_rates(name, method, budget, opt),
                                          "batch_size": BATCH, "device": a.device})
    return cells


def dense_best(cells: dict[str, dict]) -> dict[tuple[str, str], float]:
    """The dense model's best rate of each (setting, optimizer), on mean final validation accuracy."""
    rows = [r for r in summarise(cells) if r["method"] == "dense"]
    lr = {(c["setting"], c["optimizer"]): c["lr"] for c in cells.values() if c["method"] == "dense"}
    return {(r["setting"], r["optimizer"]): lr[(r["setting"], r["optimizer"])] * r["best_factor"] for r in rows}


def current_cells(a, cells: dict[str, dict]) -> tuple[dict[str, dict], dict[tuple[str, str], float]]:
    """The file's cells of the current protocol, every setting in it (not only this run's), and the base rates:
    the dense sweeps, and each method's groups that are complete at the dense model's best rate and the method's
    current default rates. A partial run thus reports the whole file, and a cell of an older protocol (another
    base rate, rule or length) is left out of the summary, though the file and git keep it."""
    centre = {(n, o): OPTIMIZERS[o]["lr"] for n in SETTINGS for o in OPTIMIZERS}
    whole = argparse.Namespace(**{**vars(a), "settings": sorted({c["setting"] for c in cells.values()} & set(SETTINGS)),
                                  "optimizers": list(OPTIMIZERS), "budgets": None})
    same = lambda c, want: all(c.get(k) == v for k, v in want.items())  # noqa: E731
    protocol = lambda want: {k: v for k, v in want.items() if k not in ("factor", "seed")}  # noqa: E731  (the sweep's extensions and fresh seeds too)
    dense: dict[str, dict] = {}
    for want in plan(whole, ["dense"], centre):
        dense.update({k: c for k, c in cells.items() if c["method"] == "dense" and same(c, protocol(want))})
    base = dense_best(dense) if a.base == "dense-best" else centre
    whole.settings = [n for n in whole.settings if all((n, o) in base for o in OPTIMIZERS)]
    groups: dict[tuple, list[tuple[str, dict] | None]] = {}
    protocols: dict[tuple, dict] = {}
    for want in plan(whole, [m for m in METHODS if m != "dense"], base):
        got = cells.get(cell_key(want))
        key = (want["setting"], want["budget"], want["method"], want["optimizer"])
        groups.setdefault(key, []).append((cell_key(want), got) if got is not None and same(got, want) else None)
        protocols[key] = protocol(want)
    out = dict(dense)
    for key, members in groups.items():
        if all(members):
            out.update(dict(members))  # type: ignore[arg-type]
            out.update({k: c for k, c in cells.items() if c.get("role") == "confirm" and same(c, protocols[key])})
    return out, {k: v for k, v in base.items() if k[0] in whole.settings}


def summarise(cells: dict[str, dict]) -> list[dict]:
    """Per (setting, budget, method, optimizer): the default's test error, and the error at the point validation picks;
    where fresh seeds (``--confirm``) trained the default and that point, their gap too."""
    groups: dict[tuple, dict[float, list[dict]]] = {}
    fresh: dict[tuple, dict[float, dict[int, float]]] = {}
    for c in cells.values():
        if c.get("role") == "confirm":
            fresh.setdefault((c["setting"], c["budget"], c["method"], c["optimizer"]), {}).setdefault(c["factor"], {})[
                c["seed"]
            ] = c.get("test_error_pct", math.nan)
            continue
        groups.setdefault((c["setting"], c["budget"], c["method"], c["optimizer"]), {}).setdefault(c["factor"], []).append(c)
    rows = []
    for (setting, budget, method, opt), by_f in sorted(groups.items()):
        val = {f: statistics.mean(r.get("val_acc", 0.0) for r in rs) for f, rs in by_f.items()}  # diverged counts as 0
        err = {f: [r["test_error_pct"] for r in rs if "test_error_pct" in r] for f, rs in by_f.items()}
        best = max(val, key=val.get)
        mean = lambda f: statistics.mean(err[f]) if err.get(f) and len(err[f]) == len(by_f[f]) else float("nan")  # noqa: E731
        gap = mean(1.0) - mean(best) if 1.0 in by_f else float("nan")
        pairs = {r["seed"]: r.get("test_error_pct", math.nan) for r in by_f.get(1.0, [])}  # the gap seed by seed
        diffs = [pairs[r["seed"]] - r.get("test_error_pct", math.nan) for r in by_f[best] if r["seed"] in pairs]
        finite = len(diffs) > 1 and all(math.isfinite(x) for x in diffs)  # a diverged seed has no gap to spread
        gap_se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if finite else float("nan")
        conf = fresh.get((setting, budget, method, opt), {})
        seeds = sorted(set(conf.get(1.0, {})) & set(conf.get(best, {})))
        confirmed = {"confirmed_seeds": len(seeds)} if best != 1.0 and seeds else {}
        if confirmed:
            d = [conf[1.0][s] - conf[best][s] for s in seeds]  # nan where either diverged
            confirmed |= {"confirmed_default_error_pct": statistics.mean(conf[1.0][s] for s in seeds),
                          "confirmed_best_error_pct": statistics.mean(conf[best][s] for s in seeds),
                          "confirmed_gap_points": statistics.mean(d),
                          "confirmed_within_target": bool(statistics.mean(d) <= SETTINGS[setting]["target"])}
        rows.append(
            {
                "setting": setting,
                "budget": budget,
                "method": method,
                "optimizer": opt,
                "default_error_pct": mean(1.0),
                "best_factor": best,
                "best_error_pct": mean(best),
                "gap_points": gap,
                "gap_se_points": gap_se,
                "target_points": SETTINGS[setting]["target"],
                "within_target": bool(gap <= SETTINGS[setting]["target"]),
                "seeds": len(by_f.get(1.0, [])),
                "errors_by_factor": {f"{f:.4g}": mean(f) for f in sorted(by_f)},
                **confirmed,
            }
        )
    return rows


def markdown(rows: list[dict]) -> str:
    confirm = any("confirmed_seeds" in r for r in rows)
    out = ["| setting | budget | method | optimizer | default (test error %) | best x (val) | at best | default - best | "
           "± (s.e., seed by seed) | within target |" + (" fresh seeds: default, at best, gap | within |" if confirm else ""),
           "|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if confirm else "")]
    num = lambda v, fmt: "diverged" if math.isnan(v) else format(v, fmt)  # noqa: E731  (a seed diverged)
    for r in rows:
        line = (f"| {r['setting']} | {r['budget']} | {r['method']} | {r['optimizer']} | {num(r['default_error_pct'], '.2f')} | "
                f"x{r['best_factor']:.3g} | {num(r['best_error_pct'], '.2f')} | {num(r['gap_points'], '+.2f')} | "
                f"{'-' if r['best_factor'] == 1.0 or r['seeds'] < 2 else num(r['gap_se_points'], '.2f')} | "
                f"{'(reference)' if r['method'] == 'dense' else 'yes' if r['within_target'] else 'no'} |")
        if confirm:
            line += (f" {num(r['confirmed_default_error_pct'], '.2f')}, {num(r['confirmed_best_error_pct'], '.2f')}, "
                     f"{num(r['confirmed_gap_points'], '+.2f')} | {'yes' if r['confirmed_within_target'] else 'no'} |"
                     if "confirmed_seeds" in r else " - | - |")
        out.append(line)
    return "\n".join(out) + "\n"


def write(path: Path, payload: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)  # a kill mid-write leaves the previous file whole


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS), choices=list(OPTIMIZERS))
    p.add_argument("--budgets", nargs="+", help="only these of each setting's budgets (e.g. 1/64 10%%)")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--confirm", type=int, default=0, metavar="K",
                   help="K fresh seeds at the default and at the picked point of each group whose pick is not the default")
    p.add_argument("--jobs", type=int, default=1, help="trainings run at once, one thread each")
    p.add_argument("--base", choices=["dense-best", "centre"], default="dense-best",
                   help="the rate the methods' sweeps multiply: the dense model's best, or the centre (0.05 / 1e-3)")
    p.add_argument("--warmup", type=float, default=0.1, help="linear warm-up, as a fraction of the epochs")
    p.add_argument("--device", default="cpu", help="cpu, or cuda (bf16 autocast: a separate results file, named for the GPU)")
    p.add_argument("--epochs", type=int, help="every setting at this many epochs (a separate results file, "
                   "lr_fairness-e<N>-*: is a setting's gap an artefact of its short protocol?)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="about 3/10 of the epochs, one seed, x{1/3, 1, 3}")
    mode.add_argument("--smoke", action="store_true", help="1 epoch on 256 images, first budget, x{1, 3}: < 2 minutes")
    a = p.parse_args()
    a.sweep, a.n_train, a.n_test = SWEEP, None, None
    if a.quick:
        a.seeds, a.sweep = 1, [1 / 3, 1.0, 3.0]
    if a.smoke:
        a.seeds, a.sweep, a.n_train, a.n_test = 1, [1.0, 3.0], 256, 256
    if a.epochs is not None and (a.epochs < 1 or a.quick or a.smoke):
        p.error("--epochs: a positive number of epochs, without --quick or --smoke (they set their own)")
    if a.confirm < 0:
        p.error(f"--confirm: a number of fresh seeds >= 0, but got {a.confirm}")
    name = "lr_fairness" + ("-smoke" if a.smoke else "-quick" if a.quick else f"-e{a.epochs}" if a.epochs else "")
    device = torch.device(a.device)
    path = RESULTS / f"{name}-{device_slug(device)}.json"
    RESULTS.mkdir(parents=True, exist_ok=True)
    done: dict[str, dict] = json.loads(path.read_text()).get("cells", {}) if path.is_file() else {}
    header = {
        "protocol": {
            "settings": {k: {**SETTINGS[k], **({"epochs": a.epochs} if a.epochs else {})} for k in a.settings},
            "optimizers": OPTIMIZERS,
            "sweep": a.sweep,
            "seeds": a.seeds,
            "batch_size": BATCH,
            "warmup_fraction": a.warmup,
            "base": a.base,
            "selection": "best mean final validation accuracy over seeds",
        }
    }

    mine: set[str] = set()  # the cells this run trained

    def save(**extra) -> None:
        """Write this run's cells into the file, merged under a lock with what another run (of other settings
        or methods) has written there since: the file's cells, with this run's own replacing theirs."""
        with open(path.with_name(path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            on_disk = json.loads(path.read_text()) if path.is_file() else {}
            done.update({**on_disk.get("cells", {}), **{k: done[k] for k in mine}})
            write(path, {**on_disk, **recorded_environment(device, None if mine else on_disk), **header, **extra, "cells": done})

    def record(result: dict) -> None:
        done[cell_key(result)] = result
        mine.add(cell_key(result))
        save()  # the summary (of this run's plan) is written at the end
        shown = f"{result['test_error_pct']:.2f}% test error" if "test_error_pct" in result else "diverged"
        print(f"{cell_key(result)}: {shown} ({result['seconds']:.0f} s)", flush=True)

    def run(cells: list[dict]) -> dict[str, dict]:
        """Train what is not already done under the same protocol; the cells of this plan, finished."""
        _, todo = split(
            cells, done, cell_key, lambda old, c: all(old.get(k) == v for k, v in c.items())
        )  # a changed protocol trains again
        print(f"{len(todo)} trainings to run, {len(cells) - len(todo)} reused from {path}", flush=True)

        def check() -> (
            None
        ):  # each setting's data, here: without it (MNIST lives in ../shared only) exit 2 before any worker starts
            for c in todo:
                dataset(c["setting"], c["n_train"], c["n_test"])

        for result in pool(run_cell, todo, a.jobs, check=check):
            record(result)
        return {cell_key(c): done[cell_key(c)] for c in cells}

    centre = {(name, opt): OPTIMIZERS[opt]["lr"] for name in a.settings for opt in a.optimizers}
    dense = run(plan(a, ["dense"], centre))  # phase 1: the dense model's own rate
    for _ in range(2 if a.base == "dense-best" else 0):  # a best at the edge of the sweep may not be the best: extend it
        more = []
        for r in summarise(dense):
            factors = [c["factor"] for c in dense.values() if (c["setting"], c["optimizer"]) == (r["setting"], r["optimizer"])]
            if len(factors) > 1 and r["best_factor"] in (min(factors), max(factors)):
                step = 3.0 if r["best_factor"] == max(factors) else 1 / 3
                one = argparse.Namespace(**{**vars(a), "settings": [r["setting"]], "optimizers": [r["optimizer"]],
                                            "sweep": [r["best_factor"] * step]})
                more += plan(one, ["dense"], centre)
        if not more:
            break
        dense.update(run(more))
    base = dense_best(dense) if a.base == "dense-best" else centre
    print(f"base rates ({a.base}): " + ", ".join(f"{k[0]} {k[1]} {v:.3g}" for k, v in base.items()), flush=True)
    run(plan(a, [m for m in a.methods if m != "dense"], base))  # phase 2: every method around it
    save()
    current, base = current_cells(a, done)  # the whole file's cells of the current protocol, this run's among them
    header["protocol"]["settings"] = {
        k: {**SETTINGS[k], **({"epochs": a.epochs} if a.epochs else {})} for k in sorted({k[0] for k in base})
    }
    header["protocol"]["base_lr_chosen"] = {f"{k[0]} {k[1]}": v for k, v in base.items()}
    rows = summarise(current)
    if a.confirm:  # phase 3: the default and the picked point on fresh seeds, for this run's groups
        mine_groups = {
            (c["setting"], c["budget"], c["method"], c["optimizer"])
            for c in plan(a, [m for m in a.methods if m != "dense"], base)
        }
        todo = []
        for r in rows:
            key = (r["setting"], r["budget"], r["method"], r["optimizer"])
            if key not in mine_groups or r["best_factor"] == 1.0:
                continue
            one = argparse.Namespace(**{**vars(a), "settings": [key[0]], "budgets": [key[1]], "optimizers": [key[3]],
                                        "sweep": [1.0, r["best_factor"]], "seeds": a.seeds + a.confirm})
            todo += [c | {"role": "confirm"} for c in plan(one, [key[2]], base) if c["seed"] >= a.seeds]
        run(todo)
        save()
        current, base = current_cells(a, done)
        rows = summarise(current)
    save(summary=rows)
    path.with_suffix(".md").write_text(
        "Test error % at each method's default rates and at the sweep point validation picks "
        f"(x{{{', '.join(f'{f:.3g}' for f in a.sweep)}}} of its own rates, mean over {a.seeds} seed(s)), "
        f"all at {'the dense model' + chr(39) + 's best rate' if a.base == 'dense-best' else 'the centre of the dense sweep'}: "
        + ", ".join(f"{k[0]} {k[1]} lr {v:.3g}" for k, v in base.items())
        + ". The dense rows show the dense sweep itself.\n\n" + markdown(rows))
    print(markdown(rows))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
