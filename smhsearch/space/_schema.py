"""The space schema: pydantic models of every section, method entries from the registry, and Candidate."""


from __future__ import annotations

import dataclasses
import itertools
import typing
from dataclasses import dataclass
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_serializer, model_validator

from .._budget import Budget
from ..methods import MethodConfig
from ..methods._schema import AXES, DENSE, build_config, method_names, resolve, space_options, unknown_method
from ..train import TrainConfig

OBJECTIVES = {"accuracy": "max", "stored_params": "min", "throughput": "max", "flops": "min"}
EMBEDDED = ("fashion-mnist-small", "synthetic")  # datasets that read no files


class SpaceError(ValueError):
    """A space file that cannot be run; the message names the file, the key and the allowed values."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSpec(_Strict):
    name: str = "fashion-mnist-small"
    root: str | None = Field(default=None, description="the dataset's folder; a relative one is taken from the current directory")
    download: bool = Field(default=False, description="fetch the files into root when missing (datasets whose loader downloads)")
    resolution: int | None = Field(default=None, gt=0, description="input side; default: the dataset's own")

    @field_validator("name")
    @classmethod
    def _known_dataset(cls, v: str) -> str:
        from ..data import DATASETS

        if v not in DATASETS:
            raise ValueError(DATASETS.unknown_message(v))
        return v

    @model_validator(mode="after")
    def _keys_that_apply(self) -> "DatasetSpec":
        if self.resolution is not None and self.name != "imagenet":
            raise ValueError(f"resolution applies to imagenet (its training crop); {self.name} keeps its native size "
                             "(use method width_res to up-sample inputs)")
        if self.root is not None and self.name in EMBEDDED:
            raise ValueError(f"root does not apply to {self.name}: it reads no files")
        if self.download:
            able = downloadable()
            if self.name not in able:
                raise ValueError(f"download: {self.name}'s loader cannot download; datasets that can: {', '.join(able)}")
            if self.root is None:
                raise ValueError(f"download: needs dataset.root, the folder to put {self.name}'s files in")
        return self


def downloadable() -> list[str]:
    """Datasets whose loader takes ``download`` (torchvision's MNIST, Fashion-MNIST and CIFAR ones; a plugin's may too)."""
    import inspect

    from ..data import DATASETS

    return [n for n in DATASETS.names() if "download" in inspect.signature(DATASETS.get(n)).parameters]


def _train_spec() -> type[BaseModel]:
    """The ``train`` section: :class:`TrainConfig`'s fields and defaults, checked by TrainConfig itself.

    One difference: ``variable_lr_mult`` may also be a map from method name to multiplier.
    """
    hints = typing.get_type_hints(TrainConfig)
    fields: dict[str, Any] = {f.name: (hints[f.name], Field(default=f.default, description=f.metadata.get("help")))
                              for f in dataclasses.fields(TrainConfig)}
    fields["variable_lr_mult"] = (Union[float, dict[str, float]], Field(
        default=1.0, description="multiplies the derived rates of the method's shared variables (1 is fair); a number, or one per method name"))

    def check(self):
        d = self.model_dump()
        mults = d["variable_lr_mult"].values() if isinstance(d["variable_lr_mult"], dict) else [d["variable_lr_mult"]]
        for m in mults or [1.0]:
            TrainConfig(**{**d, "variable_lr_mult": m})  # its own rules: warmup < epochs, lr > 0, ...
        if self.optimizer != "sgd":
            given = sorted({"momentum", "nesterov"} & self.model_fields_set)
            if given:
                raise ValueError(f"{', '.join(given)} applies to optimizer sgd only, but optimizer is {self.optimizer!r}")
        return self

    return create_model("TrainSpec", __base__=_Strict, __validators__={"_check": model_validator(mode="after")(check)},
                        **fields)


TrainSpec = _train_spec()


class MethodEntry(_Strict):
    """A method of the space: a name (registry name or preset) and its own options (a list is an axis)."""

    name: str
    options: dict[str, Any] = {}

    @model_serializer
    def _as_written(self) -> str | dict[str, Any]:  # as a space file writes it, so a saved space.yaml reads back
        return {"name": self.name, **self.options} if self.options else self.name

    @property
    def expanded(self) -> list[dict[str, Any]]:
        keys = sorted(self.options)
        lists = [v if isinstance(v, list) else [v] for v in (self.options[k] for k in keys)]
        return [dict(zip(keys, combo)) for combo in itertools.product(*lists)]


def _method_entry(v: Any) -> MethodEntry:
    """``smh`` or ``{name: hashednets, per_layer: true, hashes: [1, 2]}``, checked against the registry."""
    if isinstance(v, MethodEntry):
        return v
    if isinstance(v, str):
        name, options = v, {}
    elif isinstance(v, dict) and isinstance(v.get("name"), str):
        name, options = v["name"], {k: x for k, x in v.items() if k != "name"}
    else:
        raise ValueError(f"a method is a name or a mapping with a 'name' key and options, but got {v!r}")
    if name not in method_names():
        raise ValueError(unknown_method(name))
    if name == DENSE:
        if options:
            raise ValueError(f"dense takes no options, but got {sorted(options)}")
        return MethodEntry(name=name)
    allowed = space_options(resolve(name)[0].config_cls)
    unknown = sorted(set(options) - set(allowed))
    if unknown:  # values are checked by the config itself, candidate by candidate (_check_feasible)
        raise ValueError(f"{name}: option(s) {unknown} do not apply; allowed: {', '.join(allowed) or 'none'}")
    return MethodEntry(name=name, options=options)


class BudgetRange(_Strict):
    """``budget: {low: 5K, high: 500K, log: true}`` (counts) or ``{low: 0.02, high: 0.5, log: true}`` (fractions):
    samplers draw a number from it (an int for counts, a float fraction otherwise) instead of a listed value."""

    low: Union[int, float, str]
    high: Union[int, float, str]
    log: bool = False

    @model_validator(mode="after")
    def _bounds(self) -> "BudgetRange":
        lo, hi = Budget.parse(self.low), Budget.parse(self.high)
        if (lo.count is None) != (hi.count is None):
            raise ValueError(f"low and high must both be counts (5K, 500K) or both fractions (0.02, '50%'), "
                             f"but got low={self.low!r}, high={self.high!r}")
        if self.bounds[0] >= self.bounds[1]:
            raise ValueError(f"low must be below high, but got low={self.low!r}, high={self.high!r}")
        return self

    @property
    def counts(self) -> bool:
        """Whether the range is of absolute counts (else of fractions of the base model)."""
        return Budget.parse(self.low).count is not None

    @property
    def bounds(self) -> tuple[int, int] | tuple[float, float]:
        lo, hi = Budget.parse(self.low), Budget.parse(self.high)
        return (lo.count, hi.count) if lo.count is not None else (lo.fraction, hi.fraction)  # type: ignore[return-value]


class SpaceSpec(_Strict):
    arch: list[str] = Field(min_length=1)
    budget: Union[list[Union[int, float, str]], BudgetRange, None] = Field(default=None)
    method: list[MethodEntry] = Field(min_length=1)
    scope: list[Union[str, dict[str, Any]]] = Field(default=["all"], min_length=1,
                                                      description="all | conv | linear, or a rule {include: [regex], exclude: [regex], min_size: N}")
    scale: list[str] = Field(default=["fixed"], min_length=1)

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, v: list[str]) -> list[str]:
        from ..models import MODELS

        for a in v:
            if a not in MODELS:
                raise ValueError(MODELS.unknown_message(a))
        return v

    @field_validator("method", mode="before")
    @classmethod
    def _methods(cls, v: Any) -> list[MethodEntry]:
        if not isinstance(v, list):
            raise ValueError(f"method is a list of method names or mappings, but got {v!r}")
        return [_method_entry(x) for x in v]

    @field_validator("budget", mode="before")
    @classmethod
    def _budget_form(cls, v: Any) -> Any:  # one clear message instead of one per member of the union
        if v is None or isinstance(v, (list, BudgetRange)):
            return v
        if not isinstance(v, dict):
            raise ValueError(f"a list of budgets (46K, '25%', 0.1) or a range {{low, high, log}}, but got {v!r}")
        unknown = sorted(set(v) - set(BudgetRange.model_fields))
        if unknown or not {"low", "high"} <= set(v):
            raise ValueError(f"a range has keys low, high (required) and log, but got {sorted(v)}")
        try:
            return BudgetRange(**v)
        except ValidationError as e:
            raise ValueError("; ".join(err["msg"].removeprefix("Value error, ") for err in e.errors())) from None

    @field_validator("scope")
    @classmethod
    def _scopes(cls, v: list) -> list:
        from ..methods._targets import parse_scope

        return [parse_scope(x) for x in v]  # rules become ScopeRule values: hashable, so candidates stay distinct in sets

    @field_validator("budget")
    @classmethod
    def _parse_budgets(cls, v):
        if isinstance(v, list):
            if not v:
                raise ValueError("a list of budgets must not be empty")
            for b in v:
                Budget.parse(b)
        return v

    def budget_values(self) -> list | None:
        """The listed budgets, or a range's two ends (what ``check`` pre-screens; trials sample between them)."""
        if isinstance(self.budget, BudgetRange):
            return [self.budget.low, self.budget.high]
        return self.budget

    @model_validator(mode="after")
    def _axes_that_apply(self) -> "SpaceSpec":
        reads = {axis: [m.name for m in self.method if m.name != DENSE and axis in resolve(m.name)[0].config_cls.axes]
                 for axis in AXES}
        for axis in AXES:
            given = axis in self.model_fields_set
            if given and not reads[axis]:
                users = [n for n in method_names() if n != DENSE and axis in resolve(n)[0].config_cls.axes]
                raise ValueError(f"{axis}: no method of this space reads it (it applies to: {', '.join(users)})")
        if reads["budget"] and self.budget is None:
            raise ValueError(f"budget: methods {', '.join(reads['budget'])} need a list of budgets (46K, 5.3M, '25%', 0.1) "
                             "or a range ({low: 5K, high: 500K, log: true})")
        for axis in ("scope", "scale"):  # each value must be one every method that reads the axis accepts
            for name in reads[axis]:
                for value in getattr(self, axis):
                    try:
                        build_config(name, {"budget": 0.5, axis: value}, {})
                    except ValueError as e:
                        raise ValueError(f"{axis}: {value!r} is not valid for {name}: {e}") from None
        return self


