"""The Optuna side: the searcher (sampling the structured space of ._params) that records outcomes faithfully, and resume."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from ._binding import bind, check_before_open, move_aside, record_of
from .._storage import REPORTED, retry_transient
from ._plan import RunPlan, _sampler, _storage, objective_keys

log = logging.getLogger(__name__)

MAX_REJECTED = 1000  # consecutive rejected samples before the searcher gives up (a space almost all invalid)


def _searcher_class():
    from ray.tune.search.optuna import OptunaSearch

    class Searcher(OptunaSearch):
        """OptunaSearch that tells each trial its number, and records outcomes faithfully:
        errors as FAIL (not as complete with partial metrics), early stops as PRUNED, metrics as user attrs."""

        def __init__(self, *args: Any, run_dir: str, epochs: int, study_uid: str | None = None, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._run_dir, self._epochs, self._study_uid = Path(run_dir), epochs, study_uid

        def suggest(self, trial_id: str):
            import optuna

            for _ in range(MAX_REJECTED):  # a rejected sample is told FAIL at once: it never reaches Ray
                cfg = retry_transient(lambda: super(Searcher, self).suggest(trial_id), "asking the study for a trial", log=log)
                if not (isinstance(cfg, dict) and "_rejected" in cfg):
                    break
                rejected = self._ot_trials.pop(trial_id)
                retry_transient(lambda: self._ot_study.tell(rejected, state=optuna.trial.TrialState.FAIL), "telling the study", log=log)
            else:
                raise RuntimeError(f"{MAX_REJECTED} samples in a row were not runnable candidates (budget not below the "
                                   "architecture's size, or above search.max_params); narrow space.budget or space.arch")
            if isinstance(cfg, dict):
                cfg["_number"] = self._ot_trials[trial_id].number
            return cfg

        def __getstate__(self) -> dict[str, Any]:
            """Ray's Tuner pickles its settings, this searcher included, into the run folder (for ``Tuner.restore``,
            which smhsearch never uses: a resume reopens the study). That copy leaves out the live study, its
            sampler and its storage: the storage's URL may hold a password, and a sampler need not pickle at all
            (Optuna 5.1's NSGA-II holds a thread lock)."""
            return {**self.__dict__, "_ot_study": None, "_sampler": None, "_storage": None}

        def save(self, checkpoint_path: str) -> None:
            """Ray's searcher checkpoint holds nothing: a resume reads the Optuna study, and OptunaSearch's own
            pickle of this object would carry the storage URL, password included, into the run folder."""
            import pickle

            with open(checkpoint_path, "wb") as f:
                pickle.dump({}, f)

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            import optuna

            if trial_id in self._completed_trials or trial_id not in self._ot_trials:
                return
            ot_trial = self._ot_trials[trial_id]
            record = record_of(self._run_dir, ot_trial.number, self._study_uid)  # {} for another study's file
            record_path = self._run_dir / "trials" / f"{ot_trial.number:04d}" / "trial.json"
            keys = self.metric if isinstance(self.metric, list) else [self.metric]
            self._completed_trials.add(trial_id)  # first: Ray must never tell the same trial twice
            if error and record.get("status") == "complete":  # it finished: what was lost is the acknowledgement
                result, error = record.get("metrics") or {}, False
            failed = error or record.get("status") == "failed"
            cause = (record.get("error") if record.get("status") == "failed" else _died(record_path, record)) if failed else None
            finished = bool(result) and int(result.get("epoch", 0)) >= self._epochs and all(result.get(k) is not None for k in keys)

            def tell() -> None:
                for k, v in (result or {}).items():
                    if k in REPORTED:
                        ot_trial.set_user_attr(k, v)
                if failed:
                    ot_trial.set_user_attr("error", cause)
                    self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.FAIL)
                elif finished:
                    self._ot_study.tell(ot_trial, [float(result[k]) for k in keys])
                else:
                    ot_trial.set_user_attr("early_stopped", True)
                    self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.PRUNED)

            try:  # a storage that drops a connection or restarts gets about a minute before the outcome is given up
                retry_transient(tell, f"recording trial {ot_trial.number} in the study", log=log)
            except Exception as e:  # never take the search down over bookkeeping; the trial's files hold its record
                log.warning("could not record trial %d in the study: %s", ot_trial.number, e)
            if not failed and not finished and record:  # killed inside tune.report: its own record still says "running"
                from ..job import write_record

                write_record(record_path, {**record, "status": "early_stopped",
                                           "stopped_at_epoch": int((result or {}).get("epoch", 0)), "finished": time.time()})

    return Searcher


