"""Writing a file so that a kill, a full disk or an error never leaves a half file or a stray temporary."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, fsync: bool = True) -> Iterator[Path]:
    """``with atomic_path(p) as tmp:`` write ``tmp``; on success it is fsynced and renamed to ``p`` (the folder
    fsynced too, so the rename survives a power cut); on any error ``tmp`` is removed and ``p`` left as it was.

    >>> import tempfile; d = Path(tempfile.mkdtemp())
    >>> with atomic_path(d / "a.txt") as tmp:
    ...     _ = tmp.write_text("hi")
    >>> sorted(p.name for p in d.iterdir())
    ['a.txt']
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # per process: two writers never share a temporary
    try:
        yield tmp
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        with contextlib.suppress(OSError):  # not every filesystem lets a folder be fsynced
            fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def write_record(path: Path, record: dict) -> None:
    """Write a JSON record atomically: a kill mid-write leaves the previous version whole."""
    import json

    with atomic_path(path) as tmp:  # fsynced before the rename: a record cannot be recomputed
        tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
