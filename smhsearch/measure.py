"""Sizes, FLOPs, throughput and bytes, each computed one way and documented here.

- ``stored_parameters``: trainable parameters the model stores (what a budget limits):
  for SMH, 2nM + learnable scales + every unhashed parameter. Buffers (batch-norm
  running statistics, fixed scales) are not parameters and are not counted.
- ``virtual_parameters``: the weights the model computes with, i.e. the parameter
  count of the materialised dense model.
- ``flops``: fvcore's count on the materialised dense model for one sample, where one
  fused multiply-add counts as one flop (fvcore's rule: it reports MACs). This is what
  deployment costs; SMH's training-time matmul is reported apart (``describe()``).
- ``throughput``: samples per second on a named device, the median step time timed by the
  protocol of every speed figure (:mod:`smhsearch._timing`) or over a given count of repeats
  after warm-up, and the latency of one sample alone (batch 1) beside it.
- ``file_bytes``: bytes on disk (a compressed model's compact file: ``export.compact_bytes``).
- ``stored_bytes``: bytes of the file the model ships as: a compressed model's compact file (its
  quantised tensors as packed codes below 32 bits), a dense model's safetensors file; written by the
  one writer and measured, never estimated.
"""

from __future__ import annotations

import copy
import logging
import os
import statistics
from pathlib import Path
from typing import Callable, Literal, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._fvcore import count_flops
from ._timing import timed_rounds
from .device import Backend, backend, resolve_device
from .methods import as_compressed

log = logging.getLogger(__name__)


def stored_parameters(model: nn.Module) -> int:
    """Stored trainable parameters of ``model`` (compressed or plain)."""
    return as_compressed(model).stored_count()


def final_stored_parameters(model: nn.Module) -> int:
    """Stored trainable parameters once training is done (a pruned model at its budget):
    what a search compares before any training."""
    return as_compressed(model).final_stored_count()


def virtual_parameters(model: nn.Module) -> int:
    """Parameters of the dense model ``model`` computes with."""
    return as_compressed(model).virtual_count()


def flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-adds of one forward pass on one sample of shape ``input_shape`` (C, H, W).

    >>> from smhsearch.models import create_model
    >>> flops(create_model("mlp_1x1000"), (1, 28, 28))
    794000
    """
    return count_flops(as_compressed(model).materialize(), input_shape)


class Throughput(NamedTuple):
    samples_per_s: float
    """batch_size / median step time."""
    step_s: float
    """Median seconds per step."""
    steps_s: list[float]
    """Every timed step, seconds."""
    latency_s: float | None = None
    """Median seconds of one batch-1 inference (infer mode), None when not measured."""
    device: str = ""
    """What was measured on: the GPU's name, or the CPU model and thread count."""


def throughput(
    model: nn.Module,
    input_shape: Sequence[int],
    batch_size: int = 32,
    mode: Literal["train", "infer"] = "infer",
    device: str | torch.device = "cpu",
    warmup: int = 3,
    repeats: int | None = None,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    num_classes: int | None = None,
    latency: bool | None = None,
) -> Throughput:
    """Samples per second of a training step or an inference forward on ``device``: the median step time.

    Steps are timed by the protocol of every speed figure (:func:`smhsearch._timing.timed_rounds`:
    rounds until the spread is small, ``warmup`` steps before the first), or, given ``repeats``,
    exactly that many after ``warmup`` (for a caller that interleaves rounds of several models).

    A training step is forward, cross-entropy, backward and an SGD-with-momentum step,
    on a copy of ``model`` (the caller's model is not changed). Inference runs in eval
    mode under ``torch.inference_mode`` (``no_grad`` on XLA). ``amp_dtype`` (e.g. ``torch.bfloat16``) runs
    under autocast. Steps are timed by :mod:`smhsearch.device` (CUDA events on a GPU).
    ``latency`` (default: in infer mode) also times one sample alone, what a deployed
    model answering one request costs.

    >>> from smhsearch.models import create_model
    >>> t = throughput(create_model("mlp_1x1000"), (1, 28, 28), batch_size=8, warmup=1, repeats=2)
    >>> t.samples_per_s > 0 and t.latency_s > 0 and "threads" in t.device
    True
    """
    if mode not in ("train", "infer"):
        raise ValueError(f"mode must be 'train' or 'infer', but got {mode!r}")
    if batch_size < 1 or (repeats is not None and repeats < 1) or warmup < 0:
        raise ValueError(f"batch_size and repeats must be >= 1 and warmup >= 0, but got {batch_size}, {repeats}, {warmup}")
    be = backend(resolve_device(device, flag="device"))
    if amp_dtype is torch.bfloat16 and not be.bf16_supported():
        raise ValueError(f"amp_dtype=torch.bfloat16, but {be.device} ({be.name()}) does not run bfloat16")
    m = copy.deepcopy(model).to(be.device)
    memory_format = torch.channels_last if channels_last and len(input_shape) == 3 else torch.contiguous_format
    as_compressed(m).set_memory_format(memory_format)  # a plain module's own weights, a compressed model's computed ones too
    x = torch.randn(batch_size, *input_shape, device=be.device).contiguous(memory_format=memory_format)
    step = _train_step(m, x, be, amp_dtype, num_classes) if mode == "train" else _infer_step(m, x, be, amp_dtype)

    def timed(fn: Callable[[], None]) -> list[float]:
        if repeats is not None:
            return be.time_steps(fn, warmup, repeats)
        return timed_rounds(lambda w, r: be.time_steps(fn, w, r), warmup=warmup)

    times = timed(step)
    med = statistics.median(times)
    lat = None
    if latency if latency is not None else mode == "infer":
        m.eval()
        lat = statistics.median(timed(_infer_step(m, x[:1].clone(memory_format=memory_format), be, amp_dtype)))
    return Throughput(batch_size / med, med, times, lat, be.name())


def _train_step(
    m: nn.Module, x: torch.Tensor, be: Backend, amp: torch.dtype | None, num_classes: int | None
) -> Callable[[], None]:
    m.train()
    with torch.no_grad(), be.autocast(amp):
        classes = num_classes or m(x[:2]).shape[-1]
    y = torch.randint(0, classes, (len(x),), device=x.device)
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with be.autocast(amp):
            loss = F.cross_entropy(m(x), y)
        loss.backward()
        opt.step()

    return step


def _infer_step(m: nn.Module, x: torch.Tensor, be: Backend, amp: torch.dtype | None) -> Callable[[], None]:
    m.eval()

    def step() -> None:
        with be.inference(), be.autocast(amp):
            m(x)

    return step


def file_bytes(path: str | os.PathLike) -> int:
    """Size of a file on disk, in bytes."""
    return Path(path).stat().st_size


def stored_bytes(model: nn.Module) -> int:
    """Bytes of the file ``model`` ships as (module docstring), measured on a written file.

    >>> import smhsearch
    >>> base = smhsearch.create_model("mlp", hidden=[64])
    >>> m8 = smhsearch.compress(base, smhsearch.SMH(budget="30%", bits=8))
    >>> stored_bytes(m8) < stored_bytes(smhsearch.compress(base, smhsearch.SMH(budget="30%"))) / 2
    True
    """
    import tempfile

    from .export import compact_bytes, save_dense

    if not as_compressed(model).config.uncompressed:
        return compact_bytes(model)
    with tempfile.TemporaryDirectory() as d:  # the dense model at 32 bits: its dense safetensors file, by its one writer
        return file_bytes(save_dense(model, Path(d) / "model.safetensors"))
