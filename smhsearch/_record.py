"""A job's record (a trial's ``trial.json``, a teacher's ``teacher.json``, ``train``'s ``result.json``), typed.

The record moves through a few states, and each move has one writer here::

    running --progress--> running
    running --complete--> complete
    running --fail------> failed      (the job raised; a worker that died: ``die``)
    running --stop_early> early_stopped
    failed  --mark_transient--> failed (whether a retry may run it again)

A move from any other state raises :class:`IllegalTransition` and writes nothing. A new attempt of a trial starts a new
record (:meth:`TrialRecord.begin`), which a complete, stopped or (not transiently) failed record refuses.

The file's keys are the ones written before this type existed: a record reads back whatever wrote it, and keys this
type does not name are kept as they are. Light (no torch): readers use it too.
"""

from __future__ import annotations

import enum
import json
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


class Status(enum.StrEnum):
    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"
    EARLY_STOPPED = "early_stopped"


TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.RUNNING: frozenset({Status.RUNNING, Status.COMPLETE, Status.FAILED, Status.EARLY_STOPPED}),
    Status.FAILED: frozenset({Status.FAILED}),
    Status.COMPLETE: frozenset(),
    Status.EARLY_STOPPED: frozenset(),
}
"""Where a record may go from each state."""


class IllegalTransition(ValueError):
    """A record asked to move where its state does not allow (a finished trial made to run, fail or stop again)."""


def reached_the_end(metrics: dict[str, Any] | None, epochs: int, keys: list[str]) -> bool:
    """Whether ``metrics`` are a finished trial's: every epoch run and every objective (``keys``) measured."""
    return bool(metrics) and int(metrics.get("epoch") or 0) >= epochs and all(metrics.get(k) is not None for k in keys)


