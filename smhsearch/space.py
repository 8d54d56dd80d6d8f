"""YAML search spaces: a validated schema, turned into trial configs.

A space names what to compare (architectures x budgets x methods x scopes x scales),
how to train each trial, how to search and schedule, and where to store the study::

    name: quick
    dataset: {name: fashion-mnist-small}
    train: {epochs: 3, batch_size: 128, lr: 0.05}
    space:
      arch: [resnet8]
      budget: ["10%", "25%"]
      method: [smh, hashed1, width]
      scale: [fixed, learnable]
    search: {sampler: grid}
    scheduler: {kind: asha, grace_period: 1, reduction_factor: 2}
    resources: {cpus_per_trial: 1}

Bad input is a :class:`SpaceError` naming the file, the key and the allowed values;
the CLI turns it into exit status 2 before anything is written.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ._budget import Budget
from .methods import HashedNets, LowRank, MethodConfig, Prune, SMH, WidthMultiplier

# Method names in spaces: presets over the registry's configs.
METHOD_PRESETS: dict[str, tuple[type[MethodConfig], dict[str, Any]]] = {
    "smh": (SMH, {}),
    "hashed1": (HashedNets, {"hashes": 1}),
    "hashed2": (HashedNets, {"hashes": 2}),
    "hashed10": (HashedNets, {"hashes": 10}),
    "width": (WidthMultiplier, {}),
    "width_res": (WidthMultiplier, {"resolution": True}),
    "prune": (Prune, {}),
    "lowrank": (LowRank, {}),
}
USES_SCOPE = {"smh", "hashed1", "hashed2", "hashed10", "prune", "lowrank"}
USES_SCALE = {"smh"}
OBJECTIVES = {"accuracy": "max", "stored_params": "min", "throughput": "max", "flops": "min"}


class SpaceError(ValueError):
    """A space file that cannot be run; the message names the file, the key and the allowed values."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSpec(_Strict):
    name: str = "fashion-mnist-small"
    root: str | None = None
    resolution: int | None = Field(default=None, gt=0, description="input side; default: the dataset's own")

    @field_validator("name")
    @classmethod
    def _known_dataset(cls, v: str) -> str:
        from .data import DATASETS

        if v not in DATASETS:
            raise ValueError(DATASETS.unknown_message(v))
        return v

    @model_validator(mode="after")
    def _resolution_where_it_applies(self) -> "DatasetSpec":
        if self.resolution is not None and self.name != "imagenet":
            raise ValueError(f"resolution applies to imagenet (its training crop); {self.name} keeps its native size "
                             "(use method width_res to up-sample inputs)")
        return self


class TrainSpec(_Strict):
    epochs: int = Field(default=5, ge=1)
    batch_size: int = Field(default=128, ge=1)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(default=0.05, gt=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    weight_decay: float = Field(default=5e-4, ge=0)
    schedule: Literal["cosine", "onecycle", "constant"] = "cosine"
    warmup_epochs: float = Field(default=0.0, ge=0)
    label_smoothing: float = Field(default=0.0, ge=0, lt=1)
    variable_lr_mult: Union[float, dict[str, float]] = Field(
        default=1.0, description="lr multiplier of the method's shared variables; a number, or one per method name")
    seed: int = Field(default=0, ge=0)


class SpaceSpec(_Strict):
    arch: list[str] = Field(min_length=1)
    budget: list[Union[int, float, str]] = Field(min_length=1)
    method: list[str] = Field(min_length=1)
    scope: list[Literal["all", "conv"]] = Field(default=["all"], min_length=1)
    scale: list[Literal["fixed", "learnable"]] = Field(default=["fixed"], min_length=1)

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, v: list[str]) -> list[str]:
        from .models import MODELS

        for a in v:
            if a not in MODELS:
                raise ValueError(MODELS.unknown_message(a))
        return v

    @field_validator("method")
    @classmethod
    def _known_method(cls, v: list[str]) -> list[str]:
        for m in v:
            if m not in METHOD_PRESETS and m != "dense":
                raise ValueError(f"unknown method {m!r}; allowed: {', '.join(['dense', *METHOD_PRESETS])}")
        return v

    @field_validator("budget")
    @classmethod
    def _parse_budgets(cls, v: list) -> list:
        for b in v:
            Budget.parse(b)
        return v


