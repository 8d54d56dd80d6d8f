"""The structured space Optuna samples: real parameters, conditional on the method, mapped to a Candidate.

Parameters (define-by-run, so a parameter exists only where the chosen method reads it)::

    arch                 categorical: the space's architectures
    method               categorical: one key per method entry (its name; ``name#2`` for a second entry of a name)
    budget               categorical over the listed budgets, or a number from a range
                         (suggest_int for counts, suggest_float for fractions; ``log`` as the range says)
    scope, scale         categorical, only for methods that read them (the same choices for every method)
    distill              categorical [false, true], every method (dense too), when the space has the axis
    bits                 categorical over space.bits, for every method and dense (only when the space lists bits)
    quant                categorical over space.quant, only where the sampled bits are below 32
    entropy              categorical over space.entropy, only where the sampled bits are integer codes (and the
                         space lists entropy)
    <key>.<option>       categorical, one per option a method entry lists (``hashednets.hashes``); options
                         given as one value are fixed, not sampled

Every name keeps one distribution for the whole study, as TPE and NSGA-II need.

A sampled combination that is not a runnable candidate (a budget not below its architecture's size,
or above ``search.max_params``) is *rejected in the sampler*: the Optuna trial is told FAIL with the
user attribute ``rejected`` (the reason) and the searcher asks again, so it never spends a training
run, never counts as a trial of the run and is not listed by ``runs``/``report``. Rejection, not
clipping, because clipping piles the samples of a wide range onto one value (the cap) and
misleads the sampler about the budget it chose.
"""

from __future__ import annotations

from typing import Any

from ..methods._schema import fixed_precision, resolve
from ..space import BudgetRange, Candidate, Space
from ..space._schema import codes, precision

_PRIMITIVE = (type(None), bool, int, float, str)


def method_keys(space: Space) -> list[str]:
    """One key per method entry: its name, or ``name#k`` for the k-th (k >= 2) entry of the same name."""
    keys, seen = [], {}
    for m in space.space.method:
        seen[m.name] = seen.get(m.name, 0) + 1
        keys.append(m.name if seen[m.name] == 1 else f"{m.name}#{seen[m.name]}")
    return keys


class StructuredSpace:
    """The define-by-run space (a picklable callable: plain data only, as Ray saves its searcher)."""

    def __init__(self, space: Space, sizes: dict[str, int], caps: dict[str, int | None]) -> None:
        s = space.space
        self.archs = list(s.arch)
        self.entries: dict[str, tuple[str, tuple[str, ...], dict[str, Any], dict[str, list]]] = {}
        for key, m in zip(method_keys(space), s.method):
            axes = tuple(resolve(m.name)[0].config_cls.axes)
            fixed = {k: v for k, v in m.options.items() if not isinstance(v, list)}
            listed = {k: v for k, v in sorted(m.options.items()) if isinstance(v, list)}
            self.entries[key] = (m.name, axes, fixed, listed)
        self.scope, self.scale = list(s.scope), list(s.scale)
        self.distill = list(s.distill) if s.distill is not None else None
        self.bits, self.quant, self.entropy = list(s.bits), list(s.quant), list(s.entropy)
        self.pinned = {key: fixed_precision(m.name) for key, m in zip(method_keys(space), s.method)}  # a preset's precision
        self.budget = s.budget.model_dump() if isinstance(s.budget, BudgetRange) else s.budget
        self.counts = s.budget.counts if isinstance(s.budget, BudgetRange) else None
        self.bounds = s.budget.bounds if isinstance(s.budget, BudgetRange) else None
        self.sizes, self.caps = sizes, caps

    # -- sampling ---------------------------------------------------------------------------------
    def sample(self, trial) -> Candidate:
        """The candidate the trial's parameters name (suggesting each one the chosen method reads)."""
        arch = trial.suggest_categorical("arch", self.archs)
        key = trial.suggest_categorical("method", list(self.entries))
        name, axes, fixed, listed = self.entries[key]
        kd = trial.suggest_categorical("distill", self.distill) if self.distill is not None else None
        pinned = self.pinned[key]  # the precision the method's preset fixes is not sampled
        bits = pinned.get("bits", _categorical(trial, "bits", self.bits) if self.bits != [32] and "bits" not in pinned else 32)
        quant = pinned.get("quant") or (trial.suggest_categorical("quant", self.quant) if bits != 32 else None)
        entropy = pinned.get("entropy", trial.suggest_categorical("entropy", self.entropy)
                             if self.entropy != [False] and codes(bits) and "entropy" not in pinned else False)
        p_bits, p_quant, p_entropy = precision(bits, quant, entropy)
        budget = self._budget(trial) if "budget" in axes else None
        scope = trial.suggest_categorical("scope", self.scope) if "scope" in axes else None
        scale = trial.suggest_categorical("scale", self.scale) if "scale" in axes else None
        opts = dict(fixed)
        for opt, values in listed.items():
            opts[opt] = _categorical(trial, f"{key}.{opt}", values)
        return Candidate(arch, name, budget, scope, scale, tuple(sorted(opts.items())), distill=kd, bits=p_bits, quant=p_quant,
                         entropy=p_entropy)

    def _budget(self, trial):
        if self.bounds is None:
            return _categorical(trial, "budget", self.budget)
        lo, hi = self.bounds
        if self.counts:
            return trial.suggest_int("budget", int(lo), int(hi), log=self.budget["log"])
        return trial.suggest_float("budget", float(lo), float(hi), log=self.budget["log"])

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
        opts = dict(c.options)
        keys = [k for k, (name, _axes, fixed, listed) in self.entries.items() if name == c.method
                and set(opts) == set(fixed) | set(listed) and all(opts[o] == v for o, v in fixed.items())
                and all(opts[o] in v for o, v in listed.items())]
        if not keys:
            raise ValueError(f"{c.label()} is not a candidate of this space")
        key = keys[0]
        name, axes, _fixed, listed = self.entries[key]
        p: dict[str, Any] = {"arch": c.arch, "method": key}
        if self.distill is not None:
            p["distill"] = c.distill
        for axis in ("budget", "scope", "scale"):
            if axis in axes:
                p[axis] = getattr(c, axis)
        for opt, values in listed.items():
            v = dict(c.options)[opt]
            p[f"{key}.{opt}"] = v if all(isinstance(x, _PRIMITIVE) for x in values) else values.index(v)
        pinned = self.pinned[key]
        if self.bits != [32] and "bits" not in pinned:
            p["bits"] = 32 if c.bits is None else c.bits
        if c.quant is not None and "quant" not in pinned:
            p["quant"] = c.quant
        if self.entropy != [False] and c.bits is not None and codes(c.bits) and "entropy" not in pinned:
            p["entropy"] = bool(c.entropy)
        return p

    def candidate_of(self, params: dict[str, Any]) -> Candidate | None:
        """The candidate a trial's (or an enqueued trial's fixed) parameters name; None if they name none."""
        import optuna

        try:
            return self.sample(optuna.trial.FixedTrial(params))
        except (ValueError, KeyError):
            return None


def _categorical(trial, name: str, values: list):
    """A categorical of any values: Optuna's own where they are plain, else over their indices."""
    if all(isinstance(v, _PRIMITIVE) for v in values):
        return trial.suggest_categorical(name, values)
    return values[trial.suggest_categorical(name, list(range(len(values))))]
