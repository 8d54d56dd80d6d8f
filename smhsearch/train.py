"""One training loop for every method.

- SGD with (Nesterov) momentum or AdamW; cosine, one-cycle or constant schedules with
  linear warm-up; label smoothing; gradient clipping.
- Learning rates follow the parametrisation (``methods/_rates.py``): each method's
  shared variables (SMH's U and V, the HashedNets pool, low-rank factors) train at the
  multiplier of ``lr`` that its module derives for the chosen optimizer, under which one
  step moves each computed weight as far as the dense model's weight at ``lr``; ``lr``
  itself is the dense model's. ``variable_lr_mult`` multiplies those rates on top (an
  override, for sweeps; 1 is the fair default).
- Weight decay applies to weight matrices and to the shared variables, scaled so each
  computed weight shrinks per step as a dense weight does: decaying U and V penalises
  ||U||^2 + ||V||^2, the usual factored stand-in for a norm penalty on U @ V. It does not
  apply to biases, normalisation parameters or learnable per-layer scales: those are
  gains, and decaying them pulls whole layers toward zero, as decaying batch-norm's
  gamma would.
- Devices go through :mod:`smhsearch.device`. On CUDA: bf16 autocast where the GPU runs
  bf16 natively, channels_last (computed weights included), and ``torch.compile`` where
  a self-check passes (``compile: auto``); small datasets live on the GPU and are
  augmented there (see ``smhsearch.data``). Nothing waits for the device every step:
  loss and accuracy sums stay on it, and the loss is checked for NaN/inf every
  ``check_every`` steps and at each epoch's end.
- On XLA (TPUs) each step compiles once: training batches have one shape (the last,
  partial batch of an epoch is dropped, as it is on every device), the graph is cut at
  each step's end and after each evaluation batch (``Backend.step``), and nothing in a
  step depends on its index (the loss window is a shift register, not a write at a
  changing offset). Evaluation's last, smaller batch is one more graph, compiled once.
- Deterministic: seeds, and deterministic kernels (cuDNN's included) unless
  ``deterministic=False`` asks for the fastest ones; a per-epoch callback (validation
  accuracy and loss, time) that can stop training (the search's early stopping);
  checkpoint and resume that reproduce the uninterrupted run bit for bit on the same
  device; a NaN or infinite loss raises TrainingDiverged.
- Compressed models are told their progress every step (``set_progress``), which drives
  gradual pruning.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ._checkpoint import load_checkpoint, save_checkpoint
from ._compile import compile_forward as _compile
from ._errors import ConfigError
from .data import DatasetSplits
from .data._splits import Split
from .device import Backend, backend, model_device, resolve_device
from .distill import DistillConfig, kd_loss
from .methods import as_compressed
from .methods._precision import finalize as quantize
from .methods._rates import param_groups as fair_param_groups

log = logging.getLogger(__name__)

Optimizer = Literal["sgd", "adamw"]
SGD_ONLY = ("momentum", "nesterov")
"""TrainConfig's fields that only SGD reads."""
Schedule = Literal["cosine", "onecycle", "constant"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class StopTraining(Exception):
    """Raise from an epoch callback to stop training early (as returning False does)."""


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Every field is checked; the message states the rule and the value."""

    epochs: int = field(default=10, metadata={"help": "passes over the training split"})
    batch_size: int = field(default=128, metadata={"help": "training batch size"})
    optimizer: Optimizer = field(default="sgd", metadata={"help": "SGD with (Nesterov) momentum, or AdamW"})
    lr: float = field(default=0.1, metadata={"help": "peak learning rate"})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum (sgd only)"})
    nesterov: bool = field(default=True, metadata={"help": "Nesterov momentum (sgd only)"})
    weight_decay: float = field(default=5e-4, metadata={"help": "on weights and the method's shared variables, not on gains"})
    schedule: Schedule = field(default="cosine", metadata={"help": "learning-rate schedule"})
    warmup_epochs: float = field(default=0.0, metadata={"help": "linear warm-up, in epochs"})
    label_smoothing: float = field(default=0.0, metadata={"help": "cross-entropy label smoothing"})
    variable_lr_mult: float = field(
        default=1.0, metadata={"help": "multiplies the rates each method derives for its shared variables (1 is fair)"}
    )
    grad_clip: float | None = field(default=None, metadata={"help": "clip the total gradient norm to this"})
    amp: Literal["auto", "bf16", "off"] = field(
        default="auto", metadata={"help": "auto: bf16 where the device runs it natively (CUDA from Ampere on)"}
    )
    channels_last: bool | None = field(default=None, metadata={"help": "channels_last memory format (default: on CUDA)"})
    compile: Literal["auto", "on", "off"] = field(default="auto", metadata={
        "help": "torch.compile of the model; auto: on CUDA only, where its self-check passes"})
    deterministic: bool = field(
        default=True, metadata={"help": "deterministic kernels; off lets cuDNN autotune (faster, not bit-reproducible)"}
    )
    check_every: int = field(default=50, metadata={"help": "steps between the host's checks that the loss is finite"})
    eval_batch_size: int = field(default=1024, metadata={"help": "batch size of evaluation"})
    seed: int = field(default=0, metadata={"help": "seed of shuffling, augmentation and initialisation"})
    distill: DistillConfig | None = field(
        default=None,
        metadata={
            "help": "distil from a teacher (smhsearch.distill): {teacher: dense | PATH, temperature: 4, alpha: 0.9}; "
            "None: plain cross-entropy"
        },
    )

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "distill", DistillConfig.coerce(self.distill)
        )  # a mapping (a record, a space) becomes the config

        def need(ok: bool, rule: str, **values: Any) -> None:  # the first value is the field the rule is about
            if not ok:
                (field, value), *related = values.items()
                raise ConfigError(field, f"{rule} must hold", value, **dict(related))

        need(isinstance(self.epochs, int) and self.epochs >= 1, "epochs >= 1", epochs=self.epochs)
        need(isinstance(self.batch_size, int) and self.batch_size >= 1, "batch_size >= 1", batch_size=self.batch_size)
        need(self.optimizer in ("sgd", "adamw"), "optimizer in ('sgd', 'adamw')", optimizer=self.optimizer)
        need(
            self.schedule in ("cosine", "onecycle", "constant"),
            "schedule in ('cosine', 'onecycle', 'constant')",
            schedule=self.schedule,
        )
        need(self.lr > 0, "lr > 0", lr=self.lr)
        need(0 <= self.momentum < 1, "0 <= momentum < 1", momentum=self.momentum)
        need(self.weight_decay >= 0, "weight_decay >= 0", weight_decay=self.weight_decay)
        need(
            0 <= self.warmup_epochs < self.epochs,
            "0 <= warmup_epochs < epochs",
            warmup_epochs=self.warmup_epochs,
            epochs=self.epochs,
        )
        need(0 <= self.label_smoothing < 1, "0 <= label_smoothing < 1", label_smoothing=self.label_smoothing)
        need(self.variable_lr_mult > 0, "variable_lr_mult > 0", variable_lr_mult=self.variable_lr_mult)
        need(self.grad_clip is None or self.grad_clip > 0, "grad_clip is None or > 0", grad_clip=self.grad_clip)
        need(self.amp in ("auto", "bf16", "off"), "amp in ('auto', 'bf16', 'off')", amp=self.amp)
        need(self.compile in ("auto", "on", "off"), "compile in ('auto', 'on', 'off')", compile=self.compile)
        need(isinstance(self.deterministic, bool), "deterministic is a bool", deterministic=self.deterministic)
        need(isinstance(self.check_every, int) and self.check_every >= 1, "check_every >= 1", check_every=self.check_every)
        need(isinstance(self.seed, int) and self.seed >= 0, "seed >= 0", seed=self.seed)
        self.check_set(f.name for f in dataclasses.fields(self) if f.name in SGD_ONLY and getattr(self, f.name) != f.default)

    def check_set(self, names: Iterable[str]) -> None:
        """Raise a ConfigError when a field among ``names`` (those its user set: flags, a space's keys) does not apply
        to this config: momentum and nesterov apply to SGD only. A value other than the default is always checked."""
        if self.optimizer != "sgd":
            for name in (n for n in SGD_ONLY if n in set(names)):
                raise ConfigError(name, f"{name} applies to optimizer 'sgd' only", getattr(self, name), optimizer=self.optimizer)


@dataclass
class EpochMetrics:
    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    lr: float
    seconds: float


@dataclass
class TrainResult:
    history: list[EpochMetrics]
    test_acc: float
    test_loss: float
    best_val_acc: float
    epochs_run: int
    stopped_early: bool
    seconds: float
    device: str
    settings: dict[str, Any] = field(default_factory=dict)
    """How the run actually went on its device: device name, autocast dtype, channels_last, compile, determinism, peak memory."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """The optimizer's groups for ``model`` under ``cfg``: dense weights (decay), gains (no decay) and
    each method variable at its own rate times ``cfg.variable_lr_mult`` (``methods._rates.param_groups``)."""
    return fair_param_groups(model, cfg.lr, cfg.weight_decay, cfg.optimizer, cfg.variable_lr_mult)


def lr_factor(step: int, total: int, warmup: int, schedule: Schedule) -> float:
    """Multiplier of the base learning rate at ``step`` of ``total``."""
    if schedule == "onecycle":
        warmup = warmup or int(0.3 * total)
        if step < warmup:
            return 1 / 25 + (1 - 1 / 25) * step / max(1, warmup)
    elif step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    t = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, batch_size: int = 1024, amp_dtype: torch.dtype | None = None,
             channels_last: bool = False) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``model`` on ``split``, in eval mode, on the device the model is on.

    The sums stay on that device; the host reads them once, at the end.
    """
    device = model_device(model)
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    loss_sum = torch.zeros((), device=device)
    n = 0
    with backend(device).autocast(amp_dtype):
        for x, y in split.batches(batch_size, device=device):
            if channels_last and x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            out = model(x).float()
            loss_sum += F.cross_entropy(out, y, reduction="sum")
            correct += (out.argmax(1) == y).sum()
            n += len(y)
            backend(device).step()
    model.train(was_training)
    return int(correct) / max(1, n), float(loss_sum) / max(1, n)


class _DivergenceWatch:
    """The losses of the last ``every`` steps, kept on the device and checked for NaN/inf in one host sync.

    Checking each step's loss on the host would stall the GPU's queue every step; a
    diverged loss is still caught within ``every`` steps (and at each epoch's end), and
    the error names its exact step and learning rate.
    """

    def __init__(self, device: torch.device, every: int) -> None:
        self.losses = torch.zeros(every, device=device)  # (every,), the newest last
        self.where: list[tuple[int, int, float]] = []  # (epoch, step, lr) of the newest len(where) slots

    def add(self, loss: torch.Tensor, epoch: int, step: int, lr: float) -> None:
        # a device-side shift: no sync, and the same ops every step (XLA compiles one graph, not one per slot)
        self.losses = torch.cat([self.losses[1:], loss.detach().float().reshape(1)])
        self.where.append((epoch, step, lr))
        if len(self.where) == len(self.losses):
            self.check()

    def check(self) -> None:
        n = len(self.where)
        if n == 0:
            return
        bad = ~torch.isfinite(self.losses[len(self.losses) - n:])
        if bool(bad.any()):  # the one host sync of the window
            j = int(bad.nonzero()[0])
            epoch, step, lr = self.where[j]
            raise TrainingDiverged(
                f"loss became {float(self.losses[len(self.losses) - n + j])} at epoch {epoch + 1}, step {step + 1} (lr={lr:.3g}; "
                f"found checking steps {self.where[0][1] + 1}-{self.where[-1][1] + 1}); "
                "lower the learning rate or add warm-up"
            )
        self.where.clear()


@torch.no_grad()
def teacher_forward_seconds(teacher: nn.Module, x: torch.Tensor, be: Backend, amp: torch.dtype | None, repeats: int = 5) -> float:
    """Median seconds of the teacher's forward on a training batch ``x``: what distillation adds to each step."""
    with be.autocast(amp):
        return be.median_seconds(lambda: teacher(x), warmup=1, repeats=repeats)


def _set_memory_format(model: nn.Module, fmt: torch.memory_format) -> None:
    as_compressed(model).set_memory_format(fmt)  # a compressed model's computed weights follow too


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def train(
    model: nn.Module,
    data: DatasetSplits,
    cfg: TrainConfig = TrainConfig(),
    *,
    device: str | torch.device | None = None,
    callback: Callable[[EpochMetrics], bool | None] | None = None,
    checkpoint: str | os.PathLike | None = None,
    progress: bool | None = None,
    teacher: nn.Module | None = None,
) -> TrainResult:
    """Train ``model`` on ``data`` as ``cfg`` says; evaluate on validation each epoch and on test at the end.

    ``device``: None trains where ``model`` already is (a CPU model stays on the CPU even
    when a GPU is visible); a request (``"cuda"``, ``"cuda:1"``, ``"auto"``, ...) moves the
    model there, and one that is unavailable is a ValueError (see
    :func:`smhsearch.device.resolve_device`). ``callback(metrics)`` runs after every
    epoch; returning ``False`` (or raising :class:`StopTraining`) stops. With
    ``checkpoint``, the state is saved after every epoch and, if the file exists,
    training resumes from it. The model comes back in the standard memory layout.
    ``teacher``: the trained model ``cfg.distill`` distils from (it runs in eval mode, without
    gradients, on the same device; it is needed exactly when ``cfg.distill`` is set).

    >>> import smhsearch
    >>> from smhsearch.data import load_dataset
    >>> data = load_dataset("synthetic", n=64, size=8)
    >>> r = train(smhsearch.create_model("resnet8", widths=(4, 4, 4)), data, TrainConfig(epochs=1, batch_size=32), progress=False)
    >>> r.epochs_run, r.device
    (1, 'cpu')
    """
    if (cfg.distill is None) != (teacher is None):
        raise ValueError("train: a teacher model is needed exactly when cfg.distill is set, but got "
                         f"distill={cfg.distill!r} and teacher={'a model' if teacher is not None else None}")
    device = model_device(model) if device is None else resolve_device(device, flag="device")
    be = backend(device)
    amp = be.autocast_dtype(cfg.amp)
    channels_last = cfg.channels_last if cfg.channels_last is not None else device.type == "cuda"
    with be.determinism(cfg.deterministic):
        model.to(device)
        _set_memory_format(model, torch.channels_last if channels_last else torch.contiguous_format)
        if teacher is not None:
            teacher.to(device).eval()
            _set_memory_format(teacher, torch.channels_last if channels_last else torch.contiguous_format)
        try:
            return _train(
                model, data, cfg, be, amp, channels_last, callback, Path(checkpoint) if checkpoint else None, progress, teacher
            )
        finally:
            _set_memory_format(model, torch.contiguous_format)
            if teacher is not None:
                _set_memory_format(teacher, torch.contiguous_format)


def _train(model: nn.Module, data: DatasetSplits, cfg: TrainConfig, be: Backend, amp: torch.dtype | None, channels_last: bool,
           callback: Callable[[EpochMetrics], bool | None] | None, ckpt: Path | None, progress: bool | None,
           teacher: nn.Module | None = None) -> TrainResult:
    device = be.device
    t_start = time.perf_counter()
    be.reset_peak_memory()
    torch.manual_seed(cfg.seed)  # every device's generator
    gen = torch.Generator().manual_seed(cfg.seed)  # data order and augmentation: the same on every device
    opt = _optimizer(model, cfg)
    n_train = len(data.train)
    drop_last = n_train > cfg.batch_size  # never a batch of one through batch-norm
    steps_per_epoch = n_train // cfg.batch_size if drop_last else 1
    total = steps_per_epoch * cfg.epochs
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, warmup, cfg.schedule))

    def base_lr() -> float:  # the dense rate now (a group may be missing: an all-hashed MLP has no dense weights)
        return cfg.lr * lr_factor(sched.last_epoch, total, warmup, cfg.schedule)

    history: list[EpochMetrics] = []
    start_epoch = 0
    if ckpt is not None and ckpt.is_file():
        start_epoch, done = load_checkpoint(ckpt, be, model, opt, sched, gen)
        history = [EpochMetrics(**h) for h in done]
    show_bar = progress if progress is not None else sys.stderr.isatty()
    stopped = False
    compressed = as_compressed(model)
    forward, compile_note = None, "off"
    x_last = None  # a training batch, to time the teacher's forward on after training
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        model.train()
        loss_sum, correct, seen = torch.zeros((), device=device), torch.zeros((), dtype=torch.int64, device=device), 0
        watch = _DivergenceWatch(device, cfg.check_every)
        batches = data.train.batches(
            cfg.batch_size, shuffle=True, augment=True, generator=gen, device=device, drop_last=drop_last
        )
        if show_bar:
            from tqdm.auto import tqdm

            batches = tqdm(batches, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False)
        for i, (x, y) in enumerate(batches):
            step = epoch * steps_per_epoch + i
            compressed.set_progress(step / total)
            if channels_last and x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            if forward is None:
                forward, compile_note = _compile(model, cfg.compile, be, amp, x)
            with be.autocast(amp):
                out = forward(x)
                if teacher is None:
                    loss = F.cross_entropy(out.float(), y, label_smoothing=cfg.label_smoothing)
                else:
                    with torch.no_grad():
                        soft = teacher(x)  # (B, K) logits of the frozen teacher
                    loss = kd_loss(out.float(), soft.float(), y, cfg.distill, cfg.label_smoothing)
            watch.add(loss, epoch, i, base_lr())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            loss_sum += loss.detach() * len(y)
            correct += (out.argmax(1) == y).sum()
            seen += len(y)
            x_last = x
            be.step()  # XLA: this step's graph ends here (one compiled graph for every step)
        watch.check()
        if epoch == cfg.epochs - 1:
            compressed.set_progress(1.0)
            quantize(compressed)  # the precision stage (bits < 32): the last evaluations see the stored values
        val_acc, val_loss = evaluate(model, data.val, cfg.eval_batch_size, amp, channels_last)
        m = EpochMetrics(epoch + 1, float(loss_sum) / max(1, seen), int(correct) / max(1, seen), val_loss, val_acc,
                         base_lr(), time.perf_counter() - t0)
        history.append(m)
        msg = (f"epoch {m.epoch}/{cfg.epochs}  loss {m.train_loss:.4f}  train {m.train_acc:.4f}  "
               f"val {m.val_acc:.4f}  lr {m.lr:.3g}  {m.seconds:.1f}s")
        (log.info if not show_bar else log.debug)(msg)
        if show_bar:
            print(msg, file=sys.stderr)
        if ckpt is not None:
            save_checkpoint(ckpt, model, opt, sched, gen, be, epoch, [asdict(h) for h in history])
        if callback is not None:
            try:
                keep_going = callback(m)
            except StopTraining:
                keep_going = False
            if keep_going is False:
                stopped = epoch + 1 < cfg.epochs
                break
    quantize(compressed)  # stopped early: the test accuracy is the stored model's too
    test_acc, test_loss = evaluate(model, data.test, cfg.eval_batch_size, amp, channels_last)
    settings = {
        "device_name": be.name(),
        "amp": str(amp).removeprefix("torch.") if amp else "off",
        "channels_last": channels_last,
        "compile": compile_note,
        "deterministic": cfg.deterministic,
        "peak_memory_bytes": be.peak_memory(),
    }
    if teacher is not None and x_last is not None:  # the teacher's cost per step, timed apart from the loop (no per-step sync)
        settings["teacher_forward_s"] = teacher_forward_seconds(teacher, x_last, be, amp)
        settings["teacher_forward_total_s"] = settings["teacher_forward_s"] * steps_per_epoch * (len(history) - start_epoch)
    return TrainResult(history, test_acc, test_loss, max((h.val_acc for h in history), default=0.0), len(history),
                       stopped, time.perf_counter() - t_start, str(device), settings)
