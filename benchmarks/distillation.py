"""Distillation from the dense teacher, for every method.

On the embedded set (``fashion-mnist-small``, ResNet-8, the quick space's training: SGD
lr 0.05, batch 128, cosine): SMH (learnable scale), the width multiplier and HashedNets
(one hash) at 10% and 25% of the parameters, each trained without and with distillation
(T = 4, alpha = 0.9), on 3 seeds. With ``--setup cifar`` (for a GPU): ResNet-32 on CIFAR-10
with SMH at 46K and 118K, the SMH paper's Figure 6 points.

Every job runs through ``smhsearch.job.run_job``, as a search trial does. The teacher of
each seed is the dense architecture trained with the same settings, trained once and
shared by that seed's distilled jobs (``runs/bench-distillation-<setup>/teachers/``, the
run folder's teacher slots); its cost is in the result.

Targets: distillation gains >= +0.5 points on the 3-seed mean of test accuracy for SMH
at 10%, and the mean gain is never negative for any method.

    python benchmarks/distillation.py                        # embedded set, CPU: 37 trainings
    python benchmarks/distillation.py --setup cifar --device cuda [--root ../shared/data/cifar10]
    python benchmarks/distillation.py --smoke                # a pipeline check of about a minute; never a result

Writes benchmarks/results/distillation[-cifar]-<device>.json and .md (a smoke run:
distillation-smoke-*, which git ignores). Runs finished with the same protocol and the
same derived rates are reused, so an interrupted run resumes with the same command and a
method whose rule changed trains again.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from smhsearch import SMH, HashedNets, WidthMultiplier
from smhsearch.data import DatasetNotFound, load_dataset
from smhsearch.distill import DistillConfig
from smhsearch.job import JobSpec, run_job
from smhsearch.job import build as job_build
from smhsearch.train import TrainConfig, TrainingDiverged

from _common import add_device_argument, device_slug, parse_device, rate_fingerprint  # type: ignore[import-not-found]
from _harness import REPO, ResultsFile, data_dir, missing_data  # type: ignore[import-not-found]


@dataclass(frozen=True)
class Protocol:
    """Everything a run's result depends on besides method, budget, distillation and seed."""

    dataset: str = "fashion-mnist-small"
    arch: str = "resnet8"
    epochs: int = 3
    batch_size: int = 128
    lr: float = 0.05
    warmup_epochs: float = 0.0
    train_subset: int | None = None
    temperature: float = 4.0
    alpha: float = 0.9
    teacher_epochs: int | None = None


PLANS = {
    "embedded": {"protocol": Protocol(), "methods": ("smh", "width", "hashednets"), "budgets": ("10%", "25%"), "seeds": 3},
    "cifar": {"protocol": Protocol(dataset="cifar10", arch="resnet32", epochs=200, warmup_epochs=2.0), "methods": ("smh",),
              "budgets": ("46K", "118K"), "seeds": 3},
    "smoke": {"protocol": Protocol(arch="mlp", epochs=1, train_subset=256), "methods": ("smh", "width"), "budgets": ("10%",),
              "seeds": 1},
}


def method_config(method: str, budget: str, seed: int):
    return {
        "smh": lambda: SMH(budget=budget, scale="learnable", seed=seed),
        "width": lambda: WidthMultiplier(budget=budget, seed=seed),
        "hashednets": lambda: HashedNets(budget=budget, hashes=1, seed=seed),
    }[method]()


def run_one(p: Protocol, data, device, teachers: Path, method: str, budget: str, distill: bool, seed: int) -> dict:
    kd = DistillConfig(temperature=p.temperature, alpha=p.alpha, teacher_epochs=p.teacher_epochs) if distill else None
    cfg = TrainConfig(epochs=p.epochs, batch_size=p.batch_size, lr=p.lr, warmup_epochs=p.warmup_epochs, seed=seed, distill=kd)
    row = {"method": method, "budget": budget, "distill": distill, "seed": seed}
    t0 = time.perf_counter()
    try:
        job = run_job(
            JobSpec(p.arch, method_config(method, budget, seed), dataset=p.dataset, train=cfg),
            device=device,
            data=data,
            teachers=teachers,
        )
    except TrainingDiverged as e:
        return {**row, "diverged": str(e)}
    m = job.metrics
    out = {
        **row,
        "stored": m["stored_params"],
        "val_acc": m["val_acc"],
        "test_acc": m["test_acc"],
        "seconds": time.perf_counter() - t0,
    }
    if distill:
        t = job.record["teacher"]
        out.update(teacher_key=t["key"], teacher_trained_here=t["trained_here"], teacher_train_seconds=t["train_seconds"],
                   teacher_test_acc=t["test_acc"], teacher_forward_s=m["teacher_forward_s"])
    return out


def summarize(rows: list[dict], plan: dict) -> list[dict]:
    """Per (method, budget): the mean test accuracy without and with distillation over seeds, and the gain in points."""
    out = []
    for method in plan["methods"]:
        for budget in plan["budgets"]:
            acc = {
                kd: [
                    r["test_acc"]
                    for r in rows
                    if (r["method"], r["budget"], r["distill"]) == (method, budget, kd) and "test_acc" in r
                ]
                for kd in (False, True)
            }
            mean = {kd: statistics.mean(v) if v else None for kd, v in acc.items()}
            gain = 100 * (mean[True] - mean[False]) if None not in mean.values() else None
            out.append(
                {
                    "method": method,
                    "budget": budget,
                    "plain": acc[False],
                    "distilled": acc[True],
                    "plain_mean": mean[False],
                    "distilled_mean": mean[True],
                    "gain_points": gain,
                }
            )
    return out


