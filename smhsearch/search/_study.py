"""The Optuna side: the define-by-run space, the searcher that records outcomes faithfully, and resume."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ..space import Candidate
from .._storage import REPORTED
from ._plan import RunPlan, _sampler, _storage, objective_keys

log = logging.getLogger(__name__)


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
