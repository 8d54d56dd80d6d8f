"""One job: build, compress, measure, train, save. ``smhsearch train``, every search trial
and the benchmarks run this function, so the same spec gives the same model whichever
entry point runs it.

>>> from smhsearch.job import JobSpec, run_job
>>> from smhsearch.train import TrainConfig
>>> spec = JobSpec("mlp", model_kwargs={"hidden": [16]}, dataset="synthetic",
...                dataset_kwargs={"n": 64, "size": 8, "in_channels": 1}, train=TrainConfig(epochs=1, batch_size=32))
>>> run_job(spec).metrics["epoch"]
1

The record (``smhsearch train``'s ``result.json`` or a trial's ``trial.json``, written atomically at every
epoch when ``record_path`` is given) holds the spec, seed, package versions, device,
status, per-epoch history and metrics; ``model.safetensors`` beside it holds the
compact file of a compressed model or the weights of a dense one.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import platform
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from ._errors import ConfigError
from .methods import Dense, MethodConfig
from ._atomic import write_record  # noqa: F401  (re-exported: the atomic JSON writer)
from ._layout import MODEL_FILE
from ._record import Status, TrialRecord
from .train import EpochMetrics, TrainConfig, TrainResult

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class JobSpec:
    """What to build and how to train it. The seed of ``train`` also seeds the model's initialisation."""

    arch: str
    method: MethodConfig = Dense()
    """``Dense()`` (the default) trains the dense model."""
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    """Beyond what the dataset implies (classes, channels, the MLP's input size)."""
    dataset: str = "fashion-mnist-small"
    root: Path | None = None
    dataset_kwargs: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = TrainConfig()
    weights: str | None = None
    """A trained weights file the base starts from (:func:`smhsearch.models.create_model`'s ``weights``); None: a fresh
    initialisation. With it, the method's ``init`` defaults to ``fit`` and distillation's ``dense`` teacher is this model."""
    head: Literal["keep", "reinit"] = "keep"
    """``reinit``: the file's tensors that do not fit the dataset's head keep their fresh initialisation."""

    def __post_init__(self) -> None:
        if not isinstance(self.method, MethodConfig):
            raise TypeError(f"method must be a method config (Dense() for the dense model), but got {self.method!r}")
        if self.weights is not None:
            object.__setattr__(self, "weights", str(Path(self.weights).expanduser().resolve()))
        from .models._weights import HEADS

        if self.head not in HEADS:
            raise ConfigError("head", f"head must be one of {' | '.join(HEADS)}", self.head)
        if self.weights is None and self.head != "keep":
            raise ConfigError("head", "head reinit applies only with a weights file (weights)", self.head)
        if self.weights is None and self.method.init == "fit":
            raise ConfigError("init", "init fit needs a weights file to fit (weights); without one the start is scratch",
                              self.method.init)
        distill = self.train.distill
        if self.weights is not None and distill is not None and distill.trains_teacher and distill.teacher_epochs is not None:
            raise ConfigError("distill.teacher_epochs", "teacher_epochs applies to a teacher the run trains; with a weights "
                              "file the teacher is the trained model itself, nothing is trained for it",
                              distill.teacher_epochs, weights=self.weights)

    @functools.cached_property
    def weights_sha256(self) -> str | None:
        """The sha256 of the weights file (read once): a changed file is another job."""
        from .models._weights import WeightsError, file_sha256

        if self.weights is None:
            return None
        try:
            return file_sha256(self.weights)
        except OSError as e:
            raise WeightsError(f"{self.weights}: cannot be read ({e.strerror or e})") from None

    def to_dict(self) -> dict[str, Any]:
        out = {"arch": self.arch, "method": self.method.to_dict(),
               "model_kwargs": self.model_kwargs, "dataset": self.dataset, "root": str(self.root) if self.root else None,
               "dataset_kwargs": self.dataset_kwargs, "train": dataclasses.asdict(self.train)}
        if self.weights is not None:  # only when given: a spec without weights keeps the dict (and every key) it had
            out["weights"] = {"path": self.weights, "sha256": self.weights_sha256, "head": self.head}
        return out


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
    from .models import MODELS, create_model

    kwargs: dict[str, Any] = {"num_classes": data.num_classes, "in_channels": data.in_channels}
    if MODELS.get(spec.arch).takes_image_size:
        kwargs["image_size"] = data.input_size
    torch.manual_seed(spec.train.seed)
    base = create_model(spec.arch, **{**kwargs, **spec.model_kwargs}, weights=spec.weights, head=spec.head)
    return base, compress(base, spec.method)


