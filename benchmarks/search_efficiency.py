"""Search efficiency: the front's hypervolume against trials spent, for random search, TPE and NSGA-II.

The space is the structured space a user writes (``arch`` and ``method`` categorical, a log
range of budgets, SMH's scope/scale only where SMH is sampled), cheap enough for 2 CPUs:
a one-hidden-layer MLP of 128 units (101.8K parameters) on the embedded Fashion-MNIST
subset, compressed by SMH, width multiplication or HashedNets to a budget sampled from
2K..80K (log), each trial trained ``--epochs`` epochs with the same settings.

Each trial is sampled exactly as the driver samples it (the run's StructuredSpace and
``search._sampler``; a sample that names no runnable candidate is rejected and asked again),
then built and trained by ``smhsearch.job.run_job``, the one job path, in this process (no
Ray: the question is the sampler, not the scheduling). A candidate trained once is reused
when another run samples it again (training is seeded, so it would train the same).
NSGA-II runs with a population of ``--population`` (default 10): at the driver's default of
50 its first 50 trials are random, which would make it random search at this trial count.

Hypervolume: ``smhsearch.pareto.hypervolume`` of (stored parameters, validation accuracy) in
(log10 cost, accuracy), with one reference point for every run: twice the dense MLP's size,
accuracy 0.

    python benchmarks/search_efficiency.py [--trials 40] [--seeds 0 1 2] [--epochs 2]
    python benchmarks/search_efficiency.py --smoke    # 1 seed, 4 trials, 1 epoch; writes nothing under results/

Writes benchmarks/results/search_efficiency-cpu.json and .md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import optuna

from smhsearch.job import run_job
from smhsearch.models import create_model, register_model
from smhsearch.models._mlp import _make
from smhsearch.pareto import hypervolume
from smhsearch.search import _sampler, plan_run, trial_spec
from smhsearch.space import Candidate, Space

from _common import write_or_say, parse_device  # type: ignore[import-not-found]

ARCH = "bench_mlp_128"
SAMPLERS = ("random", "tpe", "nsga2")


def space_for(sampler: str, seed: int, trials: int, epochs: int) -> Space:
    return Space.model_validate({
        "name": f"search_efficiency-{sampler}-{seed}",
        "dataset": {"name": "fashion-mnist-small"},
        "train": {"epochs": epochs, "batch_size": 128, "lr": 0.05},
        "space": {"arch": [ARCH], "budget": {"low": "2K", "high": "80K", "log": True},
                  "method": ["smh", "width", "hashednets"], "scale": ["fixed", "learnable"]},
        "search": {"sampler": sampler, "trials": trials, "seed": seed, "objectives": ["accuracy", "stored_params"]},
    })


def one_run(space: Space, population: int, evaluate) -> list[dict]:
    """The trials of one search, sampled as the driver samples them: [{config, val_acc, stored_params, hv}]."""
    plan = plan_run(space, Path("search_efficiency.yaml"), Path(tempfile.gettempdir()) / "unused")
    sampler = _sampler(plan)
    if space.search.sampler == "nsga2":
        sampler = optuna.samplers.NSGAIISampler(seed=space.search.seed, population_size=population)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    out: list[dict] = []
    while len(out) < plan.target_trials:
        trial = study.ask()
        cfg = plan.structured(trial)
        if "_rejected" in cfg:  # as the searcher does: told FAIL, never trained
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        cand = Candidate.from_params(cfg["_candidate"])
        acc, stored = evaluate(space, cand)
        study.tell(trial, [acc, stored])
        out.append({"config": cand.params(), "val_acc": acc, "stored_params": stored})
        out[-1]["hv"] = hypervolume([(t["stored_params"], t["val_acc"]) for t in out], REF)
    return out


def main() -> None:
    global REF
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=40)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--population", type=int, default=10, help="NSGA-II's population size")
    p.add_argument("--smoke", action="store_true", help="1 seed, 4 trials, 1 epoch; nothing written under results/")
    a = p.parse_args()
    if a.smoke:
        a.trials, a.seeds, a.epochs = 4, [0], 1
    device = parse_device("cpu")
    register_model(ARCH, family="mlp", num_classes=10, input_size=28, in_channels=1,
                   doc="search_efficiency's MLP: one hidden layer of 128")(_make((128,)))
    dense = sum(p.numel() for p in create_model(ARCH, num_classes=10, in_channels=1).parameters())
    REF = (2.0 * dense, 0.0)
    cache: dict[str, tuple[float, int]] = {}
    t0 = time.time()

    def evaluate(space: Space, cand: Candidate) -> tuple[float, int]:
        key = json.dumps(cand.params(), sort_keys=True)
        if key not in cache:
            m = run_job(trial_spec(space, Path("."), cand), device=device).metrics
            cache[key] = (float(m["val_acc"]), int(m["stored_params"]))
        return cache[key]

    runs: dict[str, list[list[dict]]] = {s: [] for s in SAMPLERS}
    for seed in a.seeds:
        for sampler in SAMPLERS:
            trials = one_run(space_for(sampler, seed, a.trials, a.epochs), a.population, evaluate)
            runs[sampler].append(trials)
            print(f"{sampler} seed {seed}: final hypervolume {trials[-1]['hv']:.4f} ({len(cache)} trainings, "
                  f"{time.time() - t0:.0f}s)", flush=True)
    summary = summarize(runs, a.trials)
    payload = {
        "space": space_for("tpe", 0, a.trials, a.epochs).model_dump(mode="json", exclude_unset=True),
        "dense_params": dense,
        "reference": list(REF),
        "seeds": a.seeds,
        "trials": a.trials,
        "epochs": a.epochs,
        "population": a.population,
        "trainings": len(cache),
        "wall_s": round(time.time() - t0, 1),
        "summary": summary,
        "runs": runs,
    }
    md = table(summary, a)
    write_or_say("search_efficiency", device, payload, md, a.smoke)


def summarize(runs: dict[str, list[list[dict]]], trials: int) -> dict[str, dict]:
    """Per sampler: the mean hypervolume curve over seeds, and the trials it needs to reach random's final mean."""
    curves = {s: [statistics.fmean(r[i]["hv"] for r in rs) for i in range(trials)] for s, rs in runs.items()}
    target = curves["random"][-1]
    out = {}
    for s, curve in curves.items():
        reach = next((i + 1 for i, hv in enumerate(curve) if hv >= target), None)
        finals = [r[-1]["hv"] for r in runs[s]]
        out[s] = {
            "mean_curve": curve,
            "final_mean": curve[-1],
            "final_std": statistics.pstdev(finals) if len(finals) > 1 else 0.0,
            "trials_to_random_final": reach,
            "fraction_of_trials": None if reach is None else reach / trials,
        }
    return out


def table(summary: dict[str, dict], a) -> list[str]:
    marks = sorted({max(1, a.trials // 4), max(1, a.trials // 2), a.trials})
    head = " | ".join(f"HV @ {m} trials" for m in marks)
    md = [f"Mean over seeds {a.seeds}; {a.trials} trials each, {a.epochs} epoch(s) per trial; hypervolume of (stored params, "
          "val acc) in (log10 cost, accuracy), one reference for all.", "",
          f"| sampler | {head} | final (std) | trials to reach random's final HV |",
          "|---|" + "---|" * len(marks) + "---|---|"]
    for s, r in summary.items():
        cells = " | ".join(f"{r['mean_curve'][m - 1]:.4f}" for m in marks)
        reach = (
            "never" if r["trials_to_random_final"] is None else f"{r['trials_to_random_final']} ({r['fraction_of_trials']:.0%})"
        )
        md.append(f"| {s} | {cells} | {r['final_mean']:.4f} ({r['final_std']:.4f}) | {reach} |")
    return md


REF = (1.0, 0.0)

if __name__ == "__main__":
    main()
