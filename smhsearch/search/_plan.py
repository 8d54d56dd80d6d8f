"""Which candidates a run covers, where its study lives, and how it samples."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from .._storage import STUDY_FILE, open_storage  # noqa: F401  (STUDY_FILE: re-exported by search)
from .._storage import storage_url as _url
from ..space import OBJECTIVES, Candidate, Space, dataset_model_kwargs


def storage_url(space: Space, run_dir: Path) -> str:
    """Where a run's study lives: the space's ``storage``, or the SQLite file in the run folder."""
    return _url(space.storage, run_dir)


@dataclass
class RunPlan:
    space: Space
    space_path: Path
    run_dir: Path
    candidates: list[Candidate]
    target_trials: int

    @property
    def storage_url(self) -> str:
        return storage_url(self.space, self.run_dir)

    def fingerprint(self) -> str:
        """What a resumed study must share with its start: candidates, data, training and objectives (not the trial count)."""
        text = json.dumps([[c.params() for c in self.candidates], self.space.dataset.model_dump(), self.space.train.model_dump(),
                           self.space.search.objectives], sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:16]


def plan_run(space: Space, space_path: Path, out: Path | None = None, max_trials: int | None = None) -> RunPlan:
    """Which candidates a run covers (static constraints applied) and how many trials it owes."""
    from .._budget import Budget

    from ..space import applicable_candidates

    candidates, _ = applicable_candidates(space)
    if space.search.max_params is not None:
        limit = Budget.parse(space.search.max_params)
        kw = dataset_model_kwargs(space)

        def fits(c: Candidate) -> bool:
            import torch

            from ..models import create_model

            with torch.device("meta"):
                total = sum(p.numel() for p in create_model(c.arch, **kw(c.arch)).parameters())
            cap = limit.resolve(total)
            return (total if c.budget is None else Budget.parse(c.budget).resolve(total)) <= cap

        candidates = [c for c in candidates if fits(c)]
    if not candidates:
        raise ValueError("no candidate of the space satisfies search.max_params")
    target = space.search.trials or len(candidates)
    if space.search.sampler == "grid":
        target = min(target, len(candidates))
    if max_trials is not None:
        target = min(target, max_trials)
    return RunPlan(space, space_path, out or Path("runs") / space.name, candidates, target)


def _storage(url: str):
    return open_storage(url)


def _sampler(plan: RunPlan):
    import optuna

    kind, seed = plan.space.search.sampler, plan.space.search.seed
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)
    if kind == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    # grid: every candidate is enqueued (open_study), so the sampler only backs that up. Optuna's
    # GridSampler is not used: it calls study.stop() when exhausted, which ask/tell studies refuse.
    return optuna.samplers.RandomSampler(seed=seed)


def objective_keys(space: Space) -> tuple[list[str], list[str]]:
    """Report keys and Optuna directions, in the space's objective order."""
    keys = [{"accuracy": "val_acc", "stored_params": "stored_params", "throughput": "throughput", "flops": "flops"}[o]
            for o in space.search.objectives]
    return keys, [OBJECTIVES[o] for o in space.search.objectives]
