"""The search driver: an Optuna study in the run folder, trials scheduled by Ray Tune.

Run folder (``runs/<name>`` by default)::

    space.yaml       the space as run (resolved)
    study.db         the Optuna study (SQLite; or the space's ``storage``): the record of truth
    trials/<n>/      trial.json (config, seed, versions, device, metrics, status) and model.safetensors
                     (the compact file of a compressed model; the dense weights of a dense one)
    ray/             Ray Tune's own experiment folders

Each trial samples one categorical parameter, ``candidate``: an index into the space's
list of valid configs (architecture x budget x method x scope x scale), after static
constraints (``max_params``) have removed what cannot qualify. Grid, TPE, NSGA-II and
random search all work on that list. Objectives (accuracy on validation, stored
parameters, throughput, FLOPs) are told to Optuna when a trial finishes; ASHA stops
trials early on per-epoch validation accuracy.

Resume: ``smhsearch run`` on the same space opens the same study. Finished trials
(complete, early-stopped or failed) are kept and not re-run; trials that were running
when the driver died are marked interrupted and their configs enqueued again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .space import OBJECTIVES, Candidate, Space, dataset_model_kwargs, dataset_root

log = logging.getLogger(__name__)

STUDY_FILE = "study.db"


def storage_url(space: Space, run_dir: Path) -> str:
    """Where a run's study lives: the space's ``storage``, or the SQLite file in the run folder."""
    return space.storage or f"sqlite:///{(run_dir / STUDY_FILE).resolve()}"


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
        """What a resumed study must share with its start: candidates, data and training (not the trial count)."""
        text = json.dumps([[c.params() for c in self.candidates], self.space.dataset.model_dump(), self.space.train.model_dump()],
                          sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:16]


def plan_run(space: Space, space_path: Path, out: Path | None = None, max_trials: int | None = None) -> RunPlan:
    """Which candidates a run covers (static constraints applied) and how many trials it owes."""
    from ._budget import Budget

    from .space import applicable_candidates

    candidates, _ = applicable_candidates(space)
    if space.search.max_params is not None:
        limit = Budget.parse(space.search.max_params)
        kw = dataset_model_kwargs(space)

        def fits(c: Candidate) -> bool:
            import torch

            from .models import create_model

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
    import optuna

    if url.endswith((".log", ".journal")) and "://" not in url:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        return JournalStorage(JournalFileBackend(url))
    return optuna.storages.RDBStorage(url)


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


def _atomic_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def run_trial(config: dict, space_json: str, run_dir: str, space_path: str) -> None:
    """One trial, inside a Ray worker: build, compress, measure, train (reporting every epoch), save."""
    import torch
    from ray import tune

    from . import measure
    from ._version import __version__
    from .data import load_dataset
    from .export import save_trained
    from .methods import CompressedModel, compress
    from .models import create_model
    from .train import EpochMetrics, TrainConfig, train

    number = int(config["_number"])
    folder = Path(run_dir) / "trials" / f"{number:04d}"
    record: dict[str, Any] = {"number": number, "config": config.get("_candidate"), "status": "running", "started": time.time(),
                              "versions": {"smhsearch": __version__, "torch": torch.__version__, "python": platform.python_version()}}
    try:
        space = Space.model_validate(json.loads(space_json))
        cand = Candidate(**config["_candidate"])
        record.update(label=cand.label(), seed=space.train.seed)
        device = "cuda" if torch.cuda.is_available() and space.resources.gpus_per_trial > 0 else "cpu"
        record["device"] = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu"
        torch.set_num_threads(max(1, int(space.resources.cpus_per_trial)))
        size_kw = {"size": space.dataset.resolution} if space.dataset.resolution else {}
        data = load_dataset(space.dataset.name, dataset_root(space, Path(space_path)), **size_kw)
        torch.manual_seed(space.train.seed)
        base = create_model(cand.arch, **dataset_model_kwargs(space)(cand.arch))
        cfg = cand.method_config(space.train.seed)
        model = compress(base, cfg) if cfg is not None else base
        side = model.input_size(data.input_size) if isinstance(model, CompressedModel) else data.input_size
        shape = (data.in_channels, data.input_size, data.input_size)
        static = {
            "stored_params": measure.final_stored_parameters(model),
            "virtual_params": measure.virtual_parameters(model),
            "flops": measure.flops(model, shape),
            "throughput": measure.throughput(model, shape, batch_size=64, mode="infer", warmup=1, repeats=3).samples_per_s,
            "input_size": side,
        }
        record["metrics"] = dict(static)
        if isinstance(model, CompressedModel):  # what the method resolved the budget to (SMH's n and M, width's alpha, ...)
            record["method_details"] = {k: v for k, v in model.describe().items() if not isinstance(v, (list, dict))}
        if space.search.min_throughput is not None and static["throughput"] < space.search.min_throughput:
            raise ValueError(f"inference throughput {static['throughput']:.1f}/s is below search.min_throughput "
                             f"{space.search.min_throughput}")
        t = space.train
        tcfg = TrainConfig(epochs=t.epochs, batch_size=t.batch_size, optimizer=t.optimizer, lr=t.lr, momentum=t.momentum,
                           weight_decay=t.weight_decay, schedule=t.schedule, warmup_epochs=t.warmup_epochs,
                           label_smoothing=t.label_smoothing, variable_lr_mult=space.lr_mult(cand.method), seed=t.seed)

        def report(m: EpochMetrics) -> None:
            record["history"] = record.get("history", []) + [m.__dict__]
            record["metrics"].update(val_acc=m.val_acc, epoch=m.epoch)
            _atomic_json(folder / "trial.json", record)
            if m.epoch < t.epochs:  # the last epoch is reported once, with the test accuracy
                tune.report({**static, "val_acc": m.val_acc, "epoch": m.epoch, "train_loss": m.train_loss})

        _atomic_json(folder / "trial.json", record)
        result = train(model, data, tcfg, device=device, callback=report, progress=False)
        model = model.cpu()
        save_trained(model, folder / "model.safetensors")  # a dense trial keeps its weights too: any finished trial can be exported
        if isinstance(model, CompressedModel):
            static["stored_params"] = measure.stored_parameters(model)
            static["compact_bytes"] = measure.file_bytes(folder / "model.safetensors")
        final = {**static, "val_acc": result.history[-1].val_acc, "best_val_acc": result.best_val_acc, "test_acc": result.test_acc,
                 "epoch": result.epochs_run, "train_seconds": result.seconds}
        record.update(status="complete", metrics=final, finished=time.time())
        _atomic_json(folder / "trial.json", record)
        tune.report(final)
    except Exception as e:
        record.update(status="failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc(), finished=time.time())
        _atomic_json(folder / "trial.json", record)
        raise


class CandidateSpace:
    """The define-by-run space: one categorical, the candidate's index (a picklable callable)."""

    def __init__(self, candidates: list[Candidate]) -> None:
        self.params = [c.params() for c in candidates]

    def __call__(self, trial) -> dict[str, Any]:
        i = trial.suggest_categorical("candidate", list(range(len(self.params))))
        trial.set_user_attr("config", self.params[i])
        return {"_candidate": self.params[i]}


