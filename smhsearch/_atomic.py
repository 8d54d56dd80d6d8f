"""Writing a file so that a kill, a full disk or an error never leaves a half file or a stray temporary."""

from __future__ import annotations

import contextlib
import errno
import os
import re
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
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        named = as_os_error(e, path)
        if named is not None:
            raise named from e
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


# errors of the storage, not of the request: a command reports them in one line (cli.main)
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EIO})


def as_os_error(e: BaseException, path: Path) -> OSError | None:
    """An OSError naming ``path`` for a storage error raised while writing it, or None for anything else.

    Libraries that write through their own code (safetensors' Rust writer) report a full disk as their own
    exception type with "(os error 28)" in the text, and Python's write() names no file; either way the user
    should read which file could not be written and why.

    >>> str(as_os_error(RuntimeError("I/O error: No space left on device (os error 28)"), Path("m.safetensors")))
    "[Errno 28] No space left on device: 'm.safetensors'"
    >>> as_os_error(ValueError("Circular reference detected"), Path("x")) is None
    True
    """
    if isinstance(e, OSError):
        code = e.errno
    else:
        m = re.search(r"\(os error (\d+)\)", str(e))
        code = int(m.group(1)) if m else None
    if code not in STORAGE_ERRNOS or (isinstance(e, OSError) and e.filename is not None):
        return None
    return OSError(code, os.strerror(code), str(path))
