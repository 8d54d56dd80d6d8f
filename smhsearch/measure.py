"""Sizes, FLOPs, throughput and bytes, each computed one way and documented here.

- ``stored_parameters``: trainable parameters the model stores (what a budget limits):
  for SMH, 2nM + learnable scales + every unhashed parameter. Buffers (batch-norm
  running statistics, fixed scales) are not parameters and are not counted.
- ``virtual_parameters``: the weights the model computes with, i.e. the parameter
  count of the materialised dense model.
- ``flops``: fvcore's count on the materialised dense model for one sample, where one
  fused multiply-add counts as one flop (fvcore's rule: it reports MACs). This is what
  deployment costs; SMH's training-time matmul is reported apart (``describe()``).
- ``throughput``: samples per second, the median over timed repeats after warm-up.
- ``file_bytes``: bytes on disk (a compressed model's compact file: ``export.compact_bytes``).
"""

from __future__ import annotations

import copy
import logging
import os
import statistics
import time
from pathlib import Path
from typing import Literal, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._fvcore import count_flops
from .methods._base import CompressedModel, trainable_count

log = logging.getLogger(__name__)


def stored_parameters(model: nn.Module) -> int:
    """Stored trainable parameters of ``model`` (compressed or plain)."""
    if isinstance(model, CompressedModel):
        return model.stored_count()
    return trainable_count(model)


def final_stored_parameters(model: nn.Module) -> int:
    """Stored trainable parameters once training is done (a pruned model at its budget):
    what a search compares before any training."""
    if isinstance(model, CompressedModel):
        return model.final_stored_count()
    return trainable_count(model)


def virtual_parameters(model: nn.Module) -> int:
    """Parameters of the dense model ``model`` computes with."""
    if isinstance(model, CompressedModel):
        return model.virtual_count()
    return sum(p.numel() for p in model.parameters())


def flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-adds of one forward pass on one sample of shape ``input_shape`` (C, H, W).

    >>> from smhsearch.models import create_model
    >>> flops(create_model("mlp_1x1000"), (1, 28, 28))
    794000
    """
    dense = model.materialize() if isinstance(model, CompressedModel) else model
    return count_flops(dense, input_shape)


class Throughput(NamedTuple):
    samples_per_s: float
    """batch_size / median step time."""
    step_s: float
    """Median seconds per step."""
    steps_s: list[float]
    """Every timed step, seconds."""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def throughput(
    model: nn.Module,
    input_shape: Sequence[int],
    batch_size: int = 32,
    mode: Literal["train", "infer"] = "infer",
    device: str | torch.device = "cpu",
    warmup: int = 3,
    repeats: int = 10,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    num_classes: int | None = None,
) -> Throughput:
    """Samples per second of a training step or an inference forward, median of ``repeats``.

    A training step is forward, cross-entropy, backward and an SGD-with-momentum step,
    on a copy of ``model`` (the caller's model is not changed). Inference runs in eval
    mode under ``torch.inference_mode``. ``amp_dtype`` (e.g. ``torch.bfloat16``) runs
    under autocast.
    """
    if mode not in ("train", "infer"):
        raise ValueError(f"mode must be 'train' or 'infer', but got {mode!r}")
    if batch_size < 1 or repeats < 1 or warmup < 0:
        raise ValueError(f"batch_size and repeats must be >= 1 and warmup >= 0, but got {batch_size}, {repeats}, {warmup}")
    device = torch.device(device)
    m = copy.deepcopy(model).to(device)
    memory_format = torch.channels_last if channels_last and len(input_shape) == 3 else torch.contiguous_format
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
    x = torch.randn(batch_size, *input_shape, device=device).contiguous(memory_format=memory_format)
    autocast = torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None)

    if mode == "train":
        m.train()
        with torch.no_grad(), autocast:
            classes = num_classes or m(x[:2]).shape[-1]
        y = torch.randint(0, classes, (batch_size,), device=device)
        opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            with autocast:
                loss = F.cross_entropy(m(x), y)
            loss.backward()
            opt.step()
    else:
        m.eval()

        def step() -> None:
            with torch.inference_mode(), autocast:
                m(x)

    for _ in range(warmup):
        step()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return Throughput(batch_size / med, med, times)


def file_bytes(path: str | os.PathLike) -> int:
    """Size of a file on disk, in bytes."""
    return Path(path).stat().st_size