def _searcher_class():
    from ray.tune.search.optuna import OptunaSearch

    class Searcher(OptunaSearch):
        """OptunaSearch that tells each trial its number, and records outcomes faithfully:
        errors as FAIL (not as complete with partial metrics), early stops as PRUNED, metrics as user attrs."""

        def __init__(self, *args: Any, run_dir: str, epochs: int, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._run_dir, self._epochs = Path(run_dir), epochs

        def suggest(self, trial_id: str):
            cfg = super().suggest(trial_id)
            if isinstance(cfg, dict):
                cfg["_number"] = self._ot_trials[trial_id].number
            return cfg

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            import optuna

            if trial_id in self._completed_trials or trial_id not in self._ot_trials:
                return
            ot_trial = self._ot_trials[trial_id]
            record_path = self._run_dir / "trials" / f"{ot_trial.number:04d}" / "trial.json"
            record = json.loads(record_path.read_text()) if record_path.is_file() else {}
            for k, v in (result or {}).items():
                if k in REPORTED:
                    ot_trial.set_user_attr(k, v)
            keys = self.metric if isinstance(self.metric, list) else [self.metric]
            self._completed_trials.add(trial_id)  # first: Ray must never tell the same trial twice
            try:
                if error or record.get("status") == "failed":
                    ot_trial.set_user_attr("error", record.get("error", "the trial raised (see Ray's log)"))
                    self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.FAIL)
                elif result and int(result.get("epoch", 0)) >= self._epochs and all(result.get(k) is not None for k in keys):
                    self._ot_study.tell(ot_trial, [float(result[k]) for k in keys])
                else:
                    ot_trial.set_user_attr("early_stopped", True)
                    self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.PRUNED)
            except Exception as e:  # never take the search down over bookkeeping; the trial's files hold its record
                log.warning("could not record trial %d in the study: %s", ot_trial.number, e)

    return Searcher