def _died(record_path: Path, record: dict) -> str:
    """The cause of a trial whose every attempt ended without a word (its record still says running), also written to
    its record."""
    if not record:
        return "the trial raised before it wrote a record (see Ray's log)"
    why = (f"its worker died in attempt {record.get('attempt', 1)} (the process was killed, ran out of memory or lost its node) "
           f"after {len(record.get('history') or [])} epochs; search.retries ran out")
    from ..job import write_record

    write_record(record_path, {**record, "status": "failed", "error": why, "finished": time.time()})
    return why


def _searcher(plan: RunPlan, storage):
    keys, modes = objective_keys(plan.space)
    return _searcher_class()(space=plan.structured, metric=keys, mode=modes, sampler=_sampler(plan),
                             study_name=plan.space.name, storage=storage, run_dir=str(plan.run_dir.resolve()),
                             epochs=plan.space.train.epochs, study_uid=plan.study_uid)


def open_study(plan: RunPlan, fresh: bool = False):
    """The run's study, created or reopened; interrupted trials are marked and their configs enqueued again."""
    import optuna

    plan.run_dir.mkdir(parents=True, exist_ok=True)
    if fresh:  # nothing is deleted: the old files and study are moved aside
        move_aside(plan.run_dir, plan.space.name, plan.storage_url, default_sqlite=not plan.space.storage)
    storage = check_before_open(plan.run_dir, plan.space.name, lambda: _storage(plan.storage_url),
                                default_sqlite=not plan.space.storage)
    keys, modes = objective_keys(plan.space)
    study = optuna.create_study(study_name=plan.space.name, storage=storage, load_if_exists=True,
                                directions=["maximize" if m == "max" else "minimize" for m in modes])
    plan.study_uid = bind(plan.run_dir, study)
    fp = study.user_attrs.get("fingerprint")
    if fp is None:
        study.set_user_attr("fingerprint", plan.fingerprint())
        study.set_user_attr("objectives", keys)
    elif fp != plan.fingerprint():
        raise ValueError(f"the space's candidates, dataset, training settings or search.objectives changed since {plan.run_dir} "
                         "was started; "
                         "run with --fresh to start over, or --out to use another folder")
    S = optuna.trial.TrialState
    interrupted = []
    for t in study.get_trials(deepcopy=False, states=(S.RUNNING,)):
        finished = _finished_record(plan, t.number, keys, plan.study_uid)
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
        def candidate_of(t):  # an enqueued trial not yet started keeps its params in fixed_params
            return plan.structured.candidate_of(t.params or t.system_attrs.get("fixed_params", {}))

        covered = {candidate_of(t) for t in study.get_trials(deepcopy=False) if t.state in (S.COMPLETE, S.PRUNED, S.WAITING)
                   or (t.state == S.FAIL and not t.user_attrs.get("interrupted") and not t.user_attrs.get("rejected"))}
        for c in plan.candidates:
            if c not in covered:
                study.enqueue_trial(plan.structured.params_of(c), skip_if_exists=False)
    else:
        for t in interrupted:
            study.enqueue_trial(t.params, skip_if_exists=False)
    return study, storage


def _finished_record(plan: RunPlan, number: int, keys: list[str], uid: str | None) -> dict[str, Any] | None:
    """The final metrics a trial of the study ``uid`` wrote to its trial.json, when it completed every epoch; else None
    (a record of another study, left in the folder, is never adopted)."""
    record = record_of(plan.run_dir, number, uid)
    metrics = record.get("metrics") or {}
    if record.get("status") != "complete" or int(metrics.get("epoch", 0)) < plan.space.train.epochs:
        return None
    if any(metrics.get(k) is None for k in keys):
        return None
    return metrics


def trials_done(study) -> int:
    import optuna

    S = optuna.trial.TrialState
    return sum(1 for t in study.get_trials(deepcopy=False) if t.state in (S.COMPLETE, S.PRUNED)
               or (t.state == S.FAIL and not t.user_attrs.get("interrupted") and not t.user_attrs.get("rejected")))
