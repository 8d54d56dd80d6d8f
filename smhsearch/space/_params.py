"""A space's parameters, declared once: per method entry, Optuna distributions and when each parameter exists.

Parameters (define-by-run, so a parameter exists only where the chosen method entry has it)::

    arch                 categorical: the space's architectures
    method               categorical: one key per method entry (its name; ``name#2`` for a second entry of a name)
    distill              categorical over space.distill, every method, when the space has the axis
    bits                 categorical over space.bits, every method (only when the space lists bits other than [32])
    quant                categorical over space.quant, only where bits are below 32
    entropy              categorical over space.entropy, only where bits are integer codes (and the space lists entropy)
    budget, scope, scale only for methods whose config reads them (its ``axes``; dense reads none): categorical
                         over the listed values, or for a budget range a number (an int for counts, a float for
                         fractions; ``log`` as the range says)
    <key>.<option>       categorical, one per option a method entry lists (``hashednets.hashes``); options given as
                         one value are fixed, not sampled

A preset's pinned precision (``binaryconnect``, ``deep_compression``) is fixed, not sampled. Values Optuna cannot
store (a scope rule, a list) are a categorical over their indices. Every name keeps one distribution for the whole
study, as TPE and NSGA-II need. The grid (:meth:`ParamSpace.grid`: ``Space.candidates``, hence ``check``'s table and
a run's fingerprint), define-by-run sampling (:meth:`ParamSpace.sample`) and its inverse (:meth:`ParamSpace.params_of`)
all walk this one declaration, so they cannot disagree on which parameters a candidate has.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from ..methods._schema import config_of, entropy_applies, fixed_precision, quant_applies
from ._candidate import Candidate, precision

_PRIMITIVE = (type(None), bool, int, float, str)
_FIELDS = {f.name for f in dataclasses.fields(Candidate)} - {"options"}  # a value under another name is a method option


@dataclass(frozen=True)
class Param:
    """One Optuna parameter: its name, the candidate field (or method option) it sets, and its distribution.

    ``values``: for a categorical of values Optuna cannot store (a scope rule, a list), the values its index choices
    stand for. ``ends``: for a range, the two ends as the space writes them (what the grid shows). ``when``: the
    parameter exists only where ``when[1]`` holds for the value of field ``when[0]``.
    """

    name: str
    field: str
    distribution: BaseDistribution
    values: tuple[Any, ...] | None = None
    ends: tuple[Any, Any] | None = None
    when: tuple[str, Callable[[Any], bool]] | None = None

    def exists(self, values: Mapping[str, Any]) -> bool:
        return self.when is None or self.when[1](values[self.when[0]])

    def grid(self) -> tuple[Any, ...]:
        """The values the grid lists: every choice of a categorical, a range's two ends."""
        if isinstance(self.distribution, CategoricalDistribution):
            return self.values if self.values is not None else self.distribution.choices
        return self.ends  # type: ignore[return-value]

    def suggest(self, trial) -> Any:
        d = self.distribution
        if isinstance(d, CategoricalDistribution):
            v = trial.suggest_categorical(self.name, list(d.choices))
            return v if self.values is None else self.values[v]
        if isinstance(d, IntDistribution):
            return trial.suggest_int(self.name, d.low, d.high, log=d.log)
        return trial.suggest_float(self.name, d.low, d.high, log=d.log)

    def encode(self, value: Any) -> Any:
        """The parameter value that suggests ``value`` (a ValueError when the distribution has no such choice)."""
        if not isinstance(self.distribution, CategoricalDistribution):
            return value
        choices = self.grid()
        if value not in choices:
            raise ValueError(f"{self.name}: {value!r} is not among {list(choices)}")
        return value if self.values is None else self.values.index(value)


def categorical(name: str, field: str, values: list, when: tuple[str, Callable[[Any], bool]] | None = None) -> Param:
    """A categorical of any values: Optuna's own where they are plain, else over their indices."""
    if all(isinstance(v, _PRIMITIVE) for v in values):
        return Param(name, field, CategoricalDistribution(values), when=when)
    return Param(name, field, CategoricalDistribution(list(range(len(values)))), values=tuple(values), when=when)


@dataclass(frozen=True)
class EntrySpace:
    """One method entry's parameters. ``common`` (distill, precision) are suggested before ``own`` (the axes the
    method reads, then its listed options); the grid nests them the other way, the method's own outermost. Both orders
    are kept as runs have them: a seeded sampler's draws follow the order of suggestion, a grid run's trial numbers
    the order of the candidates."""

    key: str
    """The ``method`` parameter's value: the entry's name, ``name#2`` for a second entry of the same name."""
    method: str
    fixed: Mapping[str, Any]
    """Values not sampled: bits 32 unless listed, the precision a preset pins, the options given as one value."""
    common: tuple[Param, ...]
    own: tuple[Param, ...]

    def candidate(self, values: Mapping[str, Any]) -> Candidate:
        options = tuple(sorted((k, v) for k, v in values.items() if k not in _FIELDS))
        return Candidate(values["arch"], self.method, values.get("budget"), values.get("scope"), values.get("scale"), options,
                         values.get("distill"), *precision(values["bits"], values.get("quant"), values.get("entropy", False)))

    def grid(self, arch: str) -> list[Candidate]:
        return [self.candidate(v) for v in _walk(self.own + self.common, {"arch": arch, **self.fixed})]

    def params_of(self, c: Candidate) -> dict[str, Any]:
        """The parameters that would sample ``c`` from this entry (a ValueError where a value is not a choice)."""
        values = {
            "budget": c.budget,
            "scope": c.scope,
            "scale": c.scale,
            "distill": c.distill,
            "bits": 32 if c.bits is None else c.bits,
            "quant": c.quant,
            "entropy": bool(c.entropy),
            **dict(c.options),
        }
        out = {"arch": c.arch, "method": self.key}
        for p in self.common + self.own:
            if p.exists(values):
                out[p.name] = p.encode(values.get(p.field))
        return out