def static_metrics(base, model, data) -> dict[str, Any]:
    """What a model costs before training, speed apart: sizes (its base's too), FLOPs, its input side."""
    from . import measure

    shape = (data.in_channels, data.input_size, data.input_size)
    return {
        "base_params": measure.stored_parameters(base),
        "stored_params": measure.final_stored_parameters(model),
        "virtual_params": measure.virtual_parameters(model),
        "flops": measure.flops(model, shape),
        "stored_bytes": measure.stored_bytes(_as_trained(model)),
        "input_size": model.input_size(data.input_size),
    }


def _as_trained(model):
    """A copy of a compressed model as training leaves it (pruning finished, variables quantised), for its file's size."""
    import copy

    done = copy.deepcopy(model)
    done.set_progress(1.0)
    return done


def final_metrics(model, static: dict, result: TrainResult, model_file: Path | None) -> dict[str, Any]:
    """The metrics of a trained model: the static ones, its stored count now, accuracies, epochs, time, compact bytes."""
    from . import measure
    from .export import compact_bytes

    final = {
        **static,
        "stored_params": measure.stored_parameters(model),
        "val_acc": result.history[-1].val_acc,
        "best_val_acc": result.best_val_acc,
        "test_acc": result.test_acc,
        "epoch": result.epochs_run,
        "train_seconds": result.seconds,
    }
    if not model.config.uncompressed:  # the file's real size: the one just written (a dense model at 32 bits keeps its
        # weights in a dense file instead, so any finished job can be exported), else the same writer's
        final["compact_bytes"] = measure.file_bytes(model_file) if model_file is not None else compact_bytes(model)
    final["stored_bytes"] = measure.file_bytes(model_file) if model_file is not None else measure.stored_bytes(model)
    return final


def speed_metrics(model, data, device, phase=None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics, record) of the deployed model's inference speed on ``device`` (:mod:`smhsearch.speed`): measured
    in the run's measurement phase when ``phase`` is given (cached per architecture, alone on the device), else now."""
    from .speed import measure_speed

    shape = (data.in_channels, data.input_size, data.input_size)
    s = phase.measure(model, shape) if phase is not None else measure_speed(model, shape, device)
    return (
        {k: s[k] for k in ("throughput", "latency_s", "throughput_spread")},
        {k: s[k] for k in ("batch_size", "steps", "latency_spread", "device", "dtype") if k in s}
        | {"cached": s.get("cached", False)},
    )


def teacher_spec(spec: JobSpec) -> JobSpec:
    """The job that trains a distilled job's ``dense`` teacher: its architecture, uncompressed, with the same data and
    training settings (for ``teacher_epochs`` epochs where the distillation config says), distillation off."""
    epochs = spec.train.distill.teacher_epochs or spec.train.epochs
    return dataclasses.replace(spec, method=Dense(), train=dataclasses.replace(spec.train, distill=None, epochs=epochs))


def _weaker_teacher(teacher: dict[str, Any], final: dict[str, Any]) -> None:
    """Say so (in the record and the log) when the teacher is less accurate on validation than the student it taught:
    distillation then pulls the student towards worse predictions (a teacher trained with short trials' settings is)."""
    t_acc, s_acc = teacher.get("val_acc"), final.get("val_acc")
    if t_acc is not None and s_acc is not None and t_acc < s_acc:
        teacher["weaker_than_student"] = True
        advice = ("the trained model of the weights file is a weaker teacher than fine-tuning without it" if teacher.get("source")
                  == "weights" else "train it longer (train.distill.teacher_epochs) or distil from a better model file")
        log.warning("the teacher's validation accuracy (%.4f) is below the distilled student's (%.4f): %s", t_acc, s_acc, advice)


def _file_teacher(spec: JobSpec, data) -> tuple[Any, dict[str, Any]]:
    """The teacher a distilled job reads from a file, checked against the data (a ConfigError names ``distill.teacher``)."""
    import torch

    from .export import load_trained

    path = Path(spec.train.distill.teacher).expanduser().resolve()
    try:
        teacher = load_trained(path)
        with torch.no_grad():
            x, _ = next(iter(data.val.batches(2)))
            k = teacher.eval()(x).shape[-1]
    except Exception as e:
        raise ConfigError("distill.teacher", "distill.teacher must be a model this dataset's inputs run through", str(path),
                          got=f"{path} ({type(e).__name__}: {e})") from None
    if k != data.num_classes:
        raise ConfigError("distill.teacher", f"distill.teacher must give one output per class of {spec.dataset} "
                          f"({data.num_classes})", str(path), got=f"{path}, which gives {k} outputs")
    return teacher, {"source": str(path), "trained_here": False, "train_seconds": 0.0}


