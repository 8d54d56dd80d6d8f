"""The structured space Optuna samples: the space's parameters, conditional on the method, mapped to a Candidate.

The parameters and when each exists are declared once, in :mod:`smhsearch.space._params` (the grid of candidates is
enumerated from the same declaration); this module samples them for the searcher and rejects what cannot run.

A sampled combination that is not a runnable candidate (a budget not below its architecture's size,
or above ``search.max_params``) is *rejected in the sampler*: the Optuna trial is told FAIL with the
user attribute ``rejected`` (the reason) and the searcher asks again, so it never spends a training
run, never counts as a trial of the run and is not listed by ``runs``/``report``. Rejection, not
clipping, because clipping piles the samples of a wide range onto one value (the cap) and
misleads the sampler about the budget it chose.
"""

from __future__ import annotations

from typing import Any

from ..space import Candidate, Space
from ..space._params import param_space


class StructuredSpace:
    """The define-by-run space (a picklable callable: plain data only, as Ray saves its searcher)."""

    def __init__(self, space: Space, sizes: dict[str, int], caps: dict[str, int | None]) -> None:
        self.params = param_space(space.space)
        self.sizes, self.caps = sizes, caps

    def sample(self, trial) -> Candidate:
        """The candidate the trial's parameters name (suggesting each one the chosen method reads)."""
        return self.params.sample(trial)

    def why_not(self, c: Candidate) -> str | None:
        """Why a candidate cannot run (None when it can): the same rules as the listed candidates'."""
        from .._budget import Budget

        total, cap = self.sizes[c.arch], self.caps[c.arch]
        stored = total if c.budget is None else Budget.parse(c.budget).resolve(total)
        if c.budget is not None and stored >= total:
            return f"budget {c.budget!r} (= {stored}) is not below {c.arch}'s size {total}"
        if cap is not None and stored > cap:
            return f"{stored} stored parameters exceed search.max_params ({cap} for {c.arch})"
        return None

    def __call__(self, trial) -> dict[str, Any]:
        cand = self.sample(trial)
        reason = self.why_not(cand)
        if reason is not None:
            trial.set_user_attr("rejected", f"{cand.label()}: {reason}")
            return {"_rejected": reason}
        trial.set_user_attr("config", cand.params())
        return {"_candidate": cand.params()}

    # -- the other way: a candidate's parameters (grid enqueue) and a trial's candidate (coverage) ----
    def params_of(self, c: Candidate) -> dict[str, Any]:
        """The parameters that sample ``c`` (what the grid enqueues)."""
        return self.params.params_of(c)

    def candidate_of(self, params: dict[str, Any]) -> Candidate | None:
        """The candidate a trial's (or an enqueued trial's fixed) parameters name; None if they name none."""
        return self.params.candidate_of(params)
