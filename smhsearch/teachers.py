"""The teachers of a run: each trained once per (architecture, dataset, training settings) and shared.

A distilled job whose teacher is ``dense`` needs the uncompressed architecture trained
with the job's own settings (distillation off). Every job of a run that needs the same
one shares it through a *slot* in the run folder::

    teachers/<key>/lock               a file lock (the filelock package): one trainer, the others wait
    teachers/<key>/teacher.json       the teacher job's record (smhsearch.job), written at every epoch
    teachers/<key>/checkpoint.pt      the trainer's checkpoint while it trains (removed once it is complete)
    teachers/<key>/model.safetensors  the trained teacher, once complete

``<key>`` hashes the teacher job's spec (architecture, model kwargs, dataset, its root and
kwargs, the training config without distillation, the seed among it) and the data as the
job was given it (its splits' sizes: a benchmark's subset is other data). The first job to
take the lock trains the teacher through the one job path; a job that finds it complete
loads it. A trainer killed at any moment leaves its checkpoint: the next job to take the
lock (a resumed search's) continues from the last finished epoch, so every epoch of a
teacher is trained once, and a complete teacher is never trained again. The lock is an
OS lock (``flock``), dropped by the kernel when its holder dies however it dies.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Iterator

from ._keys import json_key
from ._layout import CHECKPOINT, MODEL_FILE
from ._layout import TEACHERS as FOLDER  # noqa: F401  (re-exported: the layout names the folder)


def teacher_key(spec: dict[str, Any]) -> str:
    """The key of a teacher job's spec (``JobSpec.to_dict()``): equal specs, one teacher."""
    return json_key(spec)


class Slot:
    """One teacher's folder, held under its lock by :meth:`TeacherStore.slot`."""

    def __init__(self, folder: Path, waited_s: float) -> None:
        self.folder, self.waited_s = folder, waited_s
        self.record_path = folder / "teacher.json"
        self.model_file = folder / MODEL_FILE
        self.checkpoint = folder / CHECKPOINT

    def record(self) -> dict[str, Any]:
        try:
            rec = json.loads(self.record_path.read_text())
        except (OSError, ValueError):
            return {}
        return rec if isinstance(rec, dict) else {}

    def finished(self) -> dict[str, Any] | None:
        """The teacher's record when it is complete and its model is saved; else None (it must be trained)."""
        rec = self.record()
        return rec if rec.get("status") == "complete" and self.model_file.is_file() else None

    def resumed(self) -> list[dict[str, Any]]:
        """The epochs a killed trainer finished (its checkpoint's history); [] when training starts afresh."""
        if not self.checkpoint.is_file():
            return []
        import torch

        try:
            return list(torch.load(self.checkpoint, map_location="cpu", weights_only=True)["history"])
        except Exception:  # a checkpoint from a kill mid-write cannot exist (atomic), but never trust one blindly
            self.checkpoint.unlink(missing_ok=True)
            return []

    def new_session(self) -> dict[str, Any]:
        """The record fields of the teacher job starting now: every training session so far and this one, and the history
        it resumes from (so the record lists every finished epoch while it trains)."""
        done = self.resumed()
        sessions = list(self.record().get("sessions") or []) + [
            {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "resumed_from_epoch": len(done)}]
        return {"sessions": sessions, "history": done}

    def load(self):
        from .export import load_trained

        return load_trained(self.model_file)


class TeacherStore:
    """The teachers of one run folder (``folder`` is ``<run>/teachers``)."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    @contextlib.contextmanager
    def slot(self, key: str) -> Iterator[Slot]:
        """Hold teacher ``key``'s lock (waiting while another job trains it) and yield its slot."""
        from filelock import FileLock

        folder = self.folder / key
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with FileLock(str(folder / "lock")):
            yield Slot(folder, time.perf_counter() - t0)


def teacher_cost(record: dict[str, Any]) -> dict[str, Any]:
    """What a teacher cost and gave, from its record: training seconds (every epoch of every session), accuracies."""
    history = record.get("history") or []
    metrics = record.get("metrics") or {}
    return {"arch": (record.get("spec") or {}).get("arch"), "status": record.get("status"),
            "train_seconds": round(sum(float(h.get("seconds", 0.0)) for h in history), 3), "epochs": len(history),
            "val_acc": metrics.get("val_acc"), "test_acc": metrics.get("test_acc"), "sessions": len(record.get("sessions") or [])}


def summary(folder: str | os.PathLike) -> list[dict[str, Any]]:
    """One entry per teacher of a run (``<run>/teachers``): its key and :func:`teacher_cost`."""
    out = []
    for rec_path in sorted(Path(folder).glob("*/teacher.json")):
        try:
            rec = json.loads(rec_path.read_text())
        except (OSError, ValueError):
            continue
        out.append({"key": rec_path.parent.name, **teacher_cost(rec)})
    return out
