"""What every benchmark that trains cells shares: where the data is, which cells a results file already
holds, running the rest on a process pool, and writing the file back.

A cell is one training (a method, budget, multiplier, seed...). A results file keeps its finished cells
with what they depend on (the protocol, the learning-rate multipliers the method derives), so a rerun
trains only the cells that are missing or whose dependencies changed, and a rerun that finds every cell
stored trains nothing and leaves the file's figures, machine, commit and date as they were.

Data that is not part of the package (MNIST, CIFAR-10) lives in ``../shared/data`` beside the checkout,
or in the folder ``$SMHSEARCH_DATA`` names; a script whose data is missing exits with status 2, saying
where it looked, before any worker starts.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import torch

from _common import RESULTS, device_slug, write_result  # type: ignore[import-not-found]

C = TypeVar("C")
R = TypeVar("R")

REPO = Path(__file__).resolve().parents[1]
DATA_ENV = "SMHSEARCH_DATA"


def data_root() -> Path:
    """The folder of the data sets that do not ship with the package: ``$SMHSEARCH_DATA``, else ``../shared/data``."""
    return Path(os.environ[DATA_ENV]) if os.environ.get(DATA_ENV) else REPO.parent / "shared" / "data"


def data_dir(name: str) -> Path:
    """``<data root>/name`` (``mnist``, ``cifar10``), whether or not it exists."""
    return data_root() / name


def missing_data(what: str, where: Path, hint: str = "") -> NoReturn:
    """Say where ``what`` was looked for and exit with status 2 (nothing written)."""
    print(f"error: {what} not found at {where} (set {DATA_ENV} to the folder holding {where.name}/, "
          f"or put it at {REPO.parent / 'shared' / 'data' / where.name})" + (f"; {hint}" if hint else ""), file=sys.stderr)
    raise SystemExit(2)


def need_dir(what: str, where: Path, hint: str = "") -> Path:
    """``where`` itself, or exit 2 saying where ``what`` was looked for."""
    if not where.is_dir():
        missing_data(what, where, hint)
    return where


def joined_key(cell: Mapping[str, Any], fields: Iterable[str]) -> str:
    """A cell's key in a results file: its ``fields`` joined by ``|`` (``str`` of each value)."""
    return "|".join(str(cell[k]) for k in fields)


def split(plan: Iterable[C], stored: Mapping[Hashable, dict], key: Callable[[C], Hashable],
          same: Callable[[dict, C], bool]) -> tuple[dict[Hashable, dict], list[C]]:
    """The planned cells a results file already holds (``key`` -> stored cell, where ``same(stored, planned)``),
    and the others, in plan order, to train."""
    reused: dict[Hashable, dict] = {}
    todo: list[C] = []
    for c in plan:
        old = stored.get(key(c))
        if old is not None and same(old, c):
            reused[key(c)] = old
        else:
            todo.append(c)
    return reused, todo


def pool(fn: Callable[[C], R], jobs: Iterable[C], workers: int, check: Callable[[], object] | None = None) -> Iterator[R]:
    """``fn`` over ``jobs``, each result as it finishes. ``check()`` runs first, here: it loads (or exits
    on) the data the workers need, so missing data never reaches a worker. With ``workers > 1`` the jobs
    run on that many spawned processes (spawn is safe with CUDA); an exception in a worker, a worker's
    ``SystemExit`` or a worker that dies is raised here and stops the run, never left waiting on."""
    jobs = list(jobs)
    if check is not None and jobs:
        check()
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield fn(job)
        return
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=multiprocessing.get_context("spawn")) as ex:
        pending = {ex.submit(fn, job) for job in jobs}
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield fut.result()  # a worker's exception (or BrokenProcessPool) is raised here
        finally:
            for fut in pending:
                fut.cancel()


class ResultsFile:
    """``results/NAME-<device>.json`` (and its ``.md``): what it held when this run started, and its writes.
    A write after a run that trained nothing keeps the file's machine, commit and date."""

    def __init__(self, name: str, device: torch.device, read: bool = True) -> None:
        self.name, self.device = name, device
        self.path = RESULTS / f"{name}-{device_slug(device)}.json"
        self.old: dict[str, Any] = json.loads(self.path.read_text()) if read and self.path.is_file() else {}
        self.trained = False

    def write(self, payload: dict[str, Any]) -> Path:
        return write_result(self.name, self.device, payload, kept=None if self.trained else self.old)

    def write_md(self, text: str) -> Path:
        md = self.path.with_suffix(".md")
        md.write_text(text)
        return md
