"""The driver: opens the study, starts or joins Ray, and runs the trials the run still owes."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import yaml

from ..space import Candidate, Space, SpaceError
from ._binding import stamp
from ._lock import RunLock
from ._plan import RunPlan, local_shortfall, resource_shortfall
from ._scheduler import make_scheduler
from ._study import _searcher, is_done, open_study, trials_done
from ._trial import run_trial

log = logging.getLogger(__name__)

class _Progress:
    """Ray Tune callback: one line per finished trial, with counts and the best so far."""

    def __new__(cls, plan: RunPlan, already: int):
        from ray.tune import Callback

        class Progress(Callback):
            def __init__(self) -> None:
                self.done, self.failed, self.best = already, 0, None
                self.t0 = time.time()

            def _finish(self, trials, trial, failed: bool) -> None:
                running = sum(t.status == "RUNNING" and t is not trial for t in trials)
                self.done += 1
                self.failed += failed
                r = trial.last_result or {}
                try:
                    label = Candidate.from_params(trial.config["_candidate"]).label()
                except (KeyError, TypeError):
                    label = trial.trial_id
                if not failed and r.get("val_acc") is not None and (self.best is None or r["val_acc"] > self.best[0]):
                    self.best = (r["val_acc"], label)
                best = f"best val {self.best[0]:.4f} ({self.best[1]})" if self.best else "no result yet"
                state = "FAILED" if failed else f"val {r.get('val_acc', float('nan')):.4f} at epoch {r.get('epoch', '?')}"
                if not failed and int(r.get("epoch") or 0) < plan.space.train.epochs:
                    state += " (stopped early)"
                print(f"[{self.done}/{plan.target_trials} done, {running} running, {self.failed} failed] "
                      f"{label}: {state} | {best} | {time.time() - self.t0:.0f}s", flush=True)

            def on_trial_complete(self, iteration, trials, trial, **info):
                self._finish(trials, trial, False)

            def on_trial_error(self, iteration, trials, trial, **info):
                self._finish(trials, trial, True)

        return Progress()


def _write_resolved(plan: RunPlan) -> None:
    """What `report` and `pick` read instead of validating the space and asking the registry (both import torch)."""
    from ..models import MODELS

    families = {c.arch: MODELS.get(c.arch).family for c in plan.candidates if c.arch in MODELS}
    resolved = {"space": json.loads(plan.space.model_dump_json()), "families": families}
    plan.layout.resolved.write_text(json.dumps(resolved, indent=1, sort_keys=True))


def run_search(plan: RunPlan, address: str | None = None, fresh: bool = False) -> dict[str, Any]:
    """Run (or resume) the search of ``plan``; returns a summary of the study.

    The run folder is locked for the whole call (:class:`RunLock`): a second driver is refused
    with :class:`RunLocked` before it changes anything. A local run asking for resources this machine lacks is refused
    before anything is written (its trials would wait for ever)."""
    warnings = refuse_unrunnable(plan.space, plan.space_path, address)
    with RunLock(plan.run_dir):
        return _run_locked(plan, address, fresh, warnings)


def resources_check(space: Space, address: str | None) -> tuple[str | None, list[str]]:
    """(refusal, warnings) for the resources a trial of ``space`` asks for, where it will run: this machine (``address``
    None: a request it cannot give would wait for ever) or the Ray cluster at ``address`` (joined here), where missing
    CPUs or GPUs are a warning (an autoscaler may add them) and missing TPU chips a refusal (TPU hosts are not added
    unasked)."""
    if address is None:
        short = local_shortfall(space)
        return (f"{short}; no trial could ever start (give --address of a cluster that has them)" if short else None), []
    import ray

    _connect(address)
    total = ray.cluster_resources()
    short = resource_shortfall(space, 0, 0, total.get("TPU", 0), f"the cluster at {address}", keys=("tpus_per_trial",))
    refusal = f"{short}; no trial could ever start (start Ray on TPU hosts: see README, TPUs)" if short else None
    waits = resource_shortfall(space, total.get("CPU", 0), total.get("GPU", 0), 0, f"the cluster at {address} now",
                               keys=("cpus_per_trial", "gpus_per_trial"))
    return refusal, [f"{waits}: trials wait until nodes that have them join"] if waits else []


def refuse_unrunnable(space: Space, where: Path, address: str | None) -> list[str]:
    """The resource check of a run: a :class:`SpaceError` naming ``where`` (the space file) when no trial of ``space``
    could ever start (see :func:`resources_check`), else the warnings to give."""
    refusal, warnings = resources_check(space, address)
    if refusal:
        raise SpaceError(f"{where}: {refusal}")
    return warnings


def _run_locked(plan: RunPlan, address: str | None, fresh: bool, warnings: list[str]) -> dict[str, Any]:
    from ray import tune

    study, storage = open_study(plan, fresh)
    # plan.space.storage is redacted (see plan_run): the run folder never holds the storage's password
    plan.layout.space_file.write_text(yaml.safe_dump(json.loads(plan.space.as_written()), sort_keys=False))
    _write_resolved(plan)
    done = trials_done(study)
    remaining = plan.target_trials - done
    if remaining <= 0:
        log.info("all %d trials of %s are done", plan.target_trials, plan.run_dir)
        return summarize(study, plan.run_dir)
    res = plan.space.resources
    _connect(address)
    for warning in warnings:  # a cluster may add nodes (an autoscaler): said, not refused
        log.warning("%s", warning)
    scheduler = make_scheduler(plan.space)
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, space_json=plan.space.as_written(), run_dir=str(plan.run_dir.resolve()),
                             space_path=str(plan.space_path.resolve()), study=stamp(plan.space.name, plan.study_uid)),
        {"cpu": res.cpus_per_trial, "gpu": res.gpus_per_trial, **({"TPU": res.tpus_per_trial} if res.tpus_per_trial else {})})
    tuner = tune.Tuner(
        trainable,
        # reuse_actors: a trial reuses a finished trial's worker instead of starting a Python (and torch) anew
        tune_config=tune.TuneConfig(
            search_alg=_searcher(plan, storage),
            scheduler=scheduler,
            num_samples=remaining,
            reuse_actors=True,
            max_concurrent_trials=res.max_concurrent,
        ),
        run_config=tune.RunConfig(
            name=f"{plan.space.name}-{int(time.time())}",
            storage_path=str(plan.layout.ray.resolve()),
            verbose=0,
            callbacks=[_Progress(plan, done), *_result_loggers()],
            # a lost worker or node: the trial runs again, from its checkpoint (run_trial says
            # which failures are final)
            failure_config=tune.FailureConfig(max_failures=plan.space.search.retries, fail_fast=False),
        ),
    )
    with _own_loggers():
        tuner.fit()
    return summarize(study, plan.run_dir)


def _result_loggers() -> list:
    """Ray Tune's per-trial result files: CSV, JSON and the TensorBoard curves. Without tensorboardX (the
    ``[tensorboard]`` extra) the search runs without curves, saying so in one warning line."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback

    from .._extras import installed

    if installed("tensorboardX"):
        return [CSVLoggerCallback(), JsonLoggerCallback(), TBXLoggerCallback()]
    log.warning("training curves are not written in TensorBoard format: tensorboardX is not installed "
                "(pip install 'smhsearch[tensorboard]')")
    return [CSVLoggerCallback(), JsonLoggerCallback()]