REPORTED = ("val_acc", "test_acc", "best_val_acc", "stored_params", "virtual_params", "flops", "throughput", "epoch",
            "compact_bytes", "input_size")


def _searcher(plan: RunPlan, storage):
    keys, modes = objective_keys(plan.space)
    return _searcher_class()(space=CandidateSpace(plan.candidates), metric=keys, mode=modes, sampler=_sampler(plan),
                             study_name=plan.space.name, storage=storage, run_dir=str(plan.run_dir.resolve()),
                             epochs=plan.space.train.epochs)


def open_study(plan: RunPlan, fresh: bool = False):
    """The run's study, created or reopened; interrupted trials are marked and their configs enqueued again."""
    import optuna

    plan.run_dir.mkdir(parents=True, exist_ok=True)
    storage = _storage(plan.storage_url)
    if fresh:
        try:
            optuna.delete_study(study_name=plan.space.name, storage=storage)
        except KeyError:
            pass
    keys, modes = objective_keys(plan.space)
    study = optuna.create_study(study_name=plan.space.name, storage=storage, load_if_exists=True,
                                directions=["maximize" if m == "max" else "minimize" for m in modes])
    fp = study.user_attrs.get("fingerprint")
    if fp is None:
        study.set_user_attr("fingerprint", plan.fingerprint())
        study.set_user_attr("objectives", keys)
    elif fp != plan.fingerprint():
        raise ValueError(f"the space's candidates, dataset or training settings changed since {plan.run_dir} was started; "
                         "run with --fresh to start over, or --out to use another folder")
    S = optuna.trial.TrialState
    interrupted = []
    for t in study.get_trials(deepcopy=False, states=(S.RUNNING,)):
        finished = _finished_record(plan, t.number, keys)
        if finished is not None:  # the trial finished and wrote its record, but the driver died before telling the study
            for k, v in finished.items():
                if k in REPORTED:
                    storage.set_trial_user_attr(t._trial_id, k, v)
            storage.set_trial_state_values(t._trial_id, S.COMPLETE, [float(finished[k]) for k in keys])
            log.info("trial %d had finished before the driver stopped; its result is recorded from its trial.json", t.number)
            continue
        storage.set_trial_user_attr(t._trial_id, "interrupted", True)
        storage.set_trial_state_values(t._trial_id, S.FAIL)
        interrupted.append(t)
        log.info("trial %d was interrupted; its config is queued again", t.number)
    if plan.space.search.sampler == "grid":  # the grid: every candidate not yet covered, in order
        def candidate_of(t) -> int | None:  # an enqueued trial not yet started keeps its params in fixed_params
            return t.params.get("candidate", t.system_attrs.get("fixed_params", {}).get("candidate"))

        covered = {candidate_of(t) for t in study.get_trials(deepcopy=False)
                   if t.state in (S.COMPLETE, S.PRUNED, S.WAITING) or (t.state == S.FAIL and not t.user_attrs.get("interrupted"))}
        for i in range(len(plan.candidates)):
            if i not in covered:
                study.enqueue_trial({"candidate": i}, skip_if_exists=False)
    else:
        for t in interrupted:
            study.enqueue_trial(t.params, skip_if_exists=False)
    return study, storage


def _finished_record(plan: RunPlan, number: int, keys: list[str]) -> dict[str, Any] | None:
    """The final metrics a trial wrote to its trial.json, when it completed every epoch; else None."""
    path = plan.run_dir / "trials" / f"{number:04d}" / "trial.json"
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    metrics = record.get("metrics") or {}
    if record.get("status") != "complete" or int(metrics.get("epoch", 0)) < plan.space.train.epochs:
        return None
    if any(metrics.get(k) is None for k in keys):
        return None
    return metrics