class SearchSpec(_Strict):
    sampler: Literal["grid", "tpe", "nsga2", "random"] = "grid"
    trials: int | None = Field(default=None, ge=1, description="number of trials; grid: every candidate by default")
    objectives: list[Literal["accuracy", "stored_params", "throughput", "flops"]] = ["accuracy", "stored_params", "throughput"]
    max_params: Union[int, float, str, None] = None
    min_throughput: float | None = Field(default=None, gt=0)
    seed: int = Field(default=0, ge=0)
    retries: int = Field(default=1, ge=0, description="times a trial whose worker or node died is run again (from its last "
                                                       "epoch's checkpoint) before it is recorded failed")

    @model_validator(mode="after")
    def _check(self) -> "SearchSpec":
        if "accuracy" not in self.objectives:
            raise ValueError("objectives must include 'accuracy'")
        if len(set(self.objectives)) != len(self.objectives):
            raise ValueError(f"objectives must not repeat, but got {self.objectives}")
        if self.max_params is not None:
            Budget.parse(self.max_params)
        return self


class SchedulerSpec(_Strict):
    """Early stopping at rungs of epochs (grace, grace*rf, ...): ``pareto`` stops a trial only when enough peers at its
    rung dominate it on (accuracy, stored size, FLOPs) (``smhsearch.search._scheduler``); ``asha`` ranks on accuracy alone."""

    kind: Literal["pareto", "asha", "none"] = "pareto"
    grace_period: int = Field(default=1, ge=1)
    reduction_factor: float = Field(default=3, gt=1)

    @model_validator(mode="after")
    def _keys_that_apply(self) -> "SchedulerSpec":
        given = sorted({"grace_period", "reduction_factor"} & self.model_fields_set)
        if self.kind == "none" and given:
            raise ValueError(f"{', '.join(given)} applies to kinds pareto and asha only, but kind is 'none'")
        return self


