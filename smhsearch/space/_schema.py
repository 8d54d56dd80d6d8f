"""The space schema: pydantic models of every section, method entries from the registry, and Candidate."""


from __future__ import annotations

import dataclasses
import typing
from typing import Any, Literal, Union

from pydantic import (BaseModel, Field, StrictBool, ValidationError, create_model, field_validator, model_serializer,
                      model_validator)

from .._budget import Budget
from ..methods._schema import (AXES, build_config, config_of, entropy_applies, method_names, quant_applies, space_options,
                               unknown_method)
from .._errors import ConfigError
from ..distill import DistillConfig
from ..train import TrainConfig
from ._candidate import Candidate
from ._params import param_space
from ._sections import (EMBEDDED, OBJECTIVES, DatasetSpec, ResourcesSpec, SchedulerSpec, SearchSpec, SpaceError,  # noqa: F401
                        _Strict, downloadable)

def _config_fields(config: type) -> dict[str, Any]:
    """A frozen config dataclass's fields as pydantic fields (type, default, help)."""
    hints = typing.get_type_hints(config)
    return {
        f.name: (hints[f.name], Field(default=f.default, description=f.metadata.get("help"))) for f in dataclasses.fields(config)
    }


def _distill_check(self):
    DistillConfig(**self.model_dump())  # its own rules: 0 <= alpha <= 1, temperature > 0, the teacher file exists
    return self


# train.distill: DistillConfig's fields and defaults, checked by it
DistillSpec = create_model(
    "DistillSpec",
    __base__=_Strict,
    __validators__={"_check": model_validator(mode="after")(_distill_check)},
    **_config_fields(DistillConfig),
)