def trials_done(study) -> int:
    import optuna

    S = optuna.trial.TrialState
    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.state in (S.COMPLETE, S.PRUNED) or (t.state == S.FAIL and not t.user_attrs.get("interrupted")))


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
                    label = Candidate(**trial.config["_candidate"]).label()
                except (KeyError, TypeError):
                    label = trial.trial_id
                if not failed and r.get("val_acc") is not None and (self.best is None or r["val_acc"] > self.best[0]):
                    self.best = (r["val_acc"], label)
                best = f"best val {self.best[0]:.4f} ({self.best[1]})" if self.best else "no result yet"
                state = "FAILED" if failed else f"val {r.get('val_acc', float('nan')):.4f} at epoch {r.get('epoch', '?')}"
                print(f"[{self.done}/{plan.target_trials} done, {running} running, {self.failed} failed] "
                      f"{label}: {state} | {best} | {time.time() - self.t0:.0f}s", flush=True)

            def on_trial_complete(self, iteration, trials, trial, **info):
                self._finish(trials, trial, False)

            def on_trial_error(self, iteration, trials, trial, **info):
                self._finish(trials, trial, True)

        return Progress()


def run_search(plan: RunPlan, address: str | None = None, fresh: bool = False) -> dict[str, Any]:
    """Run (or resume) the search of ``plan``; returns a summary of the study."""
    import ray
    from ray import tune

    study, storage = open_study(plan, fresh)
    (plan.run_dir / "space.yaml").write_text(yaml.safe_dump(json.loads(plan.space.model_dump_json()), sort_keys=False))
    done = trials_done(study)
    remaining = plan.target_trials - done
    if remaining <= 0:
        log.info("all %d trials of %s are done", plan.target_trials, plan.run_dir)
        return summarize(study)
    keys, _ = objective_keys(plan.space)
    res = plan.space.resources
    if not ray.is_initialized():
        extra: dict[str, Any] = {"num_cpus": os.cpu_count()} if address is None else {}
        ray.init(address=address or "local", include_dashboard=False, configure_logging=True, logging_level=logging.WARNING,
                 log_to_driver=False, **extra)
    scheduler = None
    if plan.space.scheduler.kind == "asha" and plan.space.train.epochs > 1:
        from ray.tune.schedulers import ASHAScheduler

        scheduler = ASHAScheduler(time_attr="epoch", metric="val_acc", mode="max", max_t=plan.space.train.epochs,
                                  grace_period=plan.space.scheduler.grace_period,
                                  reduction_factor=plan.space.scheduler.reduction_factor)
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, space_json=plan.space.model_dump_json(), run_dir=str(plan.run_dir.resolve()),
                             space_path=str(plan.space_path.resolve())),
        {"cpu": res.cpus_per_trial, "gpu": res.gpus_per_trial})
    tuner = tune.Tuner(
        trainable,
        # reuse_actors: a trial reuses a finished trial's worker instead of starting a Python (and torch) anew
        tune_config=tune.TuneConfig(search_alg=_searcher(plan, storage), scheduler=scheduler, num_samples=remaining, reuse_actors=True,
                                    max_concurrent_trials=res.max_concurrent),
        run_config=tune.RunConfig(name=f"{plan.space.name}-{int(time.time())}", storage_path=str((plan.run_dir / "ray").resolve()),
                                  verbose=0, callbacks=[_Progress(plan, done)],
                                  failure_config=tune.FailureConfig(max_failures=0, fail_fast=False)),
    )
    tuner.fit()
    return summarize(study)


def summarize(study) -> dict[str, Any]:
    import optuna

    S = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == S.COMPLETE]
    best = max(complete, key=lambda t: t.values[0], default=None)
    return {
        "complete": len(complete),
        "early_stopped": sum(t.state == S.PRUNED for t in trials),
        "failed": sum(t.state == S.FAIL and not t.user_attrs.get("interrupted") for t in trials),
        "interrupted": sum(bool(t.user_attrs.get("interrupted")) for t in trials),
        "best": None if best is None else {"number": best.number, "config": best.user_attrs.get("config"), "values": best.values},
    }
