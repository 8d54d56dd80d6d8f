"""Helpers the benchmark scripts share: naming the device and writing results."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch

from smhsearch.device import CHOICES, device_name, resolve_device

RESULTS = Path(__file__).resolve().parent / "results"


def add_device_argument(p: argparse.ArgumentParser, default: str = "cpu") -> None:
    """Every benchmark names the device it measures: results are filed under it."""
    p.add_argument("--device", default=default, help=f"{CHOICES} (default: {default}); results are named after it")


def parse_device(request: str) -> torch.device:
    """``--device`` resolved by smhsearch's device layer; an unavailable one exits with status 2 and says why."""
    try:
        return resolve_device(request, flag="--device")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def device_slug(device: torch.device) -> str:
    """The results-file suffix: ``cpu``, ``cuda-<gpu name>`` or ``xla``."""
    if device.type == "cuda":
        return "cuda-" + re.sub(r"[^a-z0-9]+", "-", device_name(device).lower()).strip("-")
    return device.type


def environment(device: torch.device) -> dict[str, Any]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=RESULTS.parent
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "device": device_name(device),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "commit": commit,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def rate_fingerprint(build: Callable[[], torch.nn.Module], optimizer: str) -> dict[str, float | str]:
    """The learning-rate multipliers the model ``build()`` returns derives, per parameter group, to 3
    significant digits, and the rules its backward applies (``training_form``). A benchmark stores it
    with every run and reuses a run only when it matches: a change of a method's rule trains that
    method's runs again, and only its. The model is built under seed 0: the rates read the init's stds,
    and the third digit can move with the draw."""
    from smhsearch.methods import param_groups

    torch.manual_seed(0)
    model = build()
    rates: dict[str, float | str] = {g["name"]: float(f"{g['lr_mult']:.3g}") for g in param_groups(model, 1.0, 0.0, optimizer)
                                     if g["lr_mult"] != 1.0}
    return rates | (model.training_form() if hasattr(model, "training_form") else {})


def recorded_environment(device: torch.device, kept: dict[str, Any] | None = None) -> dict[str, Any]:
    """The machine, versions, commit and date a results file records: this run's, or, for a run that
    trained nothing and only reused ``kept`` (the results file as it was), the ones already there."""
    env = environment(device)
    return env | {k: kept[k] for k in env if k in kept} if kept else env


def write_result(name: str, device: torch.device, payload: dict[str, Any], kept: dict[str, Any] | None = None) -> Path:
    """``results/NAME-<device>.json``; ``kept``: the file's previous contents when this run trained nothing."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{device_slug(device)}.json"
    path.write_text(json.dumps({**recorded_environment(device, kept), **payload}, indent=2) + "\n")
    return path


def write_or_say(name: str, device: torch.device, payload: dict[str, Any], md: list[str], smoke: bool) -> None:
    """Print the table; write ``results/NAME-<device>.json`` and its ``.md``, unless this is a smoke run
    (which writes nothing)."""
    print("\n".join(md))
    if smoke:
        print(f"smoke: nothing written (the full run writes {RESULTS}/{name}-{device_slug(device)}.json)")
        return
    path = write_result(name, device, payload)
    path.with_suffix(".md").write_text("\n".join(md) + "\n")
    print(f"wrote {path} and {path.with_suffix('.md')}", file=sys.stderr)
