"""Every path of a run folder, in one place: the driver, the trials and the readers ask :class:`RunLayout` for them.

A run folder (``runs/<name>`` by default)::

    space.yaml   run.json   study.db (+ -journal, -wal, -shm)   study.json   .lock   .driver.json
    trials/<nnnn>/trial.json, model.safetensors, checkpoint.pt
    teachers/    speed/    bench/<target>.json    ray/    .old-<stamp>/ (what --fresh moved aside)

Light: the standard library only, so ``report`` and ``pick`` read a run without torch.

>>> layout = RunLayout(Path("runs/demo"))
>>> layout.trial_record(7).as_posix()
'runs/demo/trials/0007/trial.json'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SPACE_FILE = "space.yaml"
"""The space as run (the keys its file set)."""
RESOLVED_FILE = "run.json"
"""What the driver writes for readers: {"space": the space as validated, "families": {arch: its family}}, so that
`report` and `pick` need neither the schema nor the model registry."""
STUDY_FILE = "study.db"
"""The Optuna study when the space names no ``storage``."""
BINDING_FILE = "study.json"
"""The study (name, uid) the run folder belongs to."""
LOCK_FILE = ".lock"
DRIVER_FILE = ".driver.json"
TRIALS = "trials"
TRIAL_RECORD = "trial.json"
MODEL_FILE = "model.safetensors"
"""A finished job's model beside its record: the compact file of a compressed model, the weights of a dense one."""
CHECKPOINT = "checkpoint.pt"
TEACHERS = "teachers"
SPEED = "speed"
BENCH_DIR = "bench"
"""``<run>/bench/<name>.json``: a run's models timed again on a deployment target by ``smhsearch bench``."""
RAY = "ray"


@dataclass(frozen=True)
class RunLayout:
    """The paths of the run folder ``root``; nothing is created by asking."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # the run's own files
    @property
    def space_file(self) -> Path:
        return self.root / SPACE_FILE

    @property
    def resolved(self) -> Path:
        return self.root / RESOLVED_FILE

    @property
    def study_db(self) -> Path:
        return self.root / STUDY_FILE

    @property
    def binding(self) -> Path:
        return self.root / BINDING_FILE

    @property
    def lock(self) -> Path:
        return self.root / LOCK_FILE

    @property
    def driver(self) -> Path:
        return self.root / DRIVER_FILE

    def storage_url(self, storage: str | None) -> str:
        """Where the run's study lives: ``storage`` (the space's, or SMHSEARCH_STORAGE's), else the SQLite file here."""
        return storage or f"sqlite:///{self.study_db.resolve()}"

    def moved_aside(self) -> list[str]:
        """The names ``--fresh`` moves aside (those present): the trials and the files that bind the folder to its study."""
        names = (TRIALS, SPACE_FILE, BINDING_FILE, STUDY_FILE, f"{STUDY_FILE}-journal", f"{STUDY_FILE}-wal", f"{STUDY_FILE}-shm")
        return [n for n in names if (self.root / n).exists()]

    def aside(self, stamp: str) -> Path:
        return self.root / f".old-{stamp}"

    # the trials
    @property
    def trials(self) -> Path:
        return self.root / TRIALS

    def trial_dir(self, number: int) -> Path:
        return self.trials / f"{int(number):04d}"

    def trial_record(self, number: int) -> Path:
        return self.trial_dir(number) / TRIAL_RECORD

    def model_file(self, number: int) -> Path:
        return self.trial_dir(number) / MODEL_FILE

    def checkpoint(self, number: int) -> Path:
        return self.trial_dir(number) / CHECKPOINT

    # what the trials share
    @property
    def teachers(self) -> Path:
        return self.root / TEACHERS

    @property
    def speed(self) -> Path:
        return self.root / SPEED

    @property
    def bench(self) -> Path:
        return self.root / BENCH_DIR

    def bench_file(self, name: str) -> Path:
        return self.bench / f"{name}.json"

    @property
    def ray(self) -> Path:
        return self.root / RAY