class ResourcesSpec(_Strict):
    cpus_per_trial: float = Field(default=1, gt=0)
    gpus_per_trial: float = Field(default=0, ge=0)
    tpus_per_trial: int = Field(default=0, ge=0, description="TPU chips per trial (Ray's TPU resource); the trial trains on "
                                                             "XLA, on the chips Ray makes visible to it")
    max_concurrent: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_accelerator(self) -> "ResourcesSpec":
        if self.tpus_per_trial > 0 and self.gpus_per_trial > 0:
            raise ValueError(f"a trial trains on GPUs or on TPUs, not both, but got gpus_per_trial={self.gpus_per_trial:g} and "
                             f"tpus_per_trial={self.tpus_per_trial}")
        return self


class Space(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    plugins: list[str] = Field(default=[], description="modules imported first (by the driver and every trial) "
                                                       "that register methods, models or datasets")
    dataset: DatasetSpec = DatasetSpec()
    train: TrainSpec = TrainSpec()  # type: ignore[valid-type]
    space: SpaceSpec
    search: SearchSpec = SearchSpec()
    scheduler: SchedulerSpec = SchedulerSpec()
    resources: ResourcesSpec = ResourcesSpec()
    storage: str | None = Field(default=None, description="SQLAlchemy URL or journal file; default SQLite in the run folder")

    @field_validator("name")
    @classmethod
    def _name_is_a_folder(cls, v: str) -> str:  # the run folder is runs/<name>: "." or ".." would escape it
        if set(v) == {"."}:
            raise ValueError(f"{v!r} is not a run folder name (letters, digits, '_', '.', '-', not only dots)")
        return v

    @model_validator(mode="after")
    def _grid_lists(self) -> "Space":
        if self.search.sampler == "grid" and isinstance(self.space.budget, BudgetRange):
            raise ValueError("search.sampler: grid enumerates listed values, but space.budget is a range; "
                             "list the budgets, or use sampler tpe, nsga2 or random")
        return self

    @model_validator(mode="after")
    def _lr_mult_names(self) -> "Space":
        mult = self.train.variable_lr_mult
        if isinstance(mult, dict):
            names = {m.name for m in self.space.method if m.name != DENSE}
            names |= {resolve(n)[0].config_cls.method for n in names}
            unknown = sorted(set(mult) - names)
            if unknown:
                raise ValueError(f"train.variable_lr_mult: {unknown} name no method of this space; "
                                 f"allowed: {', '.join(sorted(names)) or 'none (only dense)'}")
        return self

    def as_written(self) -> str:
        """The space as JSON with only the keys its file set: what re-validates to the same space (in a
        worker, or from a run's space.yaml) without defaults tripping the checks that a key applies."""
        return self.model_dump_json(exclude_unset=True)

    def candidates(self) -> list["Candidate"]:
        """Every distinct trial config the space allows, in a stable order (a range budget: at its two ends)."""
        out, seen = [], set()
        s = self.space
        for arch, m in itertools.product(s.arch, s.method):
            if m.name == DENSE:
                combos = [Candidate(arch, DENSE)]
            else:
                axes = resolve(m.name)[0].config_cls.axes
                combos = [Candidate(arch, m.name, b if "budget" in axes else None, sc if "scope" in axes else None,
                                    sa if "scale" in axes else None, tuple(sorted(opts.items())))
                          for b, sc, sa, opts in itertools.product(s.budget_values() or [None], s.scope, s.scale, m.expanded)]
            for c in combos:
                if c not in seen:
                    seen.add(c)
                    out.append(c)
        return out

    def lr_mult(self, method: str) -> float:
        """The variable-lr multiplier of a method name: its own entry, else its registry name's, else 1."""
        v = self.train.variable_lr_mult
        if not isinstance(v, dict):
            return float(v)
        if method in v:
            return float(v[method])
        registry = resolve(method)[0].config_cls.method if method != DENSE else method
        return float(v.get(registry, 1.0))

    def train_config(self, method: str) -> TrainConfig:
        """The trainer's config for a trial of ``method``."""
        return TrainConfig(**{**self.train.model_dump(), "variable_lr_mult": self.lr_mult(method)})


@dataclass(frozen=True)
class Candidate:
    """One point of a space: what to build. ``budget``/``scope``/``scale`` are None where the method reads none."""

    arch: str
    method: str
    budget: Union[int, float, str, None] = None
    scope: str | None = None
    scale: str | None = None
    options: tuple[tuple[str, Any], ...] = ()

    def method_config(self, seed: int = 0) -> MethodConfig | None:
        if self.method == DENSE:
            return None
        return build_config(self.method, {"budget": self.budget, "scope": self.scope, "scale": self.scale},
                            dict(self.options), seed=seed)

    def params(self) -> dict[str, Any]:
        """A flat JSON-ready dict (the method's options beside the axes), as trials record their config."""
        flat = {k: v for k, v in dataclasses.asdict(self).items() if v is not None and k != "options"}
        return {**flat, **dict(self.options)}

    @classmethod
    def from_params(cls, d: dict[str, Any]) -> "Candidate":
        from ..methods._targets import parse_scope

        if isinstance(d.get("scope"), dict):  # a scope rule, as JSON records it
            d = {**d, "scope": parse_scope(d["scope"])}
        own = {f.name for f in dataclasses.fields(cls)} - {"options"}
        return cls(**{k: v for k, v in d.items() if k in own}, options=tuple(sorted((k, v) for k, v in d.items() if k not in own)))

    def label(self) -> str:
        from ..methods._targets import scope_label

        parts = ([scope_label(self.scope)] if self.scope else []) + ([self.scale] if self.scale else [])
        extra = "/".join(parts + [f"{k}={v}" for k, v in self.options])
        return f"{self.arch} {self.method}" + (f"@{self.budget}" if self.budget is not None else "") + (f" ({extra})" if extra else "")