@dataclass(eq=False)
class TrialRecord:
    """One job's record. A field not set is not written (a record holds the keys its job reached); keys this type does
    not name are kept in ``extra`` and written back as they were."""

    number: int | None = None
    study: dict[str, Any] | None = None  # {"name", "uid"}: a resume never adopts another study's record
    config: dict[str, Any] | None = None
    label: str | None = None
    attempt: int | None = None
    spec: dict[str, Any] | None = None
    seed: int | None = None
    status: Status = Status.RUNNING
    started: float | None = None
    versions: dict[str, str] | None = None
    device: str | None = None
    data: Any = None
    speed: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    method_details: dict[str, Any] | None = None
    teacher: dict[str, Any] | None = None
    history: list[dict[str, Any]] | None = None
    resumed: bool | None = None
    error: str | None = None
    traceback: str | None = None
    transient: bool | None = None
    stopped_at_epoch: int | None = None
    finished: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.status = Status(self.status)
        self.__dict__["_set"] = {f.name: None for f in fields(self) if f.name == "status"
                                 or (f.name != "extra" and getattr(self, f.name) is not None)}
        self._path: Path | None = None

    def __setattr__(self, name: str, value: Any) -> None:  # what is assigned is written, None included
        object.__setattr__(self, name, value)
        if name in _FIELDS:
            self.__dict__.setdefault("_set", {})[name] = None

    # -- reading ----------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: Path, study_uid: str | None = None) -> TrialRecord | None:
        """The record at ``path`` when it belongs to the study ``study_uid`` (any study when None); None when absent,
        unreadable, not a record, or another study's."""
        try:
            raw = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(raw, dict) or (study_uid is not None and (raw.get("study") or {}).get("uid") != study_uid):
            return None
        return cls.from_json(raw, path)

    @classmethod
    def from_json(cls, raw: dict[str, Any], path: Path | None = None) -> TrialRecord | None:
        """The record a file holds (None when its status is none this type knows)."""
        try:
            record = cls(**{k: v for k, v in raw.items() if k in _FIELDS and k != "extra"},
                         extra={k: v for k, v in raw.items() if k not in _FIELDS or k == "extra"})
        except (TypeError, ValueError):
            return None
        record.__dict__["_set"] = {k: None for k in raw if k in _FIELDS and k != "extra"}
        record._path = Path(path) if path is not None else None
        return record

    def as_json(self) -> dict[str, Any]:
        """The record as its file holds it: the fields set, in the order they were set, then the others."""
        return {**{k: getattr(self, k) for k in self.__dict__.get("_set", {})}, **self.extra}

    def get(self, key: str, default: Any = None) -> Any:
        """A key of the record as its file holds it."""
        return self.as_json().get(key, default)

    # -- writing: one writer per move ---------------------------------------------------------------
    @classmethod
    def begin(cls, path: Path | None, previous: TrialRecord | None = None, **fields: Any) -> TrialRecord:
        """A new attempt's record (running, not yet written), bound to ``path`` (None: kept in memory only). A
        ``previous`` record that is complete, stopped early or failed for good refuses a new attempt."""
        if previous is not None and not previous.may_run_again():
            raise IllegalTransition(f"{path}: a {previous.status} trial is not run again"
                                    + (f" ({previous.error})" if previous.error else ""))
        record = cls(status=Status.RUNNING)
        for k, v in fields.items():
            record.set(k, v)
        record._path = Path(path) if path is not None else None
        return record

    def may_run_again(self) -> bool:
        """A worker that died (the record says running) or a transient failure may be run again; nothing else."""
        return self.status == Status.RUNNING or (self.status == Status.FAILED and bool(self.transient))

    def progress(self, **fields: Any) -> None:
        """Write the running record (with ``fields`` set): at start and after every epoch."""
        self._move(Status.RUNNING, fields)

    def complete(self, **fields: Any) -> None:
        self._move(Status.COMPLETE, {**fields, "finished": time.time()})

    def fail(self, error: str, **fields: Any) -> None:
        self._move(Status.FAILED, {**fields, "error": error, "finished": time.time()})

    def stop_early(self, epoch: int) -> None:
        """The scheduler stopped the trial at ``epoch`` (its worker was ended inside a report, so it wrote no outcome)."""
        self._move(Status.EARLY_STOPPED, {"stopped_at_epoch": int(epoch), "finished": time.time()})

    def death_cause(self) -> str:
        return (f"its worker died in attempt {self.attempt or 1} (the process was killed, ran out of memory or lost its node) "
                f"after {len(self.history or [])} epochs; search.retries ran out")

    def die(self) -> str:
        """Every attempt's worker died without a word (the record still says running): failed, with that cause
        (returned)."""
        why = self.death_cause()
        self.fail(why)
        return why

    def mark_transient(self, transient: bool) -> None:
        """Say whether the error of a failed record may pass on a retry (a full disk) or would come again."""
        if self.status != Status.FAILED:
            raise IllegalTransition(f"{self._path}: only a failed record is marked transient, not a {self.status} one")
        self._move(Status.FAILED, {"transient": transient})

    def _move(self, to: Status, fields: dict[str, Any]) -> None:
        if to not in TRANSITIONS[self.status]:
            allowed = ", ".join(sorted(TRANSITIONS[self.status])) or "nowhere (it is final)"
            raise IllegalTransition(f"{self._path or 'trial record'}: cannot go from {self.status} to {to}; "
                                    f"from {self.status} a record goes to {allowed}")
        for k, v in fields.items():
            self.set(k, v)
        before, self.status = self.status, to
        try:
            self.write()
        except BaseException:  # not written: the record stays where it was, so its writer can still fail it
            self.status = before
            raise

    def set(self, key: str, value: Any) -> None:
        """Set ``key`` (a field, or a key this type does not name) without writing."""
        if key in _FIELDS and key != "extra":
            setattr(self, key, value)
        else:
            self.extra[key] = value

    def write(self) -> None:
        """Write the record atomically to its path (nothing when it has none)."""
        if self._path is not None:
            from ._atomic import write_record

            write_record(self._path, self.as_json())


_FIELDS = frozenset(f.name for f in fields(TrialRecord))
