"""One job: build, compress, measure, train, save. ``smhsearch train``, every search trial
and the benchmarks run this function, so the same spec gives the same model whichever
entry point runs it.

>>> from smhsearch.job import JobSpec, run_job
>>> from smhsearch.train import TrainConfig
>>> spec = JobSpec("mlp", model_kwargs={"hidden": [16]}, dataset="synthetic", dataset_kwargs={"n": 64, "size": 8, "in_channels": 1},
...                train=TrainConfig(epochs=1, batch_size=32))
>>> run_job(spec).metrics["epoch"]
1

The record (``smhsearch train``'s ``result.json`` or a trial's ``trial.json``, written atomically at every
epoch when ``record_path`` is given) holds the spec, seed, package versions, device,
status, per-epoch history and metrics; ``model.safetensors`` beside it holds the
compact file of a compressed model or the weights of a dense one.
"""

from __future__ import annotations

import dataclasses
import platform
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .methods import MethodConfig
from ._atomic import write_record  # noqa: F401  (re-exported: the job's record writer)
from .train import EpochMetrics, TrainConfig, TrainResult



@dataclass(frozen=True)
class JobSpec:
    """What to build and how to train it. The seed of ``train`` also seeds the model's initialisation."""

    arch: str
    method: MethodConfig | None = None
    """None trains the dense model."""
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    """Beyond what the dataset implies (classes, channels, the MLP's input size)."""
    dataset: str = "fashion-mnist-small"
    root: Path | None = None
    dataset_kwargs: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = TrainConfig()

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch, "method": self.method.to_dict() if self.method else {"method": "dense"},
                "model_kwargs": self.model_kwargs, "dataset": self.dataset, "root": str(self.root) if self.root else None,
                "dataset_kwargs": self.dataset_kwargs, "train": dataclasses.asdict(self.train)}


@dataclass
class JobResult:
    model: Any
    """The trained model, on the CPU (compressed or dense)."""
    train: TrainResult
    metrics: dict[str, Any]
    record: dict[str, Any]
    model_file: Path | None = None


def versions() -> dict[str, str]:
    import torch

    from ._version import __version__

    return {"smhsearch": __version__, "torch": torch.__version__, "python": platform.python_version()}


def build(spec: JobSpec, data) -> tuple[Any, Any]:
    """(base, model): the architecture for ``data``'s shape, seeded by the spec, and compressed as it says."""
    import torch

    from .methods import compress
    from .models import IMAGE_SIZE_FAMILIES, MODELS, create_model

    kwargs: dict[str, Any] = {"num_classes": data.num_classes, "in_channels": data.in_channels}
    if spec.arch in MODELS and MODELS.get(spec.arch).family in IMAGE_SIZE_FAMILIES:
        kwargs["image_size"] = data.input_size
    torch.manual_seed(spec.train.seed)
    base = create_model(spec.arch, **{**kwargs, **spec.model_kwargs})
    return base, (compress(base, spec.method) if spec.method is not None else base)


def static_metrics(base, model, data) -> dict[str, Any]:
    """What a model costs before training, speed apart: sizes (its base's too), FLOPs, its input side."""
    from . import measure
    from .methods import CompressedModel

    shape = (data.in_channels, data.input_size, data.input_size)
    return {
        "base_params": measure.stored_parameters(base),
        "stored_params": measure.final_stored_parameters(model),
        "virtual_params": measure.virtual_parameters(model),
        "flops": measure.flops(model, shape),
        "stored_bytes": measure.stored_bytes(_as_trained(model)),
        "input_size": model.input_size(data.input_size) if isinstance(model, CompressedModel) else data.input_size,
    }


def _as_trained(model):
    """A copy of a compressed model as training leaves it (pruning finished, variables quantised), for its file's size."""
    import copy

    from .methods import CompressedModel

    if not isinstance(model, CompressedModel):
        return model
    done = copy.deepcopy(model)
    done.set_progress(1.0)
    return done


def final_metrics(model, static: dict, result: TrainResult, model_file: Path | None) -> dict[str, Any]:
    """The metrics of a trained model: the static ones, its stored count now, accuracies, epochs, time, compact bytes."""
    from . import measure
    from .export import compact_bytes
    from .methods import CompressedModel

    final = {**static, "stored_params": measure.stored_parameters(model), "val_acc": result.history[-1].val_acc,
             "best_val_acc": result.best_val_acc, "test_acc": result.test_acc, "epoch": result.epochs_run, "train_seconds": result.seconds}
    if isinstance(model, CompressedModel):  # the file's real size: the one just written (a dense model keeps its weights
        # too, so any finished job can be exported), else the same writer's
        final["compact_bytes"] = measure.file_bytes(model_file) if model_file is not None else compact_bytes(model)
    final["stored_bytes"] = measure.file_bytes(model_file) if model_file is not None else measure.stored_bytes(model)
    return final


