"""YAML search spaces: a validated schema, turned into trial candidates.

A space names what to compare (architectures x budgets x methods x scopes x scales,
and each method's own options), how to train each trial, how to search and schedule,
and where to store the study::

    name: quick
    dataset: {name: fashion-mnist-small}
    train: {epochs: 3, batch_size: 128, lr: 0.05}
    space:
      arch: [resnet8]
      budget: ["10%", "25%"]
      method: [dense, smh, hashed2, {name: hashednets, per_layer: true, hashes: [1, 2]}, width]
      scale: [fixed, learnable]
    search: {sampler: grid}
    scheduler: {kind: pareto, grace_period: 1, reduction_factor: 2}
    resources: {cpus_per_trial: 1}

Nothing here is a second table of methods: the method names, which axes each reads
and which options a method entry may set come from the method registry
(``smhsearch.methods._schema``), and ``train`` is :class:`smhsearch.train.TrainConfig`'s
fields. A space's parameters (Optuna distributions, and when each exists) are declared
once (``_params``); the candidates and the search's sampling both derive from them. Bad input
is a :class:`SpaceError` naming the file, the key and the allowed values; the CLI turns it
into exit status 2 before anything is written.
"""

from __future__ import annotations

from ._load import (applicable_candidates, check_space, dataset_model_kwargs, dataset_root, dataset_shape, load_space, meta_bases,
                    read_space)
from ._candidate import Candidate
from ._schema import (EMBEDDED, OBJECTIVES, BudgetRange, DatasetSpec, MethodEntry, ResourcesSpec, SchedulerSpec, SearchSpec,
                      Space, SpaceError, SpaceSpec, TrainSpec, downloadable)

__all__ = [
    "EMBEDDED",
    "OBJECTIVES",
    "BudgetRange",
    "Candidate",
    "DatasetSpec",
    "MethodEntry",
    "ResourcesSpec",
    "SchedulerSpec",
    "SearchSpec",
    "Space",
    "SpaceError",
    "SpaceSpec",
    "TrainSpec",
    "applicable_candidates",
    "dataset_model_kwargs",
    "dataset_root",
    "dataset_shape",
    "downloadable",
    "check_space",
    "load_space",
    "meta_bases",
    "read_space",
]