@contextlib.contextmanager
def _own_loggers():
    """Ray Tune adds no logger of its own during the fit (``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS``): the search passes
    them (:func:`_result_loggers`), and Ray's fallback would warn a second time when tensorboardX is missing."""
    name, before = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", os.environ.get("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS")
    os.environ[name] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _connect(address: str | None) -> None:
    """Start a local Ray sized to this machine (``address`` None) or join the cluster at ``address``; once a process."""
    import ray

    if not ray.is_initialized():
        extra: dict[str, Any] = {"num_cpus": os.cpu_count()} if address is None else {}
        ray.init(address=address or "local", include_dashboard=False, configure_logging=True, logging_level=logging.WARNING,
                 log_to_driver=False, **extra)


def summarize(study, run_dir=None) -> dict[str, Any]:
    """Counts of the study's trials by state, the best one, and (with ``run_dir``) what the run's teachers cost."""
    import optuna

    from .._layout import RunLayout
    from ..teachers import summary

    S = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == S.COMPLETE]
    best = max(complete, key=lambda t: t.values[0], default=None)
    return {
        "complete": len(complete),
        "early_stopped": sum(t.state == S.PRUNED for t in trials),
        "failed": sum(t.state == S.FAIL and is_done(t) for t in trials),
        "rejected": sum(bool(t.user_attrs.get("rejected")) for t in trials),
        "interrupted": sum(bool(t.user_attrs.get("interrupted")) for t in trials),
        "best": None if best is None else {"number": best.number, "config": best.user_attrs.get("config"), "values": best.values},
        **(
            {"teachers": summary(RunLayout(run_dir).teachers)}
            if run_dir is not None and RunLayout(run_dir).teachers.is_dir()
            else {}
        ),
    }
