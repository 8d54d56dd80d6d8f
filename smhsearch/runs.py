"""Reading a finished (or running) search back: one record per trial of a run folder.

The study is the record of truth for a trial's state (complete, stopped early, failed,
interrupted); ``trials/<n>/trial.json`` holds its metrics, history and error. A trial
whose folder is missing (a cluster whose run folder is not shared) falls back to the
metrics the study keeps as user attributes. ``report``, ``pick`` and ``export`` all read
a run through :func:`load_run`.

Reading a run is light: it imports neither torch nor the space schema (whose methods
need torch). The run's settings come from ``run.json``, the space as the driver
validated it and its architectures' families; :attr:`Run.space`, the validated :class:`~smhsearch.space.Space`,
is built only when asked for (``export`` needs it). A run written before that file
existed is validated once on load instead.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._layout import MODEL_FILE, STUDY_FILE, RunLayout
from ._record import TrialRecord as _Saved
from ._storage import REPORTED, StorageError, open_storage, reader_url, redact

if TYPE_CHECKING:
    from .space import Space

AXES = (
    "arch",
    "method",
    "budget",
    "scope",
    "scale",
    "distill",
)  # a trial config's own keys; the rest (bits and quant too) are options
SPEED_KEYS = ("throughput", "latency_s", "throughput_spread")


class RunError(ValueError):
    """A run folder that cannot be read (missing, not a run, unreadable study)."""


@dataclass
class Trial:
    """One trial of a run as a reader sees it: its state in the study (complete, early_stopped, failed, interrupted,
    running, queued) and what its record on disk (:class:`smhsearch._record.TrialRecord`) holds."""

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
        return trial_label(self.config) if self.config else f"trial {self.number}"

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
        path = self.folder / MODEL_FILE
        return path if path.is_file() else None

    def as_row(self) -> dict[str, Any]:
        """A flat dict (config, status, every metric, error) for tables and JSON."""
        return {"number": self.number, "label": self.label, **{k: v for k, v in self.config.items()}, "status": self.status,
                **self.metrics, "error": self.error}


TrialRecord = Trial
"""The name :class:`Trial` had before the record on disk got its own type (kept for code written against it)."""


def trial_label(config: dict[str, Any]) -> str:
    """``resnet8 smh@25% (all/learnable)``: what :meth:`smhsearch.space.Candidate.label` says, from a trial's config."""
    options = sorted((k, v) for k, v in config.items() if k not in AXES)
    extra = "/".join([str(config[k]) for k in ("scope", "scale") if config.get(k)] + [f"{k}={v}" for k, v in options])
    budget = config.get("budget")
    return f"{config.get('arch')} {config.get('method')}" + (f"@{budget}" if budget is not None else "") + \
        (f" ({extra})" if extra else "") + (" distilled" if config.get("distill") else "")


