"""The run folder belongs to one driver: a lock held for the driver's lifetime.

Two layers, because each alone fails somewhere:

- an OS lock (``filelock``: ``fcntl.flock`` on ``<run>/.lock``). The kernel drops it when its
  process dies, however it dies, so on one host a dead driver never blocks a resume;
- a record beside it (``<run>/.driver.json``: pid, host, start, heartbeat, rewritten every
  few seconds). ``flock`` is not shared between hosts on every network filesystem, so a
  driver on another host is seen by its heartbeat: fresh means alive (refused), older than
  ``stale_after`` seconds means dead (taken over, with a message).

A second ``smhsearch run`` (``--fresh`` included) on a live run folder is refused before
anything in the folder is touched.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from .._layout import DRIVER_FILE, LOCK_FILE, RunLayout  # noqa: F401  (LOCK_FILE: re-exported)

log = logging.getLogger(__name__)

HEARTBEAT_S = 5.0
STALE_AFTER_S = 60.0


class RunLocked(RuntimeError):
    """Another driver, alive, holds the run folder."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _describe(holder: dict[str, Any]) -> str:
    age = time.time() - float(holder.get("heartbeat", 0) or 0)
    return (f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, started "
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(float(holder.get('start', 0) or 0)))}, "
            f"last heartbeat {age:.0f}s ago")


class RunLock:
    """``with RunLock(run_dir):`` holds the run folder for one driver (see the module doc).

    >>> import tempfile
    >>> with RunLock(Path(tempfile.mkdtemp())) as lock:
    ...     lock.held
    True
    """

    def __init__(self, run_dir: Path, heartbeat_s: float = HEARTBEAT_S, stale_after_s: float = STALE_AFTER_S) -> None:
        self.run_dir = Path(run_dir)
        self.heartbeat_s, self.stale_after_s = heartbeat_s, stale_after_s
        self._os_lock = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.held = False

    @property
    def driver_file(self) -> Path:
        return RunLayout(self.run_dir).driver

    def _refusal(self, holder: dict[str, Any] | None) -> RunLocked:
        who = _describe(holder) if holder else "a process whose record is unreadable"
        return RunLocked(f"{self.run_dir} is in use by another smhsearch driver ({who}); nothing was changed. "
                         f"Wait for it to finish, stop it, or use --out for another run folder")

    def acquire(self) -> "RunLock":
        from filelock import FileLock, Timeout

        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise RunLocked(f"{self.run_dir} is a file, not a run folder")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(RunLayout(self.run_dir).lock), timeout=0)
        try:
            lock.acquire()
        except Timeout:  # held by a live process (the kernel drops the lock of a dead one)
            raise self._refusal(_read(self.driver_file)) from None
        holder = _read(self.driver_file)
        if holder is not None:
            try:
                self._judge(holder)
            except RunLocked:
                lock.release()
                raise
        self._os_lock = lock
        self._write(start=time.time())
        self.held = True
        self._thread = threading.Thread(target=self._beat, name="smhsearch-run-lock", daemon=True)
        self._thread.start()
        return self

    def _judge(self, holder: dict[str, Any]) -> None:
        """A record left by a driver we could take the OS lock from: alive elsewhere (refuse) or stale (take over)."""
        same_host = holder.get("host") == socket.gethostname()
        age = time.time() - float(holder.get("heartbeat", 0) or 0)
        pid = int(holder.get("pid", -1) or -1)
        if same_host and pid != os.getpid() and _pid_alive(pid) and age < self.stale_after_s:
            raise self._refusal(holder)  # a live pid with a fresh heartbeat: e.g. a lock file removed by hand
        if not same_host and age < self.stale_after_s:
            raise self._refusal(holder)
        reason = "its process is gone" if same_host and not _pid_alive(pid) else f"no heartbeat for {age:.0f}s"
        log.warning("taking over the run folder %s from a driver that stopped (%s; %s)", self.run_dir, _describe(holder), reason)
        print(f"smhsearch: taking over {self.run_dir} from a driver that stopped ({reason})", flush=True)

    def _write(self, start: float | None = None) -> None:
        now = time.time()
        if start is None:
            start = (_read(self.driver_file) or {}).get("start", now)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "start": start, "heartbeat": now}
        tmp = self.driver_file.with_name(f"{DRIVER_FILE}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(record))
            os.replace(tmp, self.driver_file)
        except OSError as e:  # a full disk must not kill the driver; the OS lock still holds the folder here
            log.warning("could not write the run lock's heartbeat %s: %s", self.driver_file, e)
            tmp.unlink(missing_ok=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            self._write()

    def release(self) -> None:
        if not self.held:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.driver_file.unlink(missing_ok=True)
        self._os_lock.release()
        self.held = False

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