def start_of(model) -> dict[str, Any]:
    """How ``model``'s variables started: ``init`` (scratch or fit) and, after a fit, its relative error overall, in
    its worst layer and per layer, before any training."""
    out: dict[str, Any] = {"init": model.init}
    if model.fit_error is not None:
        layers = model.fit_error["layers"]
        out.update(fit_error=model.fit_error["overall"], fit_error_max=max(layers.values(), default=0.0), fit_error_layers=layers)
    return out


def _weights_teacher(spec: JobSpec, base, data) -> tuple[Any, dict[str, Any]]:
    """The teacher of a distilled job built from a weights file: the trained model itself (``base``, as the file holds
    it), its accuracies measured on the job's validation and test splits; a head the file did not fit cannot teach."""
    from .models import weights_of
    from .train import evaluate

    info = weights_of(base)
    if info.reinitialised:
        raise ConfigError("distill.teacher", "distill.teacher dense is the trained model of the weights file, whose head must "
                          "fit the dataset; give a model file trained on it instead", spec.train.distill.teacher,
                          got=f"a head re-initialised from {spec.weights} ({', '.join(info.reinitialised)})")
    val_acc, _ = evaluate(base, data.val, spec.train.eval_batch_size)
    test_acc, _ = evaluate(base, data.test, spec.train.eval_batch_size)
    return base, {"source": "weights", "path": info.path, "sha256": info.sha256, "trained_here": False, "train_seconds": 0.0,
                  "val_acc": val_acc, "test_acc": test_acc}


def _dense_teacher(spec: JobSpec, data, device, teachers: Path | None, speed_phase) -> tuple[Any, dict[str, Any]]:
    """The ``dense`` teacher of ``spec``: trained once per key in ``teachers`` (a run's folder, :mod:`smhsearch.teachers`),
    or, with no folder, trained now for this job alone."""
    from .teachers import TeacherStore, teacher_cost, teacher_key

    tspec = teacher_spec(spec)
    key = teacher_key({**tspec.to_dict(), "data": data.describe()})  # the data as given too: a benchmark's subset is other data
    if teachers is None:
        result = run_job(tspec, device=device, data=data)
        return result.model, {"source": "dense", "key": key, "trained_here": True, "waited_s": 0.0, **teacher_cost(result.record)}
    with TeacherStore(teachers).slot(key) as slot:
        rec = slot.finished()
        trained_here = rec is None
        if trained_here:
            run_job(
                tspec,
                device=device,
                data=data,
                record_path=slot.record_path,
                checkpoint=slot.checkpoint,
                speed_phase=speed_phase,
                record={"teacher_key": key, **slot.new_session()},
            )
            slot.checkpoint.unlink(missing_ok=True)
            rec = slot.finished()
        teacher = slot.load()
    return teacher, {"source": "dense", "key": key, "folder": str(slot.folder), "trained_here": trained_here,
                     "waited_s": round(slot.waited_s, 3), **teacher_cost(rec or {})}


