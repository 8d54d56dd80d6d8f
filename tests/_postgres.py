"""A private PostgreSQL server for the tests: its own cluster in a temporary folder, on a loopback port.

``initdb`` refuses to run as root, so as root the cluster belongs to (and the server runs as)
Debian's ``postgres`` system user, through ``runuser``. Logins over TCP need a password
(scram-sha-256), so a test can tell a real login from a refused one. Where PostgreSQL, psycopg
or a user to run it as is missing, :func:`start` says why and the tests skip with that reason
(``make test`` installs Debian's postgresql: ``scripts/ensure_postgres.sh``).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

USER = "smh"
PASSWORD = "s3cret-Pw-4711"  # what the tests look for in every file a run writes


def _bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)  # Debian keeps them off PATH
    return next((str(v / name) for v in versions if (v / name).is_file()), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    """One running cluster: ``url(db)``, ``create_database()``, ``stop(mode)``, ``start()``, ``close()``."""

    def __init__(self) -> None:
        self.initdb, self.pg_ctl = _bin("initdb"), _bin("pg_ctl")
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # initdb: "cannot be run as root"
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.folder = Path(tempfile.mkdtemp(prefix="smh-pg-"))  # not pytest's tmp_path: root's is closed to postgres
        self.data = self.folder / "data"
        self.port = _free_port()
        self._made = 0
        if self.as_user:
            pw = pwd.getpwnam("postgres")
            os.chown(self.folder, pw.pw_uid, pw.pw_gid)
        pwfile = self.folder / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self.as_user:
            os.chown(pwfile, pwd.getpwnam("postgres").pw_uid, -1)
        self._run(self.initdb, "-D", str(self.data), "-U", USER, f"--pwfile={pwfile}", "--auth-host=scram-sha-256",
                  "--auth-local=trust", "--no-sync", "-E", "UTF8")
        pwfile.unlink()
        self.start()

    def _run(self, *cmd: str) -> subprocess.CompletedProcess:
        r = subprocess.run([*self.as_user, *cmd], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:2])} failed ({r.returncode}): {r.stderr.strip()[-500:]}")
        return r

    def start(self) -> None:
        # -k: the unix socket in the cluster's own folder; -F: no fsync (a test cluster); loopback only
        self._run(self.pg_ctl, "-D", str(self.data), "-l", str(self.folder / "server.log"), "-w", "-t", "60",
                  "-o", f"-h 127.0.0.1 -p {self.port} -k {self.folder} -F", "start")

    def stop(self, mode: str = "fast") -> None:
        """``mode``: pg_ctl's shutdown mode; ``immediate`` is a crash (no checkpoint, clients cut off)."""
        self._run(self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, db: str = "postgres", password: str | None = PASSWORD, scheme: str = "postgresql+psycopg") -> str:
        auth = USER if password is None else f"{USER}:{password}"
        return f"{scheme}://{auth}@127.0.0.1:{self.port}/{db}"

    def create_database(self) -> str:
        """A new empty database (one per test: study names never meet); returns its name."""
        import psycopg

        self._made += 1
        name = f"t{self._made}"
        with psycopg.connect(host="127.0.0.1", port=self.port, user=USER, password=PASSWORD, dbname="postgres",
                             autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        return name

    def close(self) -> None:
        try:
            self.stop("immediate")
        except RuntimeError:
            pass  # already stopped
        shutil.rmtree(self.folder, ignore_errors=True)


def unavailable() -> str | None:
    """Why a private PostgreSQL cannot be started here, or None."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'psycopg[binary]')"
    if not (_bin("initdb") and _bin("pg_ctl")):
        return "PostgreSQL's initdb and pg_ctl are not installed (make test installs them: scripts/ensure_postgres.sh)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root, where initdb refuses to run, and there is no 'postgres' user to run it as"
        if not shutil.which("runuser"):
            return "running as root, where initdb refuses to run, and runuser is missing"
    return None
