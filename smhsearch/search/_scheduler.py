"""Early stopping that knows the objectives: successive halving on non-dominated rank.

ASHA compares trials at a rung on validation accuracy alone, so in a size/accuracy search
the small models (expected to be less accurate) are the first it stops, although they are
the low end of the front the user came for. :class:`ParetoRungs` keeps ASHA's rungs
(epochs ``grace``, ``grace*rf``, ``grace*rf^2``, ... below the last epoch) and its
asynchrony (a trial is judged against the peers that reached the rung before it), but ranks
the peers by non-dominated sorting (``moocore.pareto_rank``) of (accuracy at the rung ↑,
each static cost ↓) and keeps the best ``1/rf`` by rank:

    a trial is stopped at a rung iff at least ``n / rf`` of the ``n`` trials recorded
    there (itself included) have a strictly better rank than it.

A trial no one dominates at its rung has rank 0, so nothing ranks better and it is never
stopped. With accuracy as the only objective this is ASHA's rule. The costs are the ones
known before training: stored parameters, and FLOPs when the space's objectives hold
FLOPs or throughput (throughput is measured once per architecture, apart from training,
and FLOPs is its static stand-in at a rung).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Sequence

log = logging.getLogger(__name__)

MODES = ("max", "min")


class ParetoRungs:
    """The rung bookkeeping and decision, without Ray (the scheduler below wraps it).

    >>> r = ParetoRungs([("val_acc", "max"), ("stored_params", "min")], grace_period=1, reduction_factor=2, max_t=4)
    >>> r.milestones
    [1, 2]
    >>> r.on_result("big", {"epoch": 1, "val_acc": 0.9, "stored_params": 1000})
    False
    >>> r.on_result("small", {"epoch": 1, "val_acc": 0.6, "stored_params": 10})   # worse, but smaller: kept
    False
    >>> r.on_result("weak", {"epoch": 1, "val_acc": 0.5, "stored_params": 2000})  # dominated by both: stopped
    True
    """

    def __init__(self, objectives: Sequence[tuple[str, str]], grace_period: int, reduction_factor: float, max_t: int,
                 time_attr: str = "epoch") -> None:
        if not objectives:
            raise ValueError("objectives must name at least one (key, mode) pair")
        for key, mode in objectives:
            if mode not in MODES:
                raise ValueError(f"objective {key!r}: mode must be one of {MODES}, but got {mode!r}")
        if grace_period < 1 or reduction_factor <= 1:
            raise ValueError(
                f"grace_period >= 1 and reduction_factor > 1 must hold, but got ({grace_period}, {reduction_factor})"
            )
        self.objectives = list(objectives)
        self.rf, self.max_t, self.time_attr = float(reduction_factor), max_t, time_attr
        self.milestones: list[Any] = []
        m = float(grace_period)
        while m < max_t:  # a rung at the last epoch would judge a trial that has nothing left to save
            self.milestones.append(int(m) if m == int(m) else m)
            m *= self.rf
        self.recorded: dict[Any, dict[str, tuple[float, ...]]] = {m: {} for m in self.milestones}
        self.stopped: dict[str, Any] = {}  # trial id -> the rung it was stopped at

    def point(self, result: dict[str, Any]) -> tuple[float, ...] | None:
        """The trial's objective values, or None when one is missing or not finite."""
        try:
            values = tuple(float(result[k]) for k, _ in self.objectives)
        except (KeyError, TypeError, ValueError):
            return None
        return values if all(math.isfinite(v) for v in values) else None

    def on_result(self, trial_id: str, result: dict[str, Any]) -> bool:
        """Record a trial's result at the highest rung it reached (once per rung); True: stop it."""
        t = result.get(self.time_attr)
        reached = [m for m in self.milestones if t is not None and t >= m]
        if not reached or trial_id in self.recorded[reached[-1]]:
            return False
        rung = reached[-1]
        p = self.point(result)
        if p is None:
            log.warning("trial %s reported no finite %s at %s %s; not judged", trial_id,
                        ", ".join(k for k, _ in self.objectives), self.time_attr, t)
            return False
        self.recorded[rung][trial_id] = p
        stop = self.dominated_enough(rung, trial_id)
        if stop:
            self.stopped[trial_id] = rung
        return stop

    def ranks(self, rung: Any) -> dict[str, int]:
        """Non-dominated rank (0: no peer dominates it) of every trial recorded at ``rung``."""
        import moocore
        import numpy as np

        ids = list(self.recorded[rung])
        if not ids:
            return {}
        pts = np.array([self.recorded[rung][i] for i in ids], dtype=float)
        rank = moocore.pareto_rank(pts, maximise=[mode == "max" for _, mode in self.objectives])
        return dict(zip(ids, (int(r) for r in rank)))

    def dominated_enough(self, rung: Any, trial_id: str) -> bool:
        """Whether at least n/rf of the n trials at ``rung`` rank strictly better than ``trial_id``."""
        ranks = self.ranks(rung)
        better = sum(r < ranks[trial_id] for r in ranks.values())
        return better >= len(ranks) / self.rf


def rung_objectives(objectives: Sequence[str]) -> list[tuple[str, str]]:
    """(report key, mode) pairs a rung judges, from a space's objectives: accuracy, stored
    parameters, stored bytes, and FLOPs for FLOPs or throughput (both known before training)."""
    from .._objectives import OBJECTIVES

    judged = ["accuracy"] + [o for o in ("stored_params", "stored_bytes") if o in objectives]
    if "flops" in objectives or "throughput" in objectives:
        judged.append("flops")
    return [tuple(OBJECTIVES[o]) for o in judged]


def pareto_scheduler(objectives: Sequence[tuple[str, str]], grace_period: int, reduction_factor: float, max_t: int):
    """The Ray Tune scheduler over :class:`ParetoRungs` (Ray is imported only here)."""
    from ray.tune.schedulers import FIFOScheduler, TrialScheduler

    class ParetoHalving(FIFOScheduler):
        """Ray Tune's FIFO scheduling, with trials stopped by :class:`ParetoRungs` at each rung."""

        def __init__(self) -> None:
            super().__init__()
            self.rungs = ParetoRungs(objectives, grace_period, reduction_factor, max_t)
            self._metric = objectives[0][0]  # what Tune checks every result holds

        def set_search_properties(self, metric, mode, **spec) -> bool:
            return True  # the objectives are our own; Tune's single metric/mode does not apply

        def on_trial_result(self, tune_controller, trial, result: dict) -> str:
            if self.rungs.on_result(trial.trial_id, result):
                log.info("stopping trial %s at %s %s: dominated by enough peers at its rung", trial.trial_id,
                         self.rungs.time_attr, result.get(self.rungs.time_attr))
                return TrialScheduler.STOP
            return TrialScheduler.CONTINUE

        def debug_string(self) -> str:
            return f"Pareto successive halving: rungs {self.rungs.milestones}, {len(self.rungs.stopped)} stopped"

    return ParetoHalving()


def make_scheduler(space):
    """The scheduler a space asks for: ``pareto`` (default), ``asha`` (accuracy alone) or ``none``."""
    spec, epochs = space.scheduler, space.train.epochs
    if spec.kind == "none" or epochs <= 1:
        return None
    if spec.kind == "asha":
        from ray.tune.schedulers import ASHAScheduler

        return ASHAScheduler(time_attr="epoch", metric="val_acc", mode="max", max_t=epochs, grace_period=spec.grace_period,
                             reduction_factor=spec.reduction_factor)
    return pareto_scheduler(rung_objectives(space.search.objectives), spec.grace_period, spec.reduction_factor, epochs)