def run_job(spec: JobSpec, *, device: str | Any = "cpu", data=None, record_path: Path | None = None,
            record: dict | TrialRecord | None = None,
            on_start: Callable[[dict], None] | None = None, on_epoch: Callable[[EpochMetrics, dict], None] | None = None,
            progress: bool | None = False, speed_phase=None, teachers: Path | None = None,
            checkpoint: Path | None = None) -> JobResult:
    """Build, compress, measure, train and save one model as ``spec`` says.

    ``device``: ``auto``, ``cpu``, ``cuda[:N]`` (see :mod:`smhsearch.device`; an unavailable one is a ValueError).
    ``data``: splits already in memory (a benchmark's own subset), instead of loading ``spec.dataset``.
    ``record``: fields the caller adds to the record (a trial's number and config), or the running
    :class:`~smhsearch._record.TrialRecord` of a trial's attempt (bound to ``record_path``).
    ``on_start(static_metrics)`` runs before training and may raise to refuse the model
    (the search's ``min_throughput``); ``on_epoch(metrics, static)`` after every epoch.
    ``speed_phase``: a run's :class:`smhsearch.speed.SpeedPhase`; speed is then measured in
    its phase (cached, alone on the device) and every epoch runs under its lock.
    ``teachers``: the folder of the run's teachers, for a job whose ``train.distill`` has
    teacher ``dense`` (default: ``teachers/`` beside ``record_path``; with neither, the
    teacher is trained for this job alone). ``checkpoint``: a file the training state is
    saved to after every epoch and resumed from when it exists (a retried trial goes on
    from its last epoch); removed once the job is complete.

    Nothing is written until the model is built and accepted: an error before that (an
    unknown device, missing data, a budget the model cannot meet) is raised as it is, so a
    command can report bad input having written nothing. From then on, any exception is
    recorded (status ``failed``, error, traceback) and re-raised.
    """
    from .data import load_dataset
    from .device import device_name, resolve_device
    from .export import save_trained
    from .models import weights_of
    from .train import train

    rec = record if isinstance(record, TrialRecord) else TrialRecord.begin(record_path, **(record or {}))
    rec.spec, rec.seed, rec.started, rec.versions = spec.to_dict(), spec.train.seed, time.time(), versions()
    save = rec.progress  # writes the running record (nothing without a path)
    device = resolve_device(device)
    rec.device = device_name(device)
    data = data if data is not None else load_dataset(spec.dataset, spec.root, **spec.dataset_kwargs)
    rec.data = data.describe()
    base, model = build(spec, data)
    rec.set("init", start_of(model))
    if spec.weights is not None:  # the file the base was read from: its path, sha256, head rule and re-initialised tensors
        rec.set("weights", weights_of(base).to_dict())
    distill = spec.train.distill
    teacher = None
    if distill is not None and not distill.trains_teacher:  # read and checked now: a bad file is bad input, nothing written
        teacher, rec.teacher = _file_teacher(spec, data)
    elif distill is not None and spec.weights is not None:  # the trained model itself: nothing is trained for it
        teacher, rec.teacher = _weights_teacher(spec, base, data)
    static = static_metrics(base, model, data)
    speed, rec.speed = speed_metrics(model, data, device, speed_phase)
    static.update(speed)
    rec.metrics = dict(static)
    if not model.config.uncompressed:  # what the method resolved the budget to (SMH's n and M, width's alpha, ...)
        rec.method_details = {k: v for k, v in model.describe().items() if not isinstance(v, (list, dict))}
    if on_start is not None:
        try:
            on_start(static)
        except Exception as e:  # refused by the caller (a search's min_throughput): the record keeps what was measured
            rec.fail(f"{type(e).__name__}: {e}")
            raise
    save()
    try:

        def epoch_done(m: EpochMetrics) -> None:
            if speed_phase is not None:  # at the boundary: a measurement waiting for the device may run now
                speed_phase.release_epoch()
            rec.history = (rec.history or []) + [dataclasses.asdict(m)]
            rec.metrics.update(val_acc=m.val_acc, epoch=m.epoch)
            save()
            if on_epoch is not None:
                on_epoch(m, static)
            if speed_phase is not None:
                speed_phase.acquire_epoch()

        if distill is not None and distill.trains_teacher and teacher is None:  # trained once per key and shared, or loaded
            rec.teacher = {"source": "dense", "status": "waiting or training"}
            save()
            folder = teachers if teachers is not None else (record_path.parent / "teachers" if record_path is not None else None)
            teacher, rec.teacher = _dense_teacher(spec, data, device, folder, speed_phase)
            save()
        rec.resumed = checkpoint is not None and checkpoint.is_file()  # a retried trial goes on from its last epoch
        if speed_phase is not None:
            speed_phase.acquire_epoch()
        try:
            result = train(model, data, spec.train, device=device, callback=epoch_done, progress=progress, teacher=teacher,
                           checkpoint=checkpoint)
        finally:
            if speed_phase is not None:
                speed_phase.release_epoch()
        model = model.cpu()
        model_file = save_trained(model, record_path.parent / MODEL_FILE) if record_path is not None else None
        final = final_metrics(model, static, result, model_file)
        if distill is not None:  # what the teacher cost: its training (shared by the run's jobs) and its forward per step
            final.update(
                teacher_train_seconds=rec.teacher["train_seconds"], teacher_forward_s=result.settings.get("teacher_forward_s")
            )
            _weaker_teacher(rec.teacher, final)
        rec.complete(
            metrics=final,
            stopped_early=result.stopped_early,
            train_settings=result.settings,
            history=[dataclasses.asdict(h) for h in result.history],
        )  # a resumed job's too
        if checkpoint is not None:
            checkpoint.unlink(missing_ok=True)
        return JobResult(model, result, final, rec.as_json(), model_file)
    except Exception as e:
        if rec.status == Status.RUNNING:  # an error after the record was complete (removing the checkpoint) stays complete
            rec.fail(f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
        raise