def _walk(params: tuple[Param, ...], values: dict[str, Any]):
    """Every assignment of ``params`` in order, the first outermost, skipping a parameter where it does not exist."""
    if not params:
        yield values
        return
    p, rest = params[0], params[1:]
    if not p.exists(values):
        yield from _walk(rest, values)
        return
    for v in p.grid():
        yield from _walk(rest, {**values, p.field: v})


@dataclass(frozen=True)
class ParamSpace:
    """A space's parameters: ``arch``, ``method`` (one choice per method entry) and each entry's own.

    Plain data (a picklable searcher holds it); every parameter name keeps one distribution across entries, as TPE
    and NSGA-II need.
    """

    arch: Param
    method: Param
    entries: Mapping[str, EntrySpace]

    def grid(self) -> list[Candidate]:
        """Every distinct candidate, in a stable order: architecture, then method entry, then the entry's grid."""
        out: dict[Candidate, None] = {}
        for arch in self.arch.grid():
            for entry in self.entries.values():
                out.update(dict.fromkeys(entry.grid(arch)))
        return list(out)

    def sample(self, trial) -> Candidate:
        """The candidate a trial names, suggesting each parameter where it exists (define-by-run)."""
        values = {"arch": self.arch.suggest(trial)}
        entry = self.entries[self.method.suggest(trial)]
        values.update(entry.fixed)
        for p in entry.common + entry.own:
            if p.exists(values):
                values[p.field] = p.suggest(trial)
        return entry.candidate(values)

    def params_of(self, c: Candidate) -> dict[str, Any]:
        """The parameters that sample ``c`` (what the grid enqueues): from the first method entry they sample it from."""
        for entry in self.entries.values():
            if entry.method != c.method:
                continue
            try:
                params = entry.params_of(c)
            except ValueError:
                continue
            if self.candidate_of(params) == c:
                return params
        raise ValueError(f"{c.label()} is not a candidate of this space")

    def candidate_of(self, params: Mapping[str, Any]) -> Candidate | None:
        """The candidate a trial's (or an enqueued trial's fixed) parameters name; None if they name none."""
        import optuna

        try:
            return self.sample(optuna.trial.FixedTrial(dict(params)))
        except (ValueError, KeyError, IndexError):
            return None

    def distributions(self) -> dict[str, BaseDistribution]:
        """Every parameter's one distribution, by name."""
        out = {"arch": self.arch.distribution, "method": self.method.distribution}
        for entry in self.entries.values():
            for p in entry.common + entry.own:
                if out.setdefault(p.name, p.distribution) != p.distribution:
                    raise ValueError(f"{p.name} has two distributions: {out[p.name]} and {p.distribution}")
        return out


def method_keys(names: list[str]) -> list[str]:
    """One key per method entry: its name, or ``name#k`` for the k-th (k >= 2) entry of the same name."""
    keys, seen = [], {}
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        keys.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return keys


def param_space(spec) -> ParamSpace:
    """The parameters of a :class:`~smhsearch.space.SpaceSpec` (the ``space`` section)."""
    common_of = {"distill": [categorical("distill", "distill", list(spec.distill))] if spec.distill is not None else [],
                 "bits": [categorical("bits", "bits", list(spec.bits))] if spec.bits != [32] else [],
                 "quant": [categorical("quant", "quant", list(spec.quant), when=("bits", quant_applies))],
                 "entropy": ([categorical("entropy", "entropy", list(spec.entropy), when=("bits", entropy_applies))]
                             if spec.entropy != [False] else [])}
    axis_of = {"budget": _budget(spec), "scope": categorical("scope", "scope", list(spec.scope)),
               "scale": categorical("scale", "scale", list(spec.scale))}  # no budget only where no method reads one
    entries = {}
    for key, m in zip(method_keys([m.name for m in spec.method]), spec.method):
        reads, pinned = config_of(m.name)[0].axes, fixed_precision(m.name)
        common = tuple(p for field, ps in common_of.items() if field not in pinned for p in ps)
        listed = [categorical(f"{key}.{opt}", opt, v) for opt, v in sorted(m.options.items()) if isinstance(v, list)]
        own = tuple([p for a, p in axis_of.items() if a in reads and p is not None] + listed)
        fixed = {"bits": 32, **pinned, **{k: v for k, v in m.options.items() if not isinstance(v, list)}}
        entries[key] = EntrySpace(key, m.name, fixed, common, own)
    return ParamSpace(categorical("arch", "arch", list(spec.arch)), categorical("method", "method", list(entries)), entries)


def _budget(spec) -> Param | None:
    """Listed budgets are a categorical; a range an int (counts) or a float (fractions) between its ends."""
    b = spec.budget
    if b is None:
        return None
    if isinstance(b, list):
        return categorical("budget", "budget", list(b))
    (lo, hi), ends = b.bounds, tuple(spec.budget_values())
    if b.counts:
        return Param("budget", "budget", IntDistribution(int(lo), int(hi), log=b.log), ends=ends)
    return Param("budget", "budget", FloatDistribution(float(lo), float(hi), log=b.log), ends=ends)