def _train_spec() -> type[BaseModel]:
    """The ``train`` section: :class:`TrainConfig`'s fields and defaults, checked by TrainConfig itself.

    Two differences: ``variable_lr_mult`` may also be a map from method name to multiplier,
    and ``distill`` is a mapping of :class:`DistillConfig`'s fields (``{}`` for its defaults).
    """
    fields = _config_fields(TrainConfig)
    fields["distill"] = (
        Union[DistillSpec, None],
        Field(  # type: ignore[valid-type]
            default=None,
            description="distil every trial (or those space.distill turns on): "
            "{teacher: dense | PATH, temperature: 4, alpha: 0.9}",
        ),
    )
    fields["variable_lr_mult"] = (
        Union[float, dict[str, float]],
        Field(
            default=1.0,
            description="multiplies the derived rates of the method's shared variables (1 is fair); "
            "a number, or one per method name",
        ),
    )

    def check(self):
        d = self.model_dump()
        mults = d["variable_lr_mult"].values() if isinstance(d["variable_lr_mult"], dict) else [d["variable_lr_mult"]]
        for m in mults or [1.0]:  # its own rules: warmup < epochs, lr > 0, momentum set for sgd only, ...
            TrainConfig(**{**d, "variable_lr_mult": m}).check_set(self.model_fields_set)
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
    allowed = space_options(config_of(name)[0])
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
    scope: list[Union[str, dict[str, Any]]] = Field(
        default=["all"],
        min_length=1,
        description="all | conv | linear, or a rule {include: [regex], exclude: [regex], min_size: N}",
    )
    scale: list[str] = Field(default=["fixed"], min_length=1)
    distill: Union[list[StrictBool], None] = Field(
        default=None,
        min_length=1,
        max_length=2,
        description="[false, true]: trials with and without train.distill (else its defaults)",
    )
    bits: list[Union[int, str]] = Field(default=[32], min_length=1, description="stored precision of every method's variables "
                                        "(dense too: its weights): 32 | 16 | 8 | 4 | 1 | 'kmeans:K' (methods/_precision.py)")
    quant: list[Literal["ptq", "qat"]] = Field(
        default=["ptq"], min_length=1, description="below 32 bits: post-training (ptq) or quantisation-aware training (qat)"
    )
    entropy: list[StrictBool] = Field(
        default=[False],
        min_length=1,
        max_length=2,
        description="entropy-code the integer codes and masks (bits 8, 4, 1, kmeans:K): [false], [true] or both",
    )

    @field_validator("bits")
    @classmethod
    def _precisions(cls, v: list) -> list:
        from ..methods._precision import parse_bits

        out = [parse_bits(b) for b in v]
        if len(set(out)) != len(out):
            raise ValueError(f"bits must not repeat, but got {v}")
        return out

    @model_validator(mode="after")
    def _precision_applies(self) -> "SpaceSpec":
        if "quant" in self.model_fields_set and not any(quant_applies(b) for b in self.bits):
            raise ConfigError("quant", "quant applies to bits below 32 (16, 8, 4, 1, kmeans:K) only", self.quant, bits=self.bits)
        if len(set(self.entropy)) != len(self.entropy):
            raise ValueError(f"entropy must not repeat, but got {self.entropy}")
        if True in self.entropy and not any(entropy_applies(b) for b in self.bits):
            raise ConfigError("entropy", "entropy applies to integer codes (bits 8, 4, 1 or kmeans:K) only", self.entropy,
                              bits=self.bits)
        return self

    @field_validator("arch", mode="before")
    @classmethod
    def _known_arch(cls, v: Any) -> list[str]:
        """Names, ``timm/<name>``, ``package.module:factory(...)`` or ``{import: ..., kwargs: {...}}``, each resolved now
        (timm and the user's module are imported here, so a typo fails before any trial)."""
        from ..models import MODELS
        from ..models._external import arch_name

        if not isinstance(v, list):
            raise ValueError(f"arch is a list of architectures, but got {v!r}")
        names = [arch_name(a) for a in v]
        for a in names:
            MODELS.get(a)  # an unknown name, a missing module, bad kwargs: UnknownNameError, a ValueError naming them
        if len(set(names)) != len(names):
            raise ValueError(f"architectures must not repeat, but got {names}")
        return names

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
        reads = {axis: [m.name for m in self.method if axis in config_of(m.name)[0].axes] for axis in AXES}
        for axis in AXES:
            given = axis in self.model_fields_set
            if given and not reads[axis]:
                users = [n for n in method_names() if axis in config_of(n)[0].axes]
                raise ConfigError(axis, f"{axis} applies to method(s) {', '.join(users)} only", getattr(self, axis),
                                  got=f"{axis} with no method of this space that reads it")
        if reads["budget"] and self.budget is None:
            raise ConfigError("budget", f"methods {', '.join(reads['budget'])} need a list of budgets (46K, 5.3M, '25%', 0.1) "
                              "or a range ({low: 5K, high: 500K, log: true})", None)
        for axis in ("scope", "scale"):  # each value must be one every method that reads the axis accepts
            for name in reads[axis]:
                for value in getattr(self, axis):
                    try:
                        build_config(name, {"budget": 0.5, axis: value}, {})
                    except ValueError as e:
                        raise ConfigError(axis, f"every {axis} must be valid for every method that reads it", value,
                                          got=f"{value!r}, which {name} refuses: {e}") from None
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
            raise ConfigError("search.sampler", "grid enumerates listed values, so it needs space.budget to list the budgets "
                              "(or use sampler tpe, nsga2 or random)", "grid", got="a range")
        return self

    @model_validator(mode="after")
    def _lr_mult_names(self) -> "Space":
        mult = self.train.variable_lr_mult
        if isinstance(mult, dict):
            names = {m.name for m in self.space.method}
            names |= {config_of(n)[0].method for n in names}
            unknown = sorted(set(mult) - names)
            if unknown:
                raise ConfigError("train.variable_lr_mult", f"train.variable_lr_mult must name methods of this space: "
                                  f"{', '.join(sorted(names))}", mult,
                                  got=f"{unknown}, which name no method of it")
        return self

    @model_validator(mode="after")
    def _distill_applies(self) -> "Space":
        if self.space.distill is not None and len(set(self.space.distill)) != len(self.space.distill):
            raise ConfigError("space.distill", "space.distill's values must not repeat", self.space.distill)
        if "distill" in self.train.model_fields_set and self.space.distill is not None and True not in self.space.distill:
            raise ConfigError("train.distill", "train.distill needs a trial that distills: add true to space.distill or remove "
                              "train.distill", self.train.distill,
                              got=f"space.distill {self.space.distill}, so no trial of this space distills")
        return self

    def as_written(self) -> str:
        """The space as JSON with only the keys its file set: what re-validates to the same space (in a
        worker, or from a run's space.yaml) without defaults tripping the checks that a key applies."""
        return self.model_dump_json(exclude_unset=True)

    def candidates(self) -> list[Candidate]:
        """Every distinct trial config the space allows, in a stable order (a range budget: at its two ends): the grid
        of the space's parameters (:mod:`._params`)."""
        return param_space(self.space).grid()

    def lr_mult(self, method: str) -> float:
        """The variable-lr multiplier of a method name: its own entry, else its registry name's, else 1."""
        v = self.train.variable_lr_mult
        if not isinstance(v, dict):
            return float(v)
        if method in v:
            return float(v[method])
        registry = config_of(method)[0].method
        return float(v.get(registry, 1.0))

    def train_config(self, method: str, distill: bool | None = None) -> TrainConfig:
        """The trainer's config for a trial of ``method``; ``distill`` (the space.distill axis) turns distillation
        off (False) or on (True: train.distill's settings, else DistillConfig's defaults); None: as train.distill says."""
        d = {**self.train.model_dump(), "variable_lr_mult": self.lr_mult(method)}
        if distill is not None:
            d["distill"] = (d["distill"] or {}) if distill else None
        return TrainConfig(**d)