@dataclass
class Run:
    path: Path
    name: str
    settings: dict[str, Any]  # the space as validated, plain JSON (every default filled in)
    trials: list[Trial]
    families: dict[str, str] | None = None  # arch -> family, as the driver recorded them (None: ask the registry)
    speed_source: str = "the search: each trial's device during the run"  # where the trials' speed figures come from

    @property
    def dataset(self) -> str:
        return self.settings["dataset"]["name"]

    @property
    def epochs(self) -> int:
        return self.settings["train"]["epochs"]

    @property
    def training(self) -> dict[str, Any]:
        return dict(self.settings["train"])

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.path)

    @cached_property
    def space(self) -> "Space":
        """The run's validated space (imports the schema, methods and torch: only ``export`` needs it)."""
        return _validate(self.layout.space_file)

    def trial(self, number: int) -> Trial:
        for t in self.trials:
            if t.number == number:
                return t
        numbers = ", ".join(str(t.number) for t in self.trials) or "none"
        raise RunError(f"{self.path}: no trial {number}; the run has trials {numbers}")

    def complete(self) -> list[Trial]:
        return [t for t in self.trials if t.status == "complete"]

    def benches(self) -> dict[str, Path]:
        """The deployment targets ``smhsearch bench`` timed this run's models on: name -> file."""
        return {p.stem: p for p in sorted(self.layout.bench.glob("*.json"))}

    def with_speed(self, name: str) -> "Run":
        """This run with every trial's speed figures (throughput, latency, spread) from the bench target ``name``; a
        trial the target did not time has none (so no throughput constraint or axis can count it)."""
        benches = self.benches()
        if name not in benches:
            raise RunError(
                f"{self.path}: no bench target {name!r}; targets: {', '.join(benches) or 'none (run smhsearch bench first)'}"
            )
        try:
            record = json.loads(benches[name].read_text())
            figures, source = record["trials"], (f"{record['device']} ({record['runtime']}, batch {record['batch_size']}) on "
                                                 f"{record['host']}, timed by smhsearch bench (target {name!r})")
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
            raise RunError(f"{benches[name]}: not a bench record ({type(e).__name__}: {e})") from None
        trials = []
        for t in self.trials:
            got = figures.get(str(t.number)) or {}
            metrics = {k: v for k, v in t.metrics.items() if k not in SPEED_KEYS} | {k: got[k] for k in SPEED_KEYS if k in got}
            trials.append(dataclasses.replace(t, metrics=metrics))
        return dataclasses.replace(self, trials=trials, speed_source=source)


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

    path = Path(path)
    layout = RunLayout(path)
    space_file = layout.space_file
    if not path.is_dir():
        raise RunError(f"no run folder at {path} (smhsearch run writes runs/<space name>)")
    if not space_file.is_file():
        raise RunError(f"{path} is not a run folder: it has no space.yaml (smhsearch run writes one)")
    resolved, space = _resolved(path), None
    if resolved is None:  # a run from before run.json: validate its space.yaml (imports torch)
        space = _validate(space_file)
        resolved = {"space": json.loads(space.model_dump_json()), "families": None}
    settings = resolved["space"]
    name = settings["name"]
    # the run folder records its storage redacted: the password comes from SMHSEARCH_STORAGE (or libpq's own)
    url = layout.storage_url(reader_url(settings["storage"]) if settings.get("storage") else None)
    if not settings.get("storage") and not layout.study_db.is_file():
        raise RunError(f"{path} has no study ({STUDY_FILE}); was the run started?")
    try:
        study = optuna.load_study(study_name=name, storage=open_storage(url, read_only=True))
        uid = study.user_attrs.get("uid")
    except KeyError:
        raise RunError(f"{path}: the study {name!r} is not in {redact(url)}") from None
    except StorageError as e:  # no driver, no server, a refused login: the message names the storage already
        raise RunError(f"{path}: cannot read the study: {e}") from None
    except Exception as e:  # a corrupt study.db, an unreachable server: one line, never a traceback
        raise RunError(
            f"{path}: cannot read the study in {redact(url)}: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
        ) from None
    records = []
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("rejected"):  # a sample that named no runnable candidate: never a trial of the run
            continue
        folder = layout.trial_dir(t.number)
        # a corrupt record, or one left by another study, is not read: the study's own attrs stand
        record = _Saved.load(layout.trial_record(t.number), uid)
        saved: dict[str, Any] = record.as_json() if record is not None else {}
        config = t.user_attrs.get("config") or saved.get("config") or {}
        metrics = {k: t.user_attrs[k] for k in REPORTED if k in t.user_attrs}
        metrics.update(saved.get("metrics") or {})
        status = _state_name(t)
        error = t.user_attrs.get("error") or saved.get("error")
        if status == "interrupted":
            error = error or "interrupted: the driver stopped while this trial ran (its config was queued again)"
        records.append(Trial(number=t.number, status=status, config=dict(config), metrics=metrics, error=error,
                                   history=saved.get("history") or [], folder=folder if folder.is_dir() else None,
                                   device=saved.get("device"), details=saved.get("method_details") or {}))
    run = Run(path=path, name=name, settings=settings, trials=records, families=resolved["families"])
    if space is not None:
        run.__dict__["space"] = space  # already validated: the cached property need not do it again
    return run


def _resolved(path: Path) -> dict[str, Any] | None:
    file = RunLayout(path).resolved
    if not file.is_file():
        return None
    try:
        resolved = json.loads(file.read_text())
        space = resolved["space"]
        space["name"], space["dataset"]["name"], space["train"]["epochs"], dict(resolved["families"])  # noqa: B018  (what a read needs)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise RunError(f"{file}: not the run record smhsearch run writes ({type(e).__name__}: {e})") from None
    return resolved


def _validate(space_file: Path) -> "Space":
    import yaml

    from .plugins import load_plugins
    from .space import Space

    try:
        raw = yaml.safe_load(space_file.read_text())
        load_plugins(raw.get("plugins") or [])
        return Space.model_validate(raw)
    except Exception as e:
        raise RunError(f"{space_file}: not a space this smhsearch reads: {e}") from None
