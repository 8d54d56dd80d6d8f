"""The trainer's checkpoint: everything an interrupted run needs to continue as if it never stopped.

Model, optimizer and scheduler state, the data generator, and the global RNG states of
the training device (the CPU's, and CUDA's on a GPU) as the device layer keeps them.
Tensors load straight onto the training device (``map_location``); RNG states go back
as CPU uint8 tensors, the only kind ``set_rng_state`` takes (a GPU checkpoint loaded
with ``map_location="cuda"`` would otherwise hand it CUDA tensors).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .device import Backend

log = logging.getLogger(__name__)


def save_checkpoint(path: Path, model: nn.Module, opt, sched, gen: torch.Generator, be: Backend, epoch: int,
                    history: list[dict[str, Any]]) -> None:
    """Write the state after ``epoch`` (0-based) atomically: a kill mid-write leaves the previous checkpoint whole."""
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
             "generator": gen.get_state(), "rng": be.rng_state(), "epoch": epoch, "history": history}
    from ._atomic import atomic_path

    with atomic_path(path, fsync=False) as tmp:  # a checkpoint only saves time: no fsync on every epoch
        torch.save(state, tmp)


def load_checkpoint(
    path: Path, be: Backend, model: nn.Module, opt, sched, gen: torch.Generator
) -> tuple[int, list[dict[str, Any]]]:
    """Restore the state in ``path`` into the given objects; (first epoch to run, history so far).

    A checkpoint only saves time, so one that cannot be read (cut, corrupt, another format) or does not fit
    ``model`` (another architecture's tensors) is moved aside to ``<name>.unusable`` with a warning, nothing of it
    is applied, and training starts from the first epoch: (0, []).
    """
    try:
        # weights_only: never runs code from the file; tensors are only as large as the file's own records
        state = torch.load(path, map_location=be.device, weights_only=True)
        _check_fits(state, model, opt)
    except Exception as e:
        import os

        aside = path.with_name(path.name + ".unusable")
        os.replace(path, aside)
        log.warning("the checkpoint %s cannot be used (%s); moved to %s, training starts from the first epoch",
                    path, " ".join(str(e).split())[:300] or type(e).__name__, aside)
        return 0, []
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    gen.set_state(state["generator"].cpu())
    be.set_rng_state(
        state["rng"] if "rng" in state else {"cpu": state["torch_rng"]}
    )  # torch_rng: checkpoints before the device layer
    log.info("resumed from %s after epoch %d", path, int(state["epoch"]) + 1)
    return int(state["epoch"]) + 1, state["history"]


def _check_fits(state: Any, model: nn.Module, opt: Any = None) -> None:
    """Raise ValueError unless ``state`` is a checkpoint of ``model`` trained by ``opt``'s parameter groups
    (checked before any of it is applied)."""
    keys = ("model", "optimizer", "scheduler", "generator", "epoch", "history")
    if not isinstance(state, dict) or any(k not in state for k in keys) or ("rng" not in state and "torch_rng" not in state):
        raise ValueError(f"not a trainer checkpoint (a mapping with {', '.join(keys)} and rng)")
    if (
        isinstance(state["epoch"], bool)
        or not isinstance(state["epoch"], int)
        or state["epoch"] < 0
        or not isinstance(state["history"], list)
    ):
        raise ValueError("its epoch or history is not what the trainer writes")
    own = model.state_dict()
    saved = state["model"]
    if not isinstance(saved, dict) or saved.keys() != own.keys():
        raise ValueError("its model tensors are not this model's")
    wrong = next((k for k, v in own.items() if not isinstance(saved[k], torch.Tensor) or saved[k].shape != v.shape), None)
    if wrong is not None:
        raise ValueError(f"its {wrong} does not have this model's shape {tuple(own[wrong].shape)}")
    if opt is not None:  # groups and rates follow the method's rules: a checkpoint from other rules is another run
        groups = state["optimizer"].get("param_groups") if isinstance(state["optimizer"], dict) else None
        shape = lambda gs: [(len(g["params"]), g.get("initial_lr", g.get("lr"))) for g in gs]  # noqa: E731
        if not isinstance(groups, list) or shape(groups) != shape(opt.param_groups):
            raise ValueError("its optimizer's parameter groups (their sizes and learning rates) are not this run's")
