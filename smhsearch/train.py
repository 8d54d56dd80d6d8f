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
- On CUDA: bf16 autocast and channels_last by default; small datasets live on the GPU
  and are augmented there (see ``smhsearch.data``).
- Deterministic seeds; a per-epoch callback (validation accuracy and loss, time) that
  can stop training (the search's early stopping); checkpoint and resume that
  reproduce the uninterrupted run; a NaN or infinite loss raises TrainingDiverged.
- Compressed models are told their progress every step (``set_progress``), which drives
  gradual pruning.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .data import DatasetSplits
from .data._splits import Split
from .methods._base import CompressedModel
from .methods._rates import param_groups as fair_param_groups

log = logging.getLogger(__name__)

Optimizer = Literal["sgd", "adamw"]
Schedule = Literal["cosine", "onecycle", "constant"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class StopTraining(Exception):
    """Raise from an epoch callback to stop training early (as returning False does)."""


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Every field is checked; the message states the rule and the value."""

    epochs: int = 10
    batch_size: int = 128
    optimizer: Optimizer = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: Schedule = "cosine"
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    variable_lr_mult: float = 1.0
    grad_clip: float | None = None
    amp: Literal["auto", "bf16", "off"] = "auto"
    channels_last: bool | None = None
    eval_batch_size: int = 1024
    seed: int = 0

    def __post_init__(self) -> None:
        def need(ok: bool, rule: str, **values: Any) -> None:
            if not ok:
                got = ", ".join(f"{k}={v!r}" for k, v in values.items())
                raise ValueError(f"{rule} must hold, but got ({got})")

        need(isinstance(self.epochs, int) and self.epochs >= 1, "epochs >= 1", epochs=self.epochs)
        need(isinstance(self.batch_size, int) and self.batch_size >= 1, "batch_size >= 1", batch_size=self.batch_size)
        need(self.optimizer in ("sgd", "adamw"), "optimizer in ('sgd', 'adamw')", optimizer=self.optimizer)
        need(self.schedule in ("cosine", "onecycle", "constant"), "schedule in ('cosine', 'onecycle', 'constant')", schedule=self.schedule)
        need(self.lr > 0, "lr > 0", lr=self.lr)
        need(0 <= self.momentum < 1, "0 <= momentum < 1", momentum=self.momentum)
        need(self.weight_decay >= 0, "weight_decay >= 0", weight_decay=self.weight_decay)
        need(0 <= self.warmup_epochs < self.epochs, "0 <= warmup_epochs < epochs", warmup_epochs=self.warmup_epochs, epochs=self.epochs)
        need(0 <= self.label_smoothing < 1, "0 <= label_smoothing < 1", label_smoothing=self.label_smoothing)
        need(self.variable_lr_mult > 0, "variable_lr_mult > 0", variable_lr_mult=self.variable_lr_mult)
        need(self.grad_clip is None or self.grad_clip > 0, "grad_clip is None or > 0", grad_clip=self.grad_clip)
        need(self.amp in ("auto", "bf16", "off"), "amp in ('auto', 'bf16', 'off')", amp=self.amp)
        need(isinstance(self.seed, int) and self.seed >= 0, "seed >= 0", seed=self.seed)


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
    extra: dict[str, Any] = field(default_factory=dict)

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


def _device(device: str | torch.device | None) -> torch.device:
    return torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, batch_size: int = 1024, device: str | torch.device | None = None,
             amp_dtype: torch.dtype | None = None) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``model`` on ``split``, in eval mode."""
    device = _device(device)
    was_training = model.training
    model.eval()
    correct, loss_sum, n = 0, 0.0, 0
    with torch.autocast(device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
        for x, y in split.batches(batch_size, device=device):
            out = model(x).float()
            loss_sum += float(F.cross_entropy(out, y, reduction="sum"))
            correct += int((out.argmax(1) == y).sum())
            n += len(y)
    model.train(was_training)
    return correct / max(1, n), loss_sum / max(1, n)


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a kill mid-write leaves the previous checkpoint whole


def train(
    model: nn.Module,
    data: DatasetSplits,
    cfg: TrainConfig = TrainConfig(),
    *,
    device: str | torch.device | None = None,
    callback: Callable[[EpochMetrics], bool | None] | None = None,
    checkpoint: str | os.PathLike | None = None,
    progress: bool | None = None,
) -> TrainResult:
    """Train ``model`` on ``data`` as ``cfg`` says; evaluate on validation each epoch and on test at the end.

    ``callback(metrics)`` runs after every epoch; returning ``False`` (or raising
    :class:`StopTraining`) stops. With ``checkpoint``, the state is saved after every
    epoch and, if the file exists, training resumes from it.

    >>> import smhsearch
    >>> from smhsearch.data import load_dataset
    >>> data = load_dataset("synthetic", n=64, size=8)
    >>> r = train(smhsearch.create_model("resnet8", widths=(4, 4, 4)), data, TrainConfig(epochs=1, batch_size=32), progress=False)
    >>> r.epochs_run
    1
    """
    device = _device(device)
    t_start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    amp = torch.bfloat16 if cfg.amp == "bf16" or (cfg.amp == "auto" and device.type == "cuda") else None
    model.to(device)
    if cfg.channels_last if cfg.channels_last is not None else device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    groups = param_groups(model, cfg)
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)
    else:
        opt = torch.optim.AdamW(groups, lr=cfg.lr)
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
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if ckpt is not None and ckpt.is_file():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch = int(state["epoch"]) + 1
        history = [EpochMetrics(**h) for h in state["history"]]
        log.info("resumed from %s after epoch %d", ckpt, start_epoch)
    show_bar = progress if progress is not None else sys.stderr.isatty()
    stopped = False
    compressed = model if isinstance(model, CompressedModel) else None
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        model.train()
        loss_sum, correct, seen = torch.zeros((), device=device), torch.zeros((), device=device), 0
        batches = data.train.batches(cfg.batch_size, shuffle=True, augment=True, generator=gen, device=device, drop_last=drop_last)
        if show_bar:
            from tqdm.auto import tqdm

            batches = tqdm(batches, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False)
        for i, (x, y) in enumerate(batches):
            step = epoch * steps_per_epoch + i
            if compressed is not None:
                compressed.set_progress(step / total)
            if x.ndim == 4 and device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
                out = model(x)
                loss = F.cross_entropy(out.float(), y, label_smoothing=cfg.label_smoothing)
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"loss became {float(loss.detach())} at epoch {epoch + 1}, step {i + 1} "
                                       f"(lr={base_lr():.3g}); lower the learning rate or add warm-up")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            loss_sum += loss.detach() * len(y)
            correct += (out.argmax(1) == y).sum()
            seen += len(y)
        if compressed is not None and epoch == cfg.epochs - 1:
            compressed.set_progress(1.0)
        val_acc, val_loss = evaluate(model, data.val, cfg.eval_batch_size, device, amp)
        m = EpochMetrics(epoch + 1, float(loss_sum) / max(1, seen), float(correct) / max(1, seen), val_loss, val_acc,
                         base_lr(), time.perf_counter() - t0)
        history.append(m)
        msg = (f"epoch {m.epoch}/{cfg.epochs}  loss {m.train_loss:.4f}  train {m.train_acc:.4f}  "
               f"val {m.val_acc:.4f}  lr {m.lr:.3g}  {m.seconds:.1f}s")
        (log.info if not show_bar else log.debug)(msg)
        if show_bar:
            print(msg, file=sys.stderr)
        if ckpt is not None:
            _save_checkpoint(ckpt, {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                                    "generator": gen.get_state(), "torch_rng": torch.get_rng_state(), "epoch": epoch,
                                    "history": [asdict(h) for h in history]})
        if callback is not None:
            try:
                keep_going = callback(m)
            except StopTraining:
                keep_going = False
            if keep_going is False:
                stopped = epoch + 1 < cfg.epochs
                break
    test_acc, test_loss = evaluate(model, data.test, cfg.eval_batch_size, device, amp)
    return TrainResult(history, test_acc, test_loss, max((h.val_acc for h in history), default=0.0), len(history),
                       stopped, time.perf_counter() - t_start, str(device))
