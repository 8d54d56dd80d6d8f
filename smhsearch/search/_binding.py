"""A run folder and its study are bound together, so a resume never mixes two studies' files.

- the study gets a random ``uid`` (a study user attribute) when it is created: Optuna's own
  study ids restart after a delete, a uid does not;
- the run folder's ``study.json`` names the study (name, uid) it belongs to, and every
  ``trial.json`` carries the same ``study`` stamp; a record with another stamp is never
  adopted as a result (:meth:`smhsearch._record.TrialRecord.load`);
- ``--fresh`` moves the old files aside into ``.old-<timestamp>/`` (and an external study to
  ``<name>.old-<timestamp>``): nothing is deleted;
- a relative storage path is taken from the space file's folder, as a relative dataset root is
  when it does not exist from the working directory (so a run started from another
  directory finds the same study).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from .._layout import BINDING_FILE, RunLayout
from .._storage import redact, resolve_storage  # noqa: F401  (re-exported: the search's callers)

log = logging.getLogger(__name__)



class RunMismatch(ValueError):
    """The run folder belongs to another study than the one this run would open."""


def read_binding(run_dir: Path) -> dict[str, Any] | None:
    path = RunLayout(run_dir).binding
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise RunMismatch(f"{path}: unreadable ({e}); it names the study this run folder belongs to. "
                          "Run with --fresh to move the folder's files aside and start over") from None
    if not isinstance(data, dict) or not isinstance(data.get("uid"), str):
        raise RunMismatch(f"{path}: not a study binding (a mapping with 'name' and 'uid'); run with --fresh to start over")
    return data


def check_before_open(run_dir: Path, name: str, open_storage, default_sqlite: bool):
    """The storage (``open_storage()``), having refused, before anything is created, a run whose folder
    belongs to another study."""
    bound, layout = read_binding(run_dir), RunLayout(run_dir)
    if bound is None:
        if layout.trials.is_dir() and any(layout.trials.iterdir()):
            raise RunMismatch(f"{run_dir} holds trials of a study it does not name (no {BINDING_FILE}); "
                              "run with --fresh to move them aside, or use --out for another folder")
        return open_storage()
    if bound.get("name") != name:
        raise RunMismatch(f"{run_dir} belongs to the study {bound.get('name')!r}, not {name!r}; "
                          "run with --fresh to move its files aside, or use --out for another folder")
    lost = default_sqlite and not layout.study_db.is_file()  # opening it would create an empty one
    storage = None if lost else open_storage()
    try:
        if storage is None:
            raise KeyError(name)
        storage.get_study_id_from_name(name)
    except KeyError:
        raise RunMismatch(f"{run_dir} belongs to the study {name!r} (uid {bound['uid']}), which its storage no longer "
                          "holds (was the storage changed, or a relative storage path read from another folder?); "
                          "run with --fresh to move the folder's files aside and start over") from None
    return storage


def bind(run_dir: Path, study) -> str:
    """The study's uid (given to it now if new), checked against and written to the run folder's ``study.json``."""
    uid = study.user_attrs.get("uid")
    if uid is None:
        uid = uuid.uuid4().hex
        study.set_user_attr("uid", uid)
    bound = read_binding(run_dir)
    if bound is not None and bound["uid"] != uid:
        raise RunMismatch(f"{run_dir} belongs to another study named {study.study_name!r} (uid {bound['uid']}, the storage "
                          f"holds uid {uid}); run with --fresh to move the folder's files aside, or use --out")
    if bound is None:
        from ..job import write_record

        write_record(RunLayout(run_dir).binding, {"name": study.study_name, "uid": uid, "created": time.time()})
    return uid


def stamp(name: str, uid: str) -> dict[str, str]:
    """What every trial.json of the study carries."""
    return {"name": name, "uid": uid}


def move_aside(run_dir: Path, name: str, url: str, default_sqlite: bool) -> Path | None:
    """``--fresh``: the run folder's files (and its study) into ``.old-<timestamp>/``; returns that folder."""
    import optuna

    layout = RunLayout(run_dir)
    present = layout.moved_aside()
    stamp_ = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
    aside = layout.aside(stamp_)
    if not default_sqlite:  # a study elsewhere (PostgreSQL, a journal file): copied under a new name, then removed
        from ._plan import _storage

        storage = _storage(url)
        try:
            storage.get_study_id_from_name(name)
        except KeyError:
            pass
        else:
            optuna.copy_study(from_study_name=name, from_storage=storage, to_storage=storage,
                              to_study_name=f"{name}.old-{stamp_}")
            optuna.delete_study(study_name=name, storage=storage)
            log.warning("--fresh: the study %r was renamed %r", name, f"{name}.old-{stamp_}")
    if not present:
        return None
    aside.mkdir()
    for f in present:
        shutil.move(str(run_dir / f), str(aside / f))
    print(f"--fresh: the previous run's files were moved to {aside}", flush=True)
    return aside
