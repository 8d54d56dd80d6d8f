"""The run-level sections of a space: dataset, search, scheduler and resources (and the strict base every section uses)."""

from __future__ import annotations

from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .._budget import Budget
from .._errors import ConfigError
from .._objectives import OBJECTIVES as _OBJECTIVES

OBJECTIVES = {name: o.mode for name, o in _OBJECTIVES.items()}  # name -> direction: what a space may name
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
            raise ConfigError("resolution", f"resolution applies to imagenet (its training crop); {self.name} keeps its native "
                              "size (use method width_res to up-sample inputs)", self.resolution)
        if self.root is not None and self.name in EMBEDDED:
            raise ConfigError("root", f"root does not apply to {self.name}: it reads no files", self.root)
        if self.download:
            able = downloadable()
            if self.name not in able:
                raise ConfigError("download", f"download applies to datasets whose loader can download: {', '.join(able)}", True,
                                  name=self.name)
            if self.root is None:
                raise ConfigError("download", f"download needs dataset.root, the folder to put {self.name}'s files in", True,
                                  root=None)
        return self


def downloadable() -> list[str]:
    """Datasets whose loader takes ``download`` (torchvision's MNIST, Fashion-MNIST and CIFAR ones; a plugin's may too)."""
    import inspect

    from ..data import DATASETS

    return [n for n in DATASETS.names() if "download" in inspect.signature(DATASETS.get(n)).parameters]


class SearchSpec(_Strict):
    sampler: Literal["grid", "tpe", "nsga2", "random"] = "grid"
    trials: int | None = Field(default=None, ge=1, description="number of trials; grid: every candidate by default")
    objectives: list[Literal["accuracy", "stored_params", "throughput", "flops", "stored_bytes"]] = [
        "accuracy",
        "stored_params",
        "throughput",
    ]
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
            Budget.parse(self.max_params, field="max_params")
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
            raise ConfigError(given[0], f"{given[0]} applies to kinds pareto and asha only", getattr(self, given[0]),
                              kind=self.kind)
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
