"""``TrainConfig.compile``: whether the training loop runs its model through ``torch.compile``, decided per trial.

``auto`` compiles on CUDA only, and keeps the compiled forward only where a self-check on
the first batch passes (compiled eval outputs equal eager ones to bf16 tolerance, a training
step compiles) and a training step through it measures at least :data:`COMPILE_GAIN` faster
than an eager one, on the trial's own model, batch and device. ``on`` forces it; ``off``
never compiles. The decision and both step times are recorded in the trial's settings.
"""

from __future__ import annotations

import logging
from typing import Callable

import torch
from torch import nn

from .device import Backend

log = logging.getLogger(__name__)


def compile_forward(model: nn.Module, mode: str, be: Backend, amp: torch.dtype | None, x: torch.Tensor) -> tuple[Callable, str]:
    """The forward the training loop calls and what was decided: "on ...", "off", or "off: why".

    ``auto`` compiles on CUDA only (on the CPU, compiling costs minutes and the loop is
    not the bottleneck), and keeps the compiled forward only when :func:`_self_check` passes
    on the first batch *and* a training step through it measured faster than an eager one
    (by at least :data:`COMPILE_GAIN`): on by default only where it is faster, measured on
    this model, batch and device.
    """
    if mode == "off" or (mode == "auto" and be.device.type != "cuda"):
        return model, "off"
    compiled = torch.compile(model)
    if mode == "on":
        return compiled, "on"
    note = _self_check(model, compiled, be, amp, x, timed=True)
    if not note.startswith("on"):
        log.warning("torch.compile %s; training eagerly", note)
    return (compiled if note.startswith("on") else model), note


COMPILE_GAIN = 0.05
"""``compile: auto`` keeps the compiled step when it is at least this much faster than the eager one."""


def _step_seconds(forward: Callable, be: Backend, amp: torch.dtype | None, x: torch.Tensor, repeats: int = 5) -> float:
    """Median seconds of a training forward and backward through ``forward`` (gradients accumulate: the caller resets)."""
    def step() -> None:
        with be.autocast(amp):
            forward(x).float().sum().backward()

    return be.median_seconds(step, warmup=2, repeats=repeats)


def _self_check(model: nn.Module, compiled: Callable, be: Backend, amp: torch.dtype | None, x: torch.Tensor,
                timed: bool = False) -> str:
    """"on" when ``compiled`` gives ``model``'s eval outputs (to bf16 tolerance) and a training forward and backward
    of it run; else "off: why". ``timed``: also time a training step each way, and say "on (compiled a ms, eager
    b ms a step)" only where compiled is :data:`COMPILE_GAIN` faster, else "off: not faster (...)". Leaves no trace:
    buffers, gradients and RNG states are restored."""
    buffers = {k: b.clone() for k, b in model.named_buffers()}
    rng, was_training = be.rng_state(), model.training
    try:
        model.eval()
        with torch.no_grad(), be.autocast(amp):
            ref, got = model(x).float(), compiled(x).float()
        model.train()
        with be.autocast(amp):
            compiled(x).float().sum().backward()  # the training graph compiles here (and is kept) or fails
        same = torch.allclose(got, ref, rtol=2e-2, atol=2e-2 * (1.0 + float(ref.abs().max())))
        if not same:
            return "off: compiled outputs differ from eager ones"
        if not timed:
            return "on"
        fast, slow = _step_seconds(compiled, be, amp, x), _step_seconds(model, be, amp, x)
        times = f"compiled {1e3 * fast:.2f} ms, eager {1e3 * slow:.2f} ms a step"
        return f"on ({times})" if fast <= (1 - COMPILE_GAIN) * slow else f"off: not faster ({times})"
    except Exception as e:  # any compiler failure means training eagerly
        return f"off: {type(e).__name__}: {str(e)[:160]}"
    finally:
        model.train(was_training)
        with torch.no_grad():
            for p in model.parameters():
                p.grad = None
            for k, b in model.named_buffers():
                b.copy_(buffers[k])
        be.set_rng_state(rng)
