"""Which candidates a run covers, where its study lives, and how it samples."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import ConfigError
from .._keys import json_key
from .._layout import STUDY_FILE, RunLayout  # noqa: F401  (STUDY_FILE: re-exported by search)
from .._storage import open_storage
from ..space import Candidate, Space


@dataclass
class RunPlan:
    space: Space
    space_path: Path
    run_dir: Path
    candidates: list[Candidate]
    target_trials: int
    structured: Any = None  # the StructuredSpace trials sample (._params)
    study_uid: str | None = None  # set when the study is opened (see _binding)
    # The storage with its credentials (the space's, or SMHSEARCH_STORAGE's). ``space.storage`` holds it
    # redacted, so that nothing that writes the space (space.yaml, run.json, every trial) writes a password.
    storage: str | None = None

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.run_dir)

    @property
    def storage_url(self) -> str:
        """Where the study lives, credentials included: the storage, or the SQLite file in the run folder."""
        return self.layout.storage_url(self.storage)

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles what its callbacks hold (the progress line holds the plan) into the run folder's ray/; a copy
        # made this way (pickle, copy.deepcopy) holds the storage redacted, so the driver passes the plan itself
        from .._storage import redact

        return {**self.__dict__, "storage": redact(self.storage) if self.storage else self.storage}

    def fingerprint(self) -> str:
        """What a resumed study must share with its start: the structured space (budget ranges included), its
        candidates, data, training, objectives and max_params (not the trial count)."""
        return json_key(
            [
                _unset_distill(self.space.space.model_dump()),
                [c.params() for c in self.candidates],
                self.space.dataset.model_dump(),
                _unset_distill(self.space.train.model_dump()),
                self.space.search.objectives,
                self.space.search.max_params,
            ]
        )


_LATER_DEFAULTS = {"distill": None, "entropy": [False]}
"""Keys added after runs existed, at their defaults: a run started before them keeps its fingerprint."""


def _unset_distill(section: dict[str, Any]) -> dict[str, Any]:
    """A section without the keys :data:`_LATER_DEFAULTS` holds at their defaults (``distill: None``, ``entropy: [false]``)."""
    out = {k: v for k, v in section.items() if not (k in _LATER_DEFAULTS and v == _LATER_DEFAULTS[k])}
    if isinstance(out.get("distill"), dict) and out["distill"].get("teacher_epochs") is None:  # added later too
        out["distill"] = {k: v for k, v in out["distill"].items() if k != "teacher_epochs"}
    return out


def plan_run(space: Space, space_path: Path, out: Path | None = None, max_trials: int | None = None) -> RunPlan:
    """Which candidates a run covers (static constraints applied), how trials sample them and how many it owes."""
    from ._params import StructuredSpace

    structured = StructuredSpace(space, *_sizes_and_caps(space))
    candidates = [c for c in space.candidates() if structured.why_not(c) is None]
    if not candidates:
        cap = space.search.max_params
        raise ConfigError("search.max_params", "search.max_params must admit some candidate of the space", cap,
                          got=f"max_params={cap!r}, which no candidate satisfies")
    target = space.search.trials or len(candidates)
    if space.search.sampler == "grid":
        target = min(target, len(candidates))
    if max_trials is not None:
        target = min(target, max_trials)
    from .._storage import choose_storage, redact, resolve_storage

    # a relative storage path in the space means the same file from wherever the run is started (in
    # SMHSEARCH_STORAGE alone, one from the working directory, as any path in the environment)
    storage = resolve_storage(choose_storage(space.storage), space_path.resolve().parent if space.storage else Path.cwd())
    if storage:
        space = space.model_copy(update={"storage": redact(storage)})
    return RunPlan(space, space_path, out or Path("runs") / space.name, candidates, target, structured, storage=storage)


def _sizes_and_caps(space: Space) -> tuple[dict[str, int], dict[str, int | None]]:
    """Each architecture's trainable size (built on the meta device) and its search.max_params cap (None: no cap)."""
    from .._budget import Budget
    from ..space import meta_bases

    sizes = {a: sum(p.numel() for p in m.parameters()) for a, m in meta_bases(space).items()}
    limit = None if space.search.max_params is None else Budget.parse(space.search.max_params, field="search.max_params")
    return sizes, {a: None if limit is None else limit.resolve(n) for a, n in sizes.items()}


def _storage(url: str):
    return open_storage(url)


def _sampler(plan: RunPlan):
    import optuna

    kind, seed = plan.space.search.sampler, plan.space.search.seed
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)
    if kind == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    # grid: every candidate is enqueued (open_study), so the sampler only backs that up. Optuna's
    # GridSampler is not used: it calls study.stop() when exhausted, which ask/tell studies refuse.
    return optuna.samplers.RandomSampler(seed=seed)


def resource_shortfall(space: Space, cpus: float, gpus: float, tpus: float, where: str, *,
                       keys: tuple[str, ...] = ("cpus_per_trial", "gpus_per_trial", "tpus_per_trial")) -> str | None:
    """What a trial asks for that ``where`` (``cpus`` CPUs, ``gpus`` GPUs, ``tpus`` TPU chips) cannot give: such a
    trial would wait for ever. None when every request (of ``keys``) fits."""
    res, path = space.resources, "resources"
    have = {"cpus_per_trial": cpus, "gpus_per_trial": gpus, "tpus_per_trial": tpus}
    short = [f"{path}.{key}={getattr(res, key):g} but {where} has {have[key]:g}" for key in keys if getattr(res, key) > have[key]]
    return "; ".join(short) or None


def local_resources(space: Space | None = None) -> tuple[int, int, int]:
    """(CPUs, GPUs, TPU chips) of this machine, as a local Ray would count them (its TPU count is Ray's own detection).
    With ``space``, a device kind its trials do not ask for is not looked for (counted 0): refusing a request stays
    cheap (finding TPUs imports Ray)."""
    import os

    res = None if space is None else space.resources
    gpus = tpus = 0
    if res is None or res.gpus_per_trial:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if res is None or res.tpus_per_trial:
        tpus = local_tpus()
    return os.cpu_count() or 1, gpus, tpus


def local_shortfall(space: Space) -> str | None:
    """What a trial of ``space`` asks for that this machine cannot give (None: every request fits)."""
    return resource_shortfall(space, *local_resources(space), "this machine")


def local_tpus() -> int:
    """TPU chips on this host: ``TPU_VISIBLE_CHIPS`` where set, else the chips' device files (``/dev/accel*`` on TPU
    v2-v4 VMs, ``/dev/vfio/<n>`` from v5 on), as a TPU VM exposes them; 0 on any other machine."""
    import glob
    import os

    visible = os.environ.get("TPU_VISIBLE_CHIPS", "").strip()
    if visible:
        return len([c for c in visible.split(",") if c.strip()])
    return len(glob.glob("/dev/accel[0-9]*")) or len([p for p in glob.glob("/dev/vfio/*") if os.path.basename(p).isdigit()])


def objective_keys(space: Space) -> tuple[list[str], list[str]]:
    """Report keys and Optuna directions, in the space's objective order."""
    from .._objectives import keys_and_modes

    return keys_and_modes(space.search.objectives)