def targets(summary: list[dict]) -> dict:
    smh10 = next((s["gain_points"] for s in summary if (s["method"], s["budget"]) == ("smh", "10%")), None)
    by_method = {
        m: [s["gain_points"] for s in summary if s["method"] == m and s["gain_points"] is not None]
        for m in {s["method"] for s in summary}
    }
    return {"smh@10% gain >= +0.5": None if smh10 is None else smh10 >= 0.5,
            "mean gain never negative per method": all(statistics.mean(g) >= 0 for g in by_method.values() if g)}


def table(summary: list[dict], teachers: list[dict]) -> str:
    lines = ["| method | budget | test acc % without (per seed) | with distillation | gain (points) |", "|---|---|---|---|---|"]
    for s in summary:
        fmt = lambda v: " / ".join(f"{100 * a:.2f}" for a in v) or "-"  # noqa: E731
        gain = f"{s['gain_points']:+.2f}" if s["gain_points"] is not None else "-"
        lines.append(f"| {s['method']} | {s['budget']} | {fmt(s['plain'])} | {fmt(s['distilled'])} | {gain} |")
    lines += ["", "| teacher (seed) | test acc % | train s | forward s per step |", "|---|---|---|---|"]
    lines += [f"| {t['seed']} | {100 * t['test_acc']:.2f} | {t['train_seconds']:.1f} | {t['forward_s']:.4f} |" for t in teachers]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_device_argument(ap)
    ap.add_argument("--setup", choices=("embedded", "cifar"), default="embedded")
    ap.add_argument(
        "--root", type=Path, default=data_dir("cifar10"), help="CIFAR-10's folder (--setup cifar; default: %(default)s)"
    )
    ap.add_argument(
        "--smoke", action="store_true", help="a tiny run that checks the pipeline (written as *-smoke-*, never a result)"
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, help="train teacher and students this long instead of the setup's own (results are "
                                                 "filed apart: distillation-e<N>-<device>)")
    ap.add_argument("--teacher-epochs", type=int, help="train the dense teacher this long (train.distill.teacher_epochs; results "
                                                         "filed apart: distillation[-e<N>]-t<M>-<device>)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    device = parse_device(a.device)
    plan = PLANS["smoke" if a.smoke else a.setup]
    p: Protocol = plan["protocol"]
    if a.epochs is not None and a.epochs != p.epochs:
        p = replace(p, epochs=a.epochs)
    if a.teacher_epochs is not None:
        p = replace(p, teacher_epochs=a.teacher_epochs)
    try:
        data = load_dataset(p.dataset, root=a.root if p.dataset == "cifar10" else None)
    except DatasetNotFound as e:
        missing_data(p.dataset, a.root, f"{e}; or pass --root")
    if p.train_subset:
        data.train.x, data.train.y = data.train.x[: p.train_subset], data.train.y[: p.train_subset]
    stem = "distillation-smoke" if a.smoke else ("distillation" if a.setup == "embedded" else "distillation-cifar")
    if p.epochs != plan["protocol"].epochs:
        stem += f"-e{p.epochs}"
    if p.teacher_epochs is not None:
        stem += f"-t{p.teacher_epochs}"
    teachers = REPO / "runs" / f"bench-{stem}-{device_slug(device)}" / "teachers"  # runs/ is git-ignored
    results = ResultsFile(stem, device)
    header = {"protocol": asdict(p), "methods": list(plan["methods"]), "budgets": list(plan["budgets"]), "seeds": plan["seeds"],
              "threads": a.threads, "data": data.describe()}
    old = results.old
    # a run is reused at the same protocol and at the rates its method derives now (a changed rule trains it again)
    rates = {
        (m, b): rate_fingerprint(
            lambda m=m, b=b: job_build(JobSpec(p.arch, method_config(m, b, 0), dataset=p.dataset), data)[1], "sgd"
        )
        for m in plan["methods"]
        for b in plan["budgets"]
    }
    rows = {(r["method"], r["budget"], r["distill"], r["seed"]): r for r in old.get("runs", [])
            if r.get("rates") == rates[r["method"], r["budget"]]} if old.get("protocol") == header["protocol"] else {}
    for seed in range(plan["seeds"]):
        for budget in plan["budgets"]:
            for method in plan["methods"]:
                for distill in (False, True):
                    k = (method, budget, distill, seed)
                    if k not in rows:
                        rows[k] = {
                            **run_one(p, data, device, teachers, method, budget, distill, seed),
                            "rates": rates[method, budget],
                        }
                        results.trained = True
                        results.write({**header, "complete": False, "runs": list(rows.values())})
                        r = rows[k]
                        print(
                            f"  {method:10s} {budget:4s} {'kd' if distill else '  '} seed {seed}: "
                            + (f"test {100 * r['test_acc']:.2f}  ({r['seconds']:.0f} s)" if "test_acc" in r else "diverged"),
                            flush=True,
                        )
    done = list(rows.values())
    summary = summarize(done, plan)
    taught = {r["seed"]: r for r in done if r.get("teacher_key")}
    teacher_rows = [
        {
            "seed": s,
            "test_acc": r["teacher_test_acc"],
            "train_seconds": r["teacher_train_seconds"],
            "forward_s": r["teacher_forward_s"],
            "trainings": sum(x.get("teacher_trained_here", False) for x in done if x.get("seed") == s),
        }
        for s, r in sorted(taught.items())
    ]
    out = results.write({**header, "complete": True, "summary": summary, "teachers": teacher_rows, "targets": targets(summary),
                                      "runs": done})
    md = table(summary, teacher_rows)
    results.write_md(md)
    print(md + json.dumps(targets(summary)) + f"\nwrote {out}")


if __name__ == "__main__":
    main()
