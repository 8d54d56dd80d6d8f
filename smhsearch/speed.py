"""Inference speed measured apart from training, once per deployed architecture.

A speed figure measured while other trials train on the same cores is noise (identical
ResNet-8s measured that way differed by 30-58%). So a search measures speed in a
*measurement phase*:

- **What**: the deployed model (a compressed model's ``materialize()``, the plain dense
  model export ships), at batch N for throughput and batch 1 for latency, on the device
  the trial trains on, with its autocast dtype and memory format.
- **Once**: the result is cached in the run folder (``speed/<key>.json``) under a key of
  the deployed architecture's signature (its module tree and every tensor's name and
  shape), the input shape, batch size, host, device and dtype. Dense, SMH and HashedNets
  trials of one ResNet-8 deploy the same network and share one figure.
- **Alone**: a file lock per host and device (``speed/locks/<host>-<device>/``, the
  ``filelock`` package). Every training trial of the run holds its own lock file while an
  epoch runs and passes a shared *gate* before each epoch; the measurer takes the gate
  (so no epoch starts), then every trial's lock (so it waits until each running epoch has
  ended), measures, and lets them go. No other trial of the run trains on that device
  while a measurement runs; they pause at their next epoch boundary.
- **Stable**: timed by the protocol of every speed figure (:mod:`smhsearch._timing`):
  rounds of steps until the relative spread of step times (interquartile range / median)
  is at most ``max_spread`` or a cap of steps is reached; the figure is the median,
  recorded with its spread.

Measuring before training (not after) keeps ``search.min_throughput`` able to refuse a
model before it costs any training, and gives the throughput objective to the study.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from ._keys import json_key
from ._timing import MAX_SPREAD, MAX_STEPS, StepTimer, speed_figures

log = logging.getLogger(__name__)

BATCH = 64


def deployed(model: nn.Module) -> nn.Module:
    """What is shipped and timed: a compressed model materialised to its plain dense network."""
    from .methods import as_compressed

    return as_compressed(model).materialize()


def signature(model: nn.Module) -> str:
    """The architecture of a (deployed) model: its module tree and each tensor's name and shape, hashed."""
    shapes = [(k, tuple(v.shape), str(v.dtype)) for k, v in model.state_dict().items()]
    return json_key([repr(model), shapes])


def device_key(device: torch.device) -> str:
    """One physical device: the host and the CPU, or the GPU's UUID (CUDA_VISIBLE_DEVICES renumbers indices)."""
    if device.type == "cuda":
        return f"{socket.gethostname()}-cuda-{torch.cuda.get_device_properties(device).uuid}"
    if device.type == "xla":  # Ray gives each TPU trial its own chips: those are its device
        chips = os.environ.get("TPU_VISIBLE_CHIPS")
        return f"{socket.gethostname()}-xla" + (f"-chips{chips.replace(',', '_')}" if chips else "")
    return f"{socket.gethostname()}-{device.type}"


def measure_speed(model: nn.Module, input_shape: Sequence[int], device: torch.device, batch_size: int = BATCH,
                  max_spread: float = MAX_SPREAD, max_steps: int = MAX_STEPS) -> dict[str, Any]:
    """Throughput (batch ``batch_size``) and latency (batch 1) of ``model`` as deployed on ``device``, timed in rounds
    until the spread of step times is at most ``max_spread`` (or ``max_steps`` steps).

    >>> from smhsearch.models import create_model
    >>> s = measure_speed(create_model("mlp_1x1000"), (1, 28, 28), torch.device("cpu"), batch_size=8, max_steps=20)
    >>> s["throughput"] > 0 and s["latency_s"] > 0 and s["steps"] <= 20
    True
    """
    from .device import backend, device_name
    from .measure import throughput

    be = backend(device)
    amp, channels_last = be.autocast_dtype("auto"), device.type == "cuda"
    net = deployed(model)

    def timer(batch: int) -> StepTimer:
        return lambda warmup, repeats: (
            throughput(
                net,
                input_shape,
                batch_size=batch,
                device=device,
                warmup=warmup,
                repeats=repeats,
                amp_dtype=amp,
                channels_last=channels_last,
                latency=False,
            ).steps_s
        )

    return {
        **speed_figures(timer, batch_size, max_spread, max_steps),
        "device": device_name(device),
        "dtype": str(amp or torch.float32),
    }


class SpeedPhase:
    """A run's measurement phase on one device: the lock that keeps measurement apart from training, and the cache.

    A trial calls :meth:`measure` once (cached), and :meth:`training` around its epochs
    (``acquire_epoch`` / ``release_epoch`` at each boundary)."""

    def __init__(self, run_dir: str | Path, device: torch.device, trial: int, max_steps: int = MAX_STEPS) -> None:
        from filelock import FileLock

        self.device, self.trial, self.max_steps = device, trial, max_steps
        from ._layout import RunLayout

        self.folder = RunLayout(Path(run_dir)).speed
        self.locks = self.folder / "locks" / device_key(device)
        self.locks.mkdir(parents=True, exist_ok=True)
        self.gate = FileLock(str(self.locks / "gate.lock"))
        self.own = FileLock(str(self.locks / f"train-{trial:05d}.lock"))

    def key(self, net: nn.Module, input_shape: Sequence[int], batch_size: int) -> str:
        from .device import backend, device_name

        return json_key([signature(net), list(input_shape), batch_size, device_key(self.device), device_name(self.device),
                         str(backend(self.device).autocast_dtype("auto"))], n=20)

    @contextlib.contextmanager
    def alone(self) -> Iterator[float]:
        """Hold the device: no epoch of another trial of the run starts or runs meanwhile. Yields seconds waited."""
        from filelock import FileLock

        t0 = time.perf_counter()
        with self.gate:
            others = [
                FileLock(str(p)) for p in sorted(self.locks.glob("train-*.lock")) if p.name != Path(self.own.lock_file).name
            ]
            with contextlib.ExitStack() as stack:
                for lock in others:
                    stack.enter_context(lock)
                yield time.perf_counter() - t0

    def measure(self, model: nn.Module, input_shape: Sequence[int], batch_size: int = BATCH) -> dict[str, Any]:
        """The cached figure of ``model``'s deployed architecture, or a new one measured alone on the device."""
        from ._atomic import write_record

        net = deployed(model)
        path = self.folder / f"{self.key(net, input_shape, batch_size)}.json"
        if path.is_file():
            return {**json.loads(path.read_text()), "cached": True}
        with self.alone() as waited:
            if path.is_file():  # measured by another trial while this one waited
                return {**json.loads(path.read_text()), "cached": True}
            result = {
                **measure_speed(net, input_shape, self.device, batch_size, max_steps=self.max_steps),
                "architecture": signature(net),
                "input_shape": list(input_shape),
                "measured_by_trial": self.trial,
                "waited_s": round(waited, 2),
            }
            write_record(path, result)
        log.info("trial %d: measured %.1f samples/s (spread %.1f%%) after waiting %.1fs for the device", self.trial,
                 result["throughput"], 100 * result["throughput_spread"], waited)
        return {**result, "cached": False}

    def acquire_epoch(self) -> None:
        """Before an epoch: wait for any measurement in progress, then mark this trial as training."""
        with self.gate:
            self.own.acquire()

    def release_epoch(self) -> None:
        if self.own.is_locked:
            self.own.release(force=True)
