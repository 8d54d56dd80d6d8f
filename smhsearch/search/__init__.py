"""The search driver: an Optuna study in the run folder, trials scheduled by Ray Tune.

Run folder (``runs/<name>`` by default)::

    space.yaml       the space as run (the keys its file set: what re-validates to the same space)
    run.json         the space with every default filled in and each architecture's family: what
                     `report` and `pick` read, so they import neither the schema nor torch
    study.db         the Optuna study (SQLite; or the space's ``storage``): the record of truth
    trials/<n>/      trial.json (config, seed, versions, device, metrics, status) and model.safetensors
                     (the compact file of a compressed model; the dense weights of a dense one)
    ray/             Ray Tune's own experiment folders

Every path of the folder comes from :class:`smhsearch._layout.RunLayout`; a trial's record is a
:class:`smhsearch._record.TrialRecord`, whose moves (running, complete, failed, early_stopped) each have one writer.

Each trial samples the structured space (``_params``): ``arch`` and ``method``
categorical, ``budget`` a listed value or a number from a range, ``scope``/``scale`` and
each method entry's listed options only where the chosen method reads them. A sample that
is not a runnable candidate (budget not below the architecture, above ``max_params``) is
rejected in the sampler without a training run. Grid enqueues every listed candidate once.
Objectives (accuracy on validation, stored parameters, throughput, FLOPs) are told to Optuna when a trial finishes; the scheduler
(``_scheduler``: successive halving on non-dominated rank by default, or ASHA) stops
trials early at rungs of epochs. Ray sees the study through ``_study``'s searcher, a ``ray.tune.search.Searcher`` on
Optuna's ask and tell.

Resume: ``smhsearch run`` on the same space opens the same study. Finished trials
(complete, early-stopped or failed) are kept and not re-run; trials that were running
when the driver died are marked interrupted and their configs enqueued again.
"""

from __future__ import annotations

from ._driver import run_search, summarize
from ._lock import RunLock, RunLocked
from ._plan import STUDY_FILE, RunPlan, _sampler, _storage, objective_keys, plan_run  # noqa: F401  (the private two: tests)
from ._study import REPORTED, open_study, trials_done
from ._trial import run_trial, trial_spec

__all__ = [
    "REPORTED",
    "RunLock",
    "RunLocked",
    "STUDY_FILE",
    "RunPlan",
    "objective_keys",
    "open_study",
    "plan_run",
    "run_search",
    "run_trial",
    "summarize",
    "trial_spec",
    "trials_done",
]
