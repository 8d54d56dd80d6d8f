"""Where a run's Optuna study lives and how it is opened: light (no torch), shared by the driver and :mod:`smhsearch.runs`.

``report`` and ``pick`` read a run through here, so this module imports only the standard
library at import time and Optuna when a storage is opened.
"""

from __future__ import annotations

import os
from pathlib import Path

from ._redact import normalize, redact, without_password  # noqa: F401  (re-exported: the search's callers)

from ._layout import RESOLVED_FILE, STUDY_FILE  # noqa: F401  (re-exported: the run folder's names live in _layout)

# The metrics a trial reports to the study (as user attributes) and that a run read back shows.
REPORTED = ("val_acc", "test_acc", "best_val_acc", "stored_params", "virtual_params", "flops", "throughput", "epoch",
            "compact_bytes", "stored_bytes", "input_size", "teacher_train_seconds", "teacher_forward_s")


ENV = "SMHSEARCH_STORAGE"
"""The environment variable that names a run's storage, so that a password need not be written in a space file."""


class StorageError(ValueError):
    """A storage that cannot be used; the message starts with the key or variable that named it and holds no password."""


def key() -> str:
    """What named the storage, for messages: the variable when it is set (it wins), else the space's key."""
    return ENV if os.environ.get(ENV) else "storage"


def is_journal(url: str) -> bool:
    return url.endswith((".log", ".journal")) and "://" not in url


def choose_storage(space_storage: str | None, environ: dict[str, str] | None = None) -> str | None:
    """The storage a run uses: the space's ``storage``, or ``SMHSEARCH_STORAGE`` when the space names none.

    When both are given they must name the same place, the variable then supplying what the
    space leaves out (its password): a key that would be ignored is an error.

    >>> choose_storage("postgresql://smh@db/s", {"SMHSEARCH_STORAGE": "postgresql://smh:pw@db/s"})
    'postgresql+psycopg://smh:pw@db/s'
    """
    env = (os.environ if environ is None else environ).get(ENV) or None
    if env is None:
        return normalize(space_storage) if space_storage else space_storage
    if space_storage and without_password(space_storage) != without_password(env):
        raise StorageError(f"storage: the space names {redact(space_storage)} but {ENV} names {redact(env)}; "
                           f"remove one of them (or make them name the same database)")
    return normalize(env)


def engine_kwargs(url: str) -> dict:
    """SQLAlchemy engine options: a server's connections are checked before use (``pool_pre_ping``), so a
    restarted PostgreSQL costs a reconnect, not the search."""
    return {} if url.startswith("sqlite") else {"pool_pre_ping": True}


def open_storage(url: str, read_only: bool = False):
    """An Optuna storage for ``url``: a journal file (``*.log``, ``*.journal``) or any SQLAlchemy URL.

    ``read_only``: a reader (``report``, ``pick``) creates no tables and skips the schema check.
    A storage that cannot be opened (no driver, no server, a refused login) raises :class:`StorageError`.
    """
    if is_journal(url):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        return JournalStorage(JournalFileBackend(url))
    url = normalize(url)
    skip = {"skip_compatibility_check": True, "skip_table_creation": True} if read_only else {}
    try:
        from ._rdb import RDBStorage  # pickled (by Ray, into the run folder) without the password

        return RDBStorage(url, engine_kwargs=engine_kwargs(url), **skip)
    except Exception as e:
        if url.startswith("sqlite"):  # a corrupt or unreadable file: the caller says what it was reading
            raise
        raise StorageError(f"{key()}: cannot open {redact(url)}: {why(e)}") from None


def why(e: BaseException) -> str:
    """One redacted line saying why a database could not be used (the driver's own message, not SQLAlchemy's wrapper)."""
    from ._extras import install_hint

    hint = install_hint(e)
    if hint:  # PostgreSQL's driver: the [postgres] extra
        return f"its driver {hint}"
    if isinstance(e, ModuleNotFoundError) or isinstance(getattr(e, "__cause__", None), ModuleNotFoundError):
        return f"its driver is not installed ({e})"
    inner = getattr(e, "orig", None) or e
    lines = [line.strip() for line in str(inner).splitlines() if line.strip()]
    return redact(" ".join(lines[:2])[:300]) or type(inner).__name__


def probe(url: str) -> None:
    """Connect to a database server once (``check``); :class:`StorageError` when it cannot. Files are left alone:
    opening a SQLite URL or a journal would create it, and ``check`` writes nothing."""
    if is_journal(url) or url.startswith("sqlite"):
        return
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    url = normalize(url)
    try:
        engine = sqlalchemy.create_engine(url, poolclass=NullPool)
        with engine.connect():
            pass
    except Exception as e:
        raise StorageError(f"{key()}: cannot connect to {redact(url)}: {why(e)}") from None


def reader_url(recorded: str) -> str:
    """The URL a reader (``report``, ``pick``) opens for the storage a run folder records (redacted): the one in
    ``SMHSEARCH_STORAGE`` when it names the same place, else the recorded one without its ``***`` password
    (libpq then takes the password from ``PGPASSWORD`` or ``~/.pgpass``)."""
    env = os.environ.get(ENV)
    if env and without_password(env) == without_password(recorded):
        return normalize(env)
    return without_password(recorded) if ":***@" in recorded else recorded


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


RETRY_DELAYS = (0.5, 1, 2, 4, 8, 16, 30)
"""Seconds waited before each retry of a transient storage error: about a minute in all, what a database restart or
failover takes; then the error is raised."""


def transient(e: BaseException) -> bool:
    """A storage error that passes: a dropped or refused connection, a locked SQLite file, a server restarting."""
    import sqlite3

    try:
        from sqlalchemy.exc import DBAPIError, OperationalError
    except ImportError:  # pragma: no cover (optuna's RDB storage needs SQLAlchemy)
        return isinstance(e, sqlite3.OperationalError)
    if isinstance(e, OperationalError) or (isinstance(e, DBAPIError) and e.connection_invalidated):
        return True
    cause = e.__cause__ or e.__context__
    return isinstance(e, sqlite3.OperationalError) or (cause is not None and cause is not e and transient(cause))


def retry_transient(fn, what: str, delays=RETRY_DELAYS, log=None):
    """``fn()``, again after each transient storage error (:func:`transient`) for as long as ``delays`` lasts."""
    import time

    for delay in (*delays, None):
        try:
            return fn()
        except Exception as e:
            if delay is None or not transient(e):
                raise
            if log is not None:
                log.warning("%s: %s; retrying in %gs", what, why(e), delay)
            time.sleep(delay)