class SearchSpec(_Strict):
    sampler: Literal["grid", "tpe", "nsga2", "random"] = "grid"
    trials: int | None = Field(default=None, ge=1, description="number of trials; grid: every candidate by default")
    objectives: list[Literal["accuracy", "stored_params", "throughput", "flops"]] = ["accuracy", "stored_params", "throughput"]
    max_params: Union[int, float, str, None] = None
    min_throughput: float | None = Field(default=None, gt=0)
    seed: int = Field(default=0, ge=0)

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
    kind: Literal["asha", "none"] = "asha"
    grace_period: int = Field(default=1, ge=1)
    reduction_factor: float = Field(default=3, gt=1)


class ResourcesSpec(_Strict):
    cpus_per_trial: float = Field(default=1, gt=0)
    gpus_per_trial: float = Field(default=0, ge=0)
    max_concurrent: int | None = Field(default=None, ge=1)


class Space(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    dataset: DatasetSpec = DatasetSpec()
    train: TrainSpec = TrainSpec()
    space: SpaceSpec
    search: SearchSpec = SearchSpec()
    scheduler: SchedulerSpec = SchedulerSpec()
    resources: ResourcesSpec = ResourcesSpec()
    storage: str | None = Field(default=None, description="SQLAlchemy URL or journal file; default SQLite in the run folder")

    def candidates(self) -> list["Candidate"]:
        """Every distinct trial config the space allows, in a stable order."""
        out, seen = [], set()
        s = self.space
        for arch, budget, method, scope, scale in itertools.product(s.arch, s.budget, s.method, s.scope, s.scale):
            c = Candidate(arch, method, None if method == "dense" else budget,
                          scope if method in USES_SCOPE else None, scale if method in USES_SCALE else None)
            if c not in seen:
                seen.add(c)
                out.append(c)
        return out

    def lr_mult(self, method: str) -> float:
        v = self.train.variable_lr_mult
        return v if isinstance(v, float | int) else float(v.get(method, 1.0))


@dataclass(frozen=True)
class Candidate:
    """One point of a space: what to build. ``budget``/``scope``/``scale`` are None where unused."""

    arch: str
    method: str
    budget: Union[int, float, str, None] = None
    scope: str | None = None
    scale: str | None = None

    def method_config(self, seed: int = 0) -> MethodConfig | None:
        if self.method == "dense":
            return None
        cls, preset = METHOD_PRESETS[self.method]
        kwargs: dict[str, Any] = {"budget": self.budget, **preset}
        if self.scope is not None:
            kwargs["scope"] = self.scope
        if self.scale is not None:
            kwargs["scale"] = self.scale
        if "seed" in cls.__dataclass_fields__:
            kwargs["seed"] = seed
        return cls(**kwargs)

    def params(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    def label(self) -> str:
        extra = "/".join(str(v) for v in (self.scope, self.scale) if v)
        return f"{self.arch} {self.method}" + (f"@{self.budget}" if self.budget is not None else "") + (f" ({extra})" if extra else "")


def _format_loc(loc: tuple) -> str:
    return ".".join(str(p) for p in loc if not (isinstance(p, str) and p.startswith("function-")))


def load_space(path: str | Path, check_data: bool = True) -> Space:
    """Read and validate a space file; :class:`SpaceError` names the file, key and allowed values.

    ``check_data=False`` skips looking for the dataset's files (to validate a space on a
    machine that does not hold its data); every other check still runs.
    """
    path = Path(path)
    if not path.is_file():
        raise SpaceError(f"{path}: no such space file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpaceError(f"{path}: malformed YAML{where}: {getattr(e, 'problem', e)}") from None
    if not isinstance(raw, dict):
        raise SpaceError(f"{path}: a space is a mapping with keys {', '.join(Space.model_fields)}; got {type(raw).__name__}")
    try:
        space = Space.model_validate(raw)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            key = _format_loc(err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                parent = _format_loc(err["loc"][:-1])
                allowed = _allowed_keys(parent)
                msg = f"unknown key; allowed keys{' under ' + parent if parent else ''}: {', '.join(allowed)}"
            lines.append(f"{path}: {key}: {msg}")
        raise SpaceError("\n".join(lines)) from None
    if check_data:
        _check_dataset(space, path)
    _check_feasible(space, path)
    return space


def dataset_root(space: Space, path: Path) -> Path | None:
    """The dataset root as an absolute path: relative roots are taken from the working
    directory, or else from the space file's folder (trials run in folders of their own)."""
    if not space.dataset.root:
        return None
    root = Path(space.dataset.root).expanduser()
    if root.is_absolute():
        return root
    return root.resolve() if root.exists() else (path.parent / root).resolve()


def _check_dataset(space: Space, path: Path) -> None:
    """A dataset that needs files must find them now, not in every trial."""
    from .data import DatasetNotFound, load_dataset

    if space.dataset.name in ("fashion-mnist-small", "synthetic"):
        return
    try:
        load_dataset(space.dataset.name, dataset_root(space, path))
    except DatasetNotFound as e:
        raise SpaceError(f"{path}: dataset.root: {e}") from None


def _allowed_keys(parent: str) -> list[str]:
    model: type[BaseModel] = Space
    for part in filter(None, parent.split(".")):
        field = model.model_fields.get(part)
        ann = field.annotation if field else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return list(model.model_fields)


def _meta_bases(space: Space) -> dict[str, Any]:
    """Each architecture of the space built on the meta device (shapes only, no memory)."""
    import torch

    from .models import create_model

    kw = dataset_model_kwargs(space)
    with torch.device("meta"):
        return {a: create_model(a, **kw(a)) for a in space.space.arch}


def applicable_candidates(space: Space, bases: dict[str, Any] | None = None) -> tuple[list[Candidate], list[Candidate]]:
    """(kept, skipped): a pair whose budget is not below its architecture's size is not a
    compression and is skipped (a grid over B1..B4 x the sizes of B0..B2 pairs B1 with 9.1M)."""
    bases = bases or _meta_bases(space)
    kept, skipped = [], []
    for c in space.candidates():
        total = sum(p.numel() for p in bases[c.arch].parameters())
        fits = c.budget is None or Budget.parse(c.budget).resolve(total) < total
        (kept if fits else skipped).append(c)
    return kept, skipped


def _check_feasible(space: Space, path: Path) -> None:
    """Every budget must be below some architecture it is paired with, and meetable wherever it is below."""
    import torch

    from .methods import METHODS, compress

    bases = _meta_bases(space)
    kept, skipped = applicable_candidates(space, bases)
    problems = []
    for b in space.space.budget:
        if any(c.budget == b for c in skipped) and not any(c.budget == b for c in kept):
            sizes = ", ".join(f"{a} {sum(p.numel() for p in m.parameters())}" for a, m in bases.items())
            problems.append(f"{path}: space.budget: budget {b!r} is not below any architecture's size ({sizes})")
    for c in kept:
        cfg = c.method_config()
        if cfg is None:
            continue
        try:
            planner = METHODS.get(cfg.method).planner
            if planner is not None:  # the builder's own arithmetic, no tensors made
                planner(bases[c.arch], cfg)
            else:  # width and low-rank search their own shapes: build on the meta device
                if isinstance(cfg, WidthMultiplier):  # resolution changes FLOPs, not feasibility (and FLOPs need values)
                    cfg = dataclasses.replace(cfg, resolution=False)
                with torch.device("meta"):
                    compress(bases[c.arch], cfg)
        except ValueError as e:
            problems.append(f"{path}: space.budget: {c.label()}: {e}")
    if problems:
        raise SpaceError("\n".join(problems))


def dataset_shape(space: Space) -> tuple[int, int, int]:
    """(classes, channels, input side) of the space's dataset, at its resolution."""
    from .data import load_dataset

    info = _DATASET_SHAPES.get(space.dataset.name)
    if info is None:
        d = load_dataset(space.dataset.name, space.dataset.root)
        info = (d.num_classes, d.in_channels, d.input_size)
    classes, channels, size = info
    return classes, channels, space.dataset.resolution or size


def dataset_model_kwargs(space: Space):
    """Model kwargs a dataset implies (classes, channels, MLP input size), per architecture."""
    from .models import MODELS

    classes, channels, size = dataset_shape(space)

    def kwargs(arch: str) -> dict[str, Any]:
        kw: dict[str, Any] = {"num_classes": classes, "in_channels": channels}
        if MODELS.get(arch).family == "mlp":
            kw["image_size"] = size
        return kw

    return kwargs


_DATASET_SHAPES = {"fashion-mnist-small": (10, 1, 28), "fashion-mnist": (10, 1, 28), "mnist": (10, 1, 28), "cifar10": (10, 3, 32),
                   "cifar100": (100, 3, 32), "imagenet": (1000, 3, 224)}
