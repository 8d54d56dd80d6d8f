"""Reading a finished (or running) search back: one record per trial of a run folder.

The study is the record of truth for a trial's state (complete, stopped early, failed,
interrupted); ``trials/<n>/trial.json`` holds its metrics, history and error. A trial
whose folder is missing (a cluster whose run folder is not shared) falls back to the
metrics the study keeps as user attributes. ``report``, ``pick`` and ``export`` all read
a run through :func:`load_run`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .space import Candidate, Space

# The study's states, as the user reads them.


class RunError(ValueError):
    """A run folder that cannot be read (missing, not a run, unreadable study)."""


@dataclass
class TrialRecord:
    number: int
    status: str
    config: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    folder: Path | None = None
    device: str | None = None
    details: dict[str, Any] = field(default_factory=dict)  # the method's resolved facts (SMH's n and M, width's alpha, ...)

    @property
    def label(self) -> str:
        return Candidate.from_params(self.config).label() if self.config else f"trial {self.number}"

    @property
    def arch(self) -> str:
        return self.config.get("arch", "?")

    @property
    def method(self) -> str:
        return self.config.get("method", "?")

    def get(self, key: str) -> Any:
        return self.metrics.get(key)

    @property
    def model_file(self) -> Path | None:
        """The trained model's file, when the trial finished and saved one."""
        if self.folder is None:
            return None
        path = self.folder / "model.safetensors"
        return path if path.is_file() else None

    def as_row(self) -> dict[str, Any]:
        """A flat dict (config, status, every metric, error) for tables and JSON."""
        return {"number": self.number, "label": self.label, **{k: v for k, v in self.config.items()}, "status": self.status,
                **self.metrics, "error": self.error}


@dataclass
class Run:
    path: Path
    name: str
    space: Space
    trials: list[TrialRecord]

    @property
    def dataset(self) -> str:
        return self.space.dataset.name

    @property
    def epochs(self) -> int:
        return self.space.train.epochs

    def trial(self, number: int) -> TrialRecord:
        for t in self.trials:
            if t.number == number:
                return t
        numbers = ", ".join(str(t.number) for t in self.trials) or "none"
        raise RunError(f"{self.path}: no trial {number}; the run has trials {numbers}")

    def complete(self) -> list[TrialRecord]:
        return [t for t in self.trials if t.status == "complete"]


def _state_name(trial) -> str:
    import optuna

    S = optuna.trial.TrialState
    if trial.state == S.COMPLETE:
        return "complete"
    if trial.state == S.PRUNED:
        return "early_stopped"
    if trial.state == S.FAIL:
        return "interrupted" if trial.user_attrs.get("interrupted") else "failed"
    if trial.state == S.RUNNING:
        return "running"
    return "queued"


def load_run(path: str | Path) -> Run:
    """Every trial of the run folder ``path`` (made by ``smhsearch run``), in trial order."""
    import optuna

    from .search import REPORTED, STUDY_FILE, _storage, storage_url
    from .search._binding import redact

    path = Path(path)
    space_file = path / "space.yaml"
    if not path.is_dir():
        raise RunError(f"no run folder at {path} (smhsearch run writes runs/<space name>)")
    if not space_file.is_file():
        raise RunError(f"{path} is not a run folder: it has no space.yaml (smhsearch run writes one)")
    import yaml

    from .plugins import load_plugins

    try:
        raw = yaml.safe_load(space_file.read_text())
        load_plugins(raw.get("plugins") or [])
        space = Space.model_validate(raw)
    except Exception as e:
        raise RunError(f"{space_file}: not a space this smhsearch reads: {e}") from None
    url = storage_url(space, path)
    if not space.storage and not (path / STUDY_FILE).is_file():
        raise RunError(f"{path} has no study ({STUDY_FILE}); was the run started?")
    try:
        study = optuna.load_study(study_name=space.name, storage=_storage(url))
        uid = study.user_attrs.get("uid")
    except KeyError:
        raise RunError(f"{path}: the study {space.name!r} is not in {redact(url)}") from None
    except Exception as e:  # a corrupt study.db, an unreachable server: one line, never a traceback
        raise RunError(f"{path}: cannot read the study in {redact(url)}: {type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
    records = []
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("rejected"):  # a sample that named no runnable candidate: never a trial of the run
            continue
        folder = path / "trials" / f"{t.number:04d}"
        saved: dict[str, Any] = {}
        if (folder / "trial.json").is_file():
            try:
                saved = json.loads((folder / "trial.json").read_text())
            except (json.JSONDecodeError, UnicodeDecodeError, OSError):
                saved = {}
            if not isinstance(saved, dict) or (uid is not None and (saved.get("study") or {}).get("uid") != uid):
                saved = {}  # a corrupt record, or one left by another study: the study's own attrs stand
        config = t.user_attrs.get("config") or saved.get("config") or {}
        metrics = {k: t.user_attrs[k] for k in REPORTED if k in t.user_attrs}
        metrics.update(saved.get("metrics") or {})
        status = _state_name(t)
        error = t.user_attrs.get("error") or saved.get("error")
        if status == "interrupted":
            error = error or "interrupted: the driver stopped while this trial ran (its config was queued again)"
        records.append(TrialRecord(number=t.number, status=status, config=dict(config), metrics=metrics, error=error,
                                   history=saved.get("history") or [], folder=folder if folder.is_dir() else None,
                                   device=saved.get("device"), details=saved.get("method_details") or {}))
    return Run(path=path, name=space.name, space=space, trials=records)
