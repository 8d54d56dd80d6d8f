"""Where a run's Optuna study lives and how it is opened: light (no torch), shared by the driver and :mod:`smhsearch.runs`.

``report`` and ``pick`` read a run through here, so this module imports only the standard
library at import time and Optuna when a storage is opened.
"""

from __future__ import annotations

from pathlib import Path

STUDY_FILE = "study.db"
# What the driver writes for readers: {"space": the space as validated (every default filled in),
# "families": {arch: its family}}, so that `report` and `pick` need neither the schema nor the model registry.
RESOLVED_FILE = "run.json"

# The metrics a trial reports to the study (as user attributes) and that a run read back shows.
REPORTED = ("val_acc", "test_acc", "best_val_acc", "stored_params", "virtual_params", "flops", "throughput", "epoch",
            "compact_bytes", "stored_bytes", "input_size")


def storage_url(storage: str | None, run_dir: Path) -> str:
    """The space's ``storage``, or the SQLite file in the run folder."""
    return storage or f"sqlite:///{(Path(run_dir) / STUDY_FILE).resolve()}"


def open_storage(url: str, read_only: bool = False):
    """An Optuna storage for ``url``: a journal file (``*.log``, ``*.journal``) or any SQLAlchemy URL.

    ``read_only``: a reader (``report``, ``pick``) creates no tables and skips the schema check.
    """
    import optuna

    if url.endswith((".log", ".journal")) and "://" not in url:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        return JournalStorage(JournalFileBackend(url))
    if read_only:
        return optuna.storages.RDBStorage(url, skip_compatibility_check=True, skip_table_creation=True)
    return optuna.storages.RDBStorage(url)


def redact(text: str | None) -> str:
    """``text`` with the password of any URL in it replaced by ``***`` (what may be printed or saved)."""
    import re

    return re.sub(r"(\w[\w+.-]*://[^:/@\s]*):[^@\s]*@", r"\1:***@", text or "")


def resolve_storage(url: str | None, base: Path) -> str | None:
    """``url`` with a relative file path (journal file or ``sqlite:///relative.db``) made absolute from ``base``."""
    if not url:
        return url
    if "://" not in url:
        path = Path(url).expanduser()
        return str(path if path.is_absolute() else (base / path).resolve())
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////") and url != "sqlite:///:memory:":
        rel = url[len("sqlite:///"):]
        return f"sqlite:///{(base / rel).resolve()}"
    return url