def speed_metrics(model, data, device, phase=None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics, record) of the deployed model's inference speed on ``device`` (:mod:`smhsearch.speed`): measured
    in the run's measurement phase when ``phase`` is given (cached per architecture, alone on the device), else now."""
    from .speed import measure_speed

    shape = (data.in_channels, data.input_size, data.input_size)
    s = phase.measure(model, shape) if phase is not None else measure_speed(model, shape, device)
    return ({k: s[k] for k in ("throughput", "latency_s", "throughput_spread")},
            {k: s[k] for k in ("batch_size", "steps", "latency_spread", "device", "dtype") if k in s} | {"cached": s.get("cached", False)})


def run_job(spec: JobSpec, *, device: str | Any = "cpu", data=None, record_path: Path | None = None, record: dict | None = None,
            on_start: Callable[[dict], None] | None = None, on_epoch: Callable[[EpochMetrics, dict], None] | None = None,
            progress: bool | None = False, speed_phase=None) -> JobResult:
    """Build, compress, measure, train and save one model as ``spec`` says.

    ``device``: ``auto``, ``cpu``, ``cuda[:N]`` (see :mod:`smhsearch.device`; an unavailable one is a ValueError).
    ``data``: splits already in memory (a benchmark's own subset), instead of loading ``spec.dataset``.
    ``record``: fields the caller adds to the record (a trial's number and config).
    ``on_start(static_metrics)`` runs before training and may raise to refuse the model
    (the search's ``min_throughput``); ``on_epoch(metrics, static)`` after every epoch.
    ``speed_phase``: a run's :class:`smhsearch.speed.SpeedPhase`; speed is then measured in
    its phase (cached, alone on the device) and every epoch runs under its lock.

    Nothing is written until the model is built and accepted: an error before that (an
    unknown device, missing data, a budget the model cannot meet) is raised as it is, so a
    command can report bad input having written nothing. From then on, any exception is
    recorded (status ``failed``, error, traceback) and re-raised.
    """
    from .data import load_dataset
    from .device import device_name, resolve_device
    from .export import save_trained
    from .methods import CompressedModel
    from .train import train

    rec: dict[str, Any] = {**(record or {}), "spec": spec.to_dict(), "seed": spec.train.seed, "status": "running",
                           "started": time.time(), "versions": versions()}
    save = (lambda: write_record(record_path, rec)) if record_path is not None else (lambda: None)
    device = resolve_device(device)
    rec["device"] = device_name(device)
    data = data if data is not None else load_dataset(spec.dataset, spec.root, **spec.dataset_kwargs)
    rec["data"] = data.describe()
    base, model = build(spec, data)
    static = static_metrics(base, model, data)
    speed, rec["speed"] = speed_metrics(model, data, device, speed_phase)
    static.update(speed)
    rec["metrics"] = dict(static)
    if isinstance(model, CompressedModel):  # what the method resolved the budget to (SMH's n and M, width's alpha, ...)
        rec["method_details"] = {k: v for k, v in model.describe().items() if not isinstance(v, (list, dict))}
    if on_start is not None:
        try:
            on_start(static)
        except Exception as e:  # refused by the caller (a search's min_throughput): the record keeps what was measured
            rec.update(status="failed", error=f"{type(e).__name__}: {e}", finished=time.time())
            save()
            raise
    save()
    try:

        def epoch_done(m: EpochMetrics) -> None:
            if speed_phase is not None:  # at the boundary: a measurement waiting for the device may run now
                speed_phase.release_epoch()
            rec["history"] = rec.get("history", []) + [dataclasses.asdict(m)]
            rec["metrics"].update(val_acc=m.val_acc, epoch=m.epoch)
            save()
            if on_epoch is not None:
                on_epoch(m, static)
            if speed_phase is not None:
                speed_phase.acquire_epoch()

        if speed_phase is not None:
            speed_phase.acquire_epoch()
        try:
            result = train(model, data, spec.train, device=device, callback=epoch_done, progress=progress)
        finally:
            if speed_phase is not None:
                speed_phase.release_epoch()
        model = model.cpu()
        model_file = save_trained(model, record_path.parent / "model.safetensors") if record_path is not None else None
        final = final_metrics(model, static, result, model_file)
        rec.update(status="complete", metrics=final, finished=time.time(), stopped_early=result.stopped_early,
                   train_settings=result.settings)
        save()
        return JobResult(model, result, final, rec, model_file)
    except Exception as e:
        rec.update(status="failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc(), finished=time.time())
        save()
        raise
