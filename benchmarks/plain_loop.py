"""Each method trained in a plain PyTorch loop, no smhsearch trainer: are the rates fair where a user trains?

The reference measurement was taken this way: an independent loop, ``torch.optim.Adam`` at lr
1e-3, a one-cycle schedule, 15 epochs, batch 128, the first 17,435 MNIST training images (all
that is available here), the 784-1000-10 MLP, test error on the 10,000 test images. It found
the API's default HashedNets (then one global pool) at 9.70% and 12.38% against an equal-size
dense net's 3.37% and 6.68%, and SMH's default about 3x too slow under Adam.

This script runs that loop on each method twice over:
- ``param_groups``: ``torch.optim.Adam(model.param_groups(lr, optimizer="adamw"))``, the
  documented way, at the rates the method derives, and at x1/3 and x3 of them
  (``variable_lr_mult``) to check that the derived point is the right one;
- ``parameters()``: ``torch.optim.Adam(model.parameters(), lr)``, what a user who reads nothing
  does.
The methods are the full dense MLP (a reference, whose x1/3 and x3 scale its learning rate),
the equal-size dense net (the width multiplier), ``HashedNets()`` (the default: Chen et al.'s
per-layer pools), the single pool an earlier default used
(``HashedNets.table1``), and ``SMH(scale="learnable")``. ``--lrs`` runs the whole table at
other base rates: 1e-3 is below the dense model's own best in this loop, and
a rule can only carry the dense model's rate over, so the check that means something is at
the dense model's best rate.

The loop uses nothing of smhsearch but ``create_model``, ``compress`` and ``param_groups``:
seeded init and data order, one-cycle at each group's own rate as its peak (PyTorch's
defaults otherwise), no weight decay (Adam and AdamW are then one optimizer), test error once
at the end. A loss that is not finite stops the run, recorded as diverged. Target: every
method's default within 0.3 points of its best multiplier, and the default
HashedNets at 1/64 better than the equal-size dense net. "Best" here is the best mean test
error of the three points, which favours the sweep (no validation picks it).

    python benchmarks/plain_loop.py --seeds 4 --lrs 1e-3 3e-3 --jobs 2   # needs ../shared/data/mnist; ~35 min
    python benchmarks/plain_loop.py --smoke       # 1 epoch on 2,048 images, writes nothing

Writes benchmarks/results/plain_loop-cpu.json and .md; runs already there with the same
method, budget, form, multiplier, seed, protocol and derived rates are reused.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import smhsearch
from smhsearch import SMH, HashedNets, WidthMultiplier
from smhsearch.methods import param_groups

from _common import rate_fingerprint  # type: ignore[import-not-found]
from _harness import ResultsFile, joined_key, pool, split  # type: ignore[import-not-found]
from hashednets_mnist import MNIST_MEAN, MNIST_STD, mnist_17k_arrays  # type: ignore[import-not-found]

ARCH = "mlp_1x1000"
REFERENCE_LR = 1e-3  # the reference measurement's rate
BATCH = 128
BUDGETS = ("1/8", "1/64")
METHODS = ("dense", "width", "hashednets", "hashednets_table1", "smh")
LABELS = {"dense": "dense 784-1000-10", "width": "equal-size dense", "hashednets": "HashedNets() (per-layer)",
          "hashednets_table1": "HashedNets.table1 (one pool)", "smh": "SMH learnable"}
FACTORS = (1 / 3, 1.0, 3.0)
REFERENCE = {  # the reference measurement: test error %, plain Adam on model.parameters() (before param_groups existed)
    "1/8": {"width": 3.37, "hashednets_table1": 9.70, "hashednets": 2.89, "smh": 3.29},
    "1/64": {"width": 6.68, "hashednets_table1": 12.38, "hashednets": 4.16, "smh": 5.26},
}


def method_config(method: str, budget: str, seed: int):
    fraction = 1 / int(budget.split("/")[1])
    return {"width": lambda: WidthMultiplier(budget=fraction),
            "hashednets": lambda: HashedNets(budget=fraction, seed=seed),
            "hashednets_table1": lambda: HashedNets.table1(fraction, seed=seed),
            "smh": lambda: SMH(budget=fraction, scale="learnable", seed=seed)}[method]()


def build(method: str, budget: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    base = smhsearch.create_model(ARCH)
    return base if method == "dense" else smhsearch.compress(base, method_config(method, budget, seed))


def tensors(n_train: int | None) -> tuple[torch.Tensor, ...]:
    """MNIST as float tensors, normalised as the trainer normalises it."""
    x, y, xt, yt = mnist_17k_arrays()
    norm = lambda a: (torch.from_numpy(np.array(a)).float() / 255 - MNIST_MEAN[0]) / MNIST_STD[0]  # noqa: E731
    return norm(x[:n_train]), torch.from_numpy(y[:n_train]), norm(xt), torch.from_numpy(yt)


def plan(methods, budgets, seeds: int) -> list[dict[str, Any]]:
    cells = []
    for seed in range(seeds):
        for method in methods:
            for budget in (["-"] if method == "dense" else budgets):
                cells.append({"method": method, "budget": budget, "form": "parameters()", "factor": 1.0, "seed": seed})
                cells += [
                    {"method": method, "budget": budget, "form": "param_groups", "factor": f, "seed": seed} for f in FACTORS
                ]
    return cells


def key(cell: dict[str, Any]) -> str:
    return joined_key(cell, ("method", "budget", "form", "lr", "factor", "seed", "epochs", "n_train"))


def train(cell: dict[str, Any]) -> dict[str, Any]:
    """One run of the plain loop."""
    torch.set_num_threads(1)
    x, y, xt, yt = tensors(cell["n_train"])
    model = build(cell["method"], cell["budget"], cell["seed"])
    lr, f = cell["lr"], cell["factor"]
    groups = (model.parameters() if cell["form"] == "parameters()"  # the dense model's own rate is its lr: it has no variables
              else param_groups(model, lr * f, 0.0, "adamw") if cell["method"] == "dense"
              else param_groups(model, lr, 0.0, "adamw", variable_lr_mult=f))
    opt = torch.optim.Adam(groups, lr=lr)
    steps = math.ceil(len(x) / BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=cell["epochs"] * steps
    )
    order = torch.Generator().manual_seed(cell["seed"])
    t0 = time.perf_counter()
    model.train()
    for epoch in range(cell["epochs"]):
        for idx in torch.randperm(len(x), generator=order).split(BATCH):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            if not torch.isfinite(loss):
                return {**cell, "diverged": f"loss {loss.item()} in epoch {epoch + 1}", "seconds": time.perf_counter() - t0}
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        wrong = sum(int((model(xt[i:i + 1000]).argmax(1) != yt[i:i + 1000]).sum()) for i in range(0, len(xt), 1000))
    return {**cell, "test_error_pct": 100 * wrong / len(xt), "seconds": time.perf_counter() - t0}


def summarise(cells: list[dict[str, Any]], lr: float, methods, budgets) -> tuple[list[str], dict[str, Any]]:
    """One table for base rate ``lr``: each method's test error per form and multiplier, and its default's gap."""
    def errors(**match) -> list[float]:
        rows = [c for c in cells if c["lr"] == lr and all(c[k] == v for k, v in match.items())]
        return [c.get("test_error_pct", math.inf) for c in rows]

    def show(e: list[float]) -> str:
        if not e:
            return "-"
        if any(math.isinf(v) for v in e):
            return f"diverged ({sum(math.isinf(v) for v in e)} of {len(e)})"
        return f"{np.mean(e):.2f}" + (f" ± {np.std(e, ddof=1):.2f}" if len(e) > 1 else "")

    md = [
        f"Base rate {lr:g}:",
        "",
        "| budget | method | parameters() | param_groups ×1/3 | param_groups (default) | param_groups ×3 | "
        "default − best | reference |",
        "|---|---|---|---|---|---|---|---|",
    ]
    summary: dict[str, Any] = {}
    for budget in ["-", *budgets]:
        for method in methods:
            if (method == "dense") != (budget == "-"):
                continue
            plain = errors(method=method, budget=budget, form="parameters()")
            swept = {f: errors(method=method, budget=budget, form="param_groups", factor=f) for f in FACTORS}
            means = {f: float(np.mean(e)) for f, e in swept.items() if e}  # inf where a seed diverged
            gap = means[1.0] - min(means.values()) if 1.0 in means else math.nan
            summary[f"{budget} {method}"] = {"parameters()": float(np.mean(plain)) if plain else None,
                                             "param_groups": {f"{f:.3g}": m for f, m in means.items()},
                                             "default_minus_best": gap, "within_0.3": bool(gap <= 0.3)}
            bold = "**" if gap > 0.3 else ""
            reference = REFERENCE.get(budget, {}).get(method, "-") if lr == REFERENCE_LR else "-"
            md.append(f"| {budget} | {LABELS[method]} | {show(plain)} | " + " | ".join(show(swept[f]) for f in FACTORS)
                      + f" | {bold}{gap:.2f}{bold} | {reference} |")
    return md, summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--budgets", nargs="+", default=list(BUDGETS), choices=list(BUDGETS))
    p.add_argument(
        "--lrs",
        nargs="+",
        type=float,
        default=[REFERENCE_LR],
        help=f"base rates (default: the reference measurement's {REFERENCE_LR:g})",
    )
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--jobs", type=int, default=1, help="runs at once, one thread each")
    p.add_argument("--smoke", action="store_true", help="1 epoch on 2,048 images, one seed, first budget; writes nothing")
    a = p.parse_args()
    if a.seeds < 1 or a.epochs < 1 or a.jobs < 1 or min(a.lrs) <= 0:
        p.error(f"--seeds, --epochs and --jobs must be >= 1 and --lrs > 0, but got {a.seeds}, {a.epochs}, {a.jobs} and {a.lrs}")
    n_train = None
    if a.smoke:
        a.seeds, a.epochs, a.budgets, n_train = 1, 1, a.budgets[:1], 2048
    results = ResultsFile("plain_loop", torch.device("cpu"), read=not a.smoke)
    done: dict[str, dict] = results.old.get("cells", {})
    rates = {
        (m, b): rate_fingerprint(lambda m=m, b=b: build(m, b, 0), "adamw")
        for m in a.methods
        for b in (["-"] if m == "dense" else a.budgets)
    }
    plan_ = [c | {"lr": lr, "epochs": a.epochs, "n_train": n_train, "rates": rates[(c["method"], c["budget"])]}
             for lr in a.lrs for c in plan(a.methods, a.budgets, a.seeds)]
    reused, todo = split(plan_, done, key, lambda old, c: old.get("rates") == c["rates"])
    cells = list(reused.values())
    results.trained = bool(todo)
    print(f"{len(todo)} runs to train, {len(cells)} reused from {results.path}", flush=True)

    def save(**extra: Any) -> None:
        """Every cell of the file, this run's replacing theirs; a run that trained nothing keeps the file's machine and commit."""
        if a.smoke:
            return
        results.write({"protocol": {"arch": ARCH, "batch_size": BATCH, "optimizer": "torch.optim.Adam, no weight decay",
                                    "schedule": "OneCycleLR (PyTorch defaults), peak at each group's lr",
                                    "data": "first 17,435 MNIST training images; 10,000 test"},
                       **extra, "cells": {**done, **{key(c): c for c in cells}}})

    for r in pool(train, todo, a.jobs, check=mnist_17k_arrays):  # without the data: exit 2 here, saying where it looked
        cells.append(r)
        print(f"{r['method']:>18} {r['budget']:>4} {r['form']:>12} lr {r['lr']:g} x{r['factor']:.3g} seed {r['seed']}: "
              f"{r.get('test_error_pct', r.get('diverged'))} ({r['seconds']:.0f} s)", flush=True)
        save()
    md, summary = [], {}
    for lr in a.lrs:
        table, summary[f"{lr:g}"] = summarise(cells, lr, a.methods, a.budgets)
        md += [*table, ""]
    print("\n".join(md))
    if a.smoke:
        print("smoke: nothing written")
        return
    save(summary=summary)
    path = results.write_md(
        f"Test error % on MNIST's 10,000 test images, mean ± sd over {a.seeds} seeds: a plain PyTorch loop "
        f"(torch.optim.Adam, one-cycle, {a.epochs} epochs, batch {BATCH}, the first 17,435 training images). The dense "
        "model's ×1/3 and ×3 scale its learning rate; a compressed model's scale its variables' rates. "
        "Bold: the default more than 0.3 points behind the best of its three points.\n\n" + "\n".join(md))
    print(f"wrote {results.path} and {path}")


if __name__ == "__main__":
    main()
