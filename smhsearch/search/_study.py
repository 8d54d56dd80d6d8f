"""The Optuna side: the searcher (sampling the structured space of ._params) that records outcomes faithfully, and resume."""

from __future__ import annotations

import logging
from typing import Any

from .._layout import RunLayout
from .._record import Status, TrialRecord, reached_the_end
from .._storage import REPORTED, retry_transient
from ._binding import bind, check_before_open, move_aside
from ._plan import RunPlan, _sampler, _storage, objective_keys

log = logging.getLogger(__name__)

MAX_REJECTED = 1000  # consecutive rejected samples before the searcher gives up (a space almost all invalid)


def _searcher_class():
    import optuna
    from ray.tune.search import Searcher as RaySearcher

    class Searcher(RaySearcher):
        """Ray Tune's side of the Optuna study, on the public APIs of both (Ray's ``Searcher``, Optuna's ask and tell).

        ``suggest`` asks the study for a trial and samples the structured space in it; a sample that is not a runnable
        candidate is told FAIL at once (marked ``rejected``) and the study is asked again, so it never reaches Ray. The
        config names the trial's number. ``on_trial_complete`` records the outcome faithfully: errors as FAIL (not as
        complete with partial metrics), early stops as PRUNED, metrics as user attrs; a record on disk that says the
        trial finished wins over an error that only lost its acknowledgement."""

        def __init__(self, study, space, keys: list[str], modes: list[str], layout: RunLayout, epochs: int,
                     study_uid: str | None = None) -> None:
            super().__init__(metric=keys, mode=modes)
            self._study, self._space, self._keys = study, space, list(keys)
            self._layout, self._epochs, self._study_uid = layout, epochs, study_uid
            self._running: dict[str, Any] = {}  # Ray's trial id -> the Optuna trial it runs, until told

        def suggest(self, trial_id: str) -> dict[str, Any]:
            for _ in range(MAX_REJECTED):  # a rejected sample is told FAIL at once: it never reaches Ray
                trial = retry_transient(self._study.ask, "asking the study for a trial", log=log)
                cfg = retry_transient(lambda: self._space(trial), "sampling a trial", log=log)
                if "_rejected" not in cfg:
                    break
                retry_transient(lambda: self._study.tell(trial, state=optuna.trial.TrialState.FAIL), "telling the study", log=log)
            else:
                raise RuntimeError(f"{MAX_REJECTED} samples in a row were not runnable candidates (budget not below the "
                                   "architecture's size, or above search.max_params); narrow space.budget or space.arch")
            self._running[trial_id] = trial
            return {**trial.params, **cfg, "_number": trial.number}

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            trial = self._running.pop(trial_id, None)  # first: Ray must never tell the same trial twice
            if trial is None:
                return
            record = TrialRecord.load(self._layout.trial_record(trial.number), self._study_uid)  # None: another study's
            if error and record is not None and record.status == Status.COMPLETE:  # it finished: the acknowledgement was lost
                result, error = record.metrics or {}, False
            failed = error or (record is not None and record.status == Status.FAILED)
            cause = _cause(record) if failed else None
            finished = not failed and reached_the_end(result, self._epochs, self._keys)

            def tell() -> None:
                for k, v in (result or {}).items():
                    if k in REPORTED:
                        trial.set_user_attr(k, v)
                if failed:
                    trial.set_user_attr("error", cause)
                    self._study.tell(trial, state=optuna.trial.TrialState.FAIL)
                elif finished:
                    self._study.tell(trial, [float(result[k]) for k in self._keys])
                else:
                    trial.set_user_attr("early_stopped", True)
                    self._study.tell(trial, state=optuna.trial.TrialState.PRUNED)

            try:  # a storage that drops a connection or restarts gets about a minute before the outcome is given up
                retry_transient(tell, f"recording trial {trial.number} in the study", log=log)
            except Exception as e:  # never take the search down over bookkeeping; the trial's files hold its record
                log.warning("could not record trial %d in the study: %s", trial.number, e)
            if not failed and not finished and record is not None and record.status == Status.RUNNING:
                _write(lambda: record.stop_early(int((result or {}).get("epoch", 0))), trial.number)  # killed inside tune.report

        def save(self, checkpoint_path: str) -> None:
            """Ray's searcher checkpoint holds nothing: a resume reads the Optuna study (and a pickle of the study would
            carry the storage URL, password included, into the run folder)."""
            import pickle

            with open(checkpoint_path, "wb") as f:
                pickle.dump({}, f)

        def restore(self, checkpoint_path: str) -> None:
            """Nothing to restore: :func:`open_study` reopens the study, the record of truth."""

        def __getstate__(self) -> dict[str, Any]:
            """Ray's Tuner pickles its settings, this searcher included, into the run folder (for ``Tuner.restore``,
            which smhsearch never uses: a resume reopens the study). That copy leaves out the live study and its trials:
            their storage's URL may hold a password, and a sampler need not pickle at all (Optuna 5.1's NSGA-II holds a
            thread lock)."""
            return {**self.__dict__, "_study": None, "_running": {}}

    return Searcher


def _cause(record: TrialRecord | None) -> str:
    """Why a failed trial failed: its record's error; a record still running means every attempt's worker died (said in
    its record too)."""
    if record is None:
        return "the trial raised before it wrote a record (see Ray's log)"
    if record.status == Status.RUNNING:
        _write(record.die, record.number)
        return record.death_cause()
    return record.error or f"its record says {record.status}"


def _write(write, number: int | None) -> None:
    """A record's move, written; a file that cannot be written is logged, never the search's end."""
    try:
        write()
    except OSError as e:
        log.warning("could not write trial %s's record: %s", number, e)


def _searcher(plan: RunPlan, storage):
    import optuna

    keys, modes = objective_keys(plan.space)
    study = optuna.load_study(study_name=plan.space.name, storage=storage, sampler=_sampler(plan))
    return _searcher_class()(study, plan.structured, keys, modes, plan.layout, plan.space.train.epochs, plan.study_uid)


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
        def candidate_of(t):  # an enqueued trial not yet started keeps its params in fixed_params
            return plan.structured.candidate_of(t.params or t.system_attrs.get("fixed_params", {}))

        covered = {candidate_of(t) for t in study.get_trials(deepcopy=False) if t.state == S.WAITING or is_done(t)}
        for c in plan.candidates:
            if c not in covered:
                study.enqueue_trial(plan.structured.params_of(c), skip_if_exists=False)
    else:
        for t in interrupted:
            study.enqueue_trial(t.params, skip_if_exists=False)
    return study, storage


def _finished_record(plan: RunPlan, number: int, keys: list[str]) -> dict[str, Any] | None:
    """The final metrics trial ``number`` of this study wrote to its record when it completed every epoch; else None
    (a record of another study, left in the folder, is never adopted)."""
    record = TrialRecord.load(plan.layout.trial_record(number), plan.study_uid)
    if record is None or record.status != Status.COMPLETE or not reached_the_end(record.metrics, plan.space.train.epochs, keys):
        return None
    return record.metrics


def is_done(trial) -> bool:
    """Whether an Optuna trial of the study counts as a trial the run has done (and is not run again): complete,
    stopped early, or failed by its own error (not interrupted by the driver's end, not a rejected sample)."""
    import optuna

    S = optuna.trial.TrialState
    return trial.state in (S.COMPLETE, S.PRUNED) or (
        trial.state == S.FAIL and not trial.user_attrs.get("interrupted") and not trial.user_attrs.get("rejected"))


def trials_done(study) -> int:
    return sum(is_done(t) for t in study.get_trials(deepcopy=False))
