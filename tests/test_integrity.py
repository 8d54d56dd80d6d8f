"""Fault injection: what survives two drivers, a stale lock, a resume into someone else's files,
and malformed input. Each test asserts what is on disk afterwards, not only an exit status.

The runs are real (``smhsearch run`` in a subprocess or in this process, Ray, the study in
SQLite); the "other driver" is a real second process holding the run folder's lock.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from smhsearch.search import RunLock, RunLocked
from smhsearch.search._lock import DRIVER_FILE

from .conftest import ROOT

S = optuna.trial.TrialState

SPACE = """name: {name}
dataset: {{name: fashion-mnist-small}}
train: {{epochs: 1, batch_size: 256, lr: 0.05}}
space: {{arch: [mlp], budget: ["20%"], method: {methods}}}
search: {{sampler: grid{search}}}
scheduler: {{kind: none}}
resources: {{cpus_per_trial: 1, max_concurrent: 1}}
"""


def write_space(folder: Path, name: str = "integ", methods: str = "[dense, smh]", search: str = "", extra: str = "") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(SPACE.format(name=name, methods=methods, search=search) + extra)
    return path


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and mtime: what "nothing was touched" compares."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


HOLDER = """
import sys, time
from pathlib import Path
from smhsearch.search import RunLock
with RunLock(Path(sys.argv[1]), heartbeat_s=0.2):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def other_driver():
    """Start a real second process that holds a run folder's lock: ``other_driver(run_dir) -> Popen``."""
    procs = []

    def start(run_dir: Path) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
        procs.append(p)
        assert p.stdout.readline().strip() == "held"
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


# --- 1. the run-folder lock ----------------------------------------------------------------------

def test_lock_refuses_a_second_holder_and_frees_on_release(tmp_path):
    with RunLock(tmp_path) as lock:
        record = json.loads((tmp_path / DRIVER_FILE).read_text())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        with pytest.raises(RunLocked, match=rf"in use by another smhsearch driver \(pid {os.getpid()} on host"):
            RunLock(tmp_path).acquire()
        assert lock.held
    assert not (tmp_path / DRIVER_FILE).exists()
    with RunLock(tmp_path) as again:  # released: the next driver gets it
        assert again.held


def test_lock_heartbeat_moves(tmp_path):
    with RunLock(tmp_path, heartbeat_s=0.05):
        first = json.loads((tmp_path / DRIVER_FILE).read_text())["heartbeat"]
        time.sleep(0.3)
        later = json.loads((tmp_path / DRIVER_FILE).read_text())
    assert later["heartbeat"] > first and later["start"] == pytest.approx(first, abs=0.01)


def test_lock_of_a_killed_driver_is_taken_over(tmp_path, other_driver, capsys, caplog):
    """kill -9 leaves the record behind; the kernel dropped the OS lock, so the next driver takes over, saying so."""
    p = other_driver(tmp_path)
    with pytest.raises(RunLocked, match=f"pid {p.pid}"):
        RunLock(tmp_path).acquire()
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert json.loads((tmp_path / DRIVER_FILE).read_text())["pid"] == p.pid  # the stale record is still there
    with RunLock(tmp_path) as lock:
        assert lock.held and json.loads((tmp_path / DRIVER_FILE).read_text())["pid"] == os.getpid()
    assert "taking over" in capsys.readouterr().out
    assert f"pid {p.pid}" in caplog.text and "its process is gone" in caplog.text


@pytest.mark.parametrize("age,refused", [(5, True), (3600, False)])
def test_lock_of_another_host_is_judged_by_its_heartbeat(tmp_path, age, refused):
    """A driver on another host (a shared filesystem where flock is not shared) is alive while its heartbeat is fresh."""
    now = time.time()
    (tmp_path / DRIVER_FILE).write_text(json.dumps({"pid": 1, "host": "elsewhere.example", "start": now - 7200,
                                                    "heartbeat": now - age}))
    if refused:
        with pytest.raises(RunLocked, match="host elsewhere.example"):
            RunLock(tmp_path, stale_after_s=60).acquire()
        assert json.loads((tmp_path / DRIVER_FILE).read_text())["host"] == "elsewhere.example"  # left as it was
    else:
        with RunLock(tmp_path, stale_after_s=60):
            assert json.loads((tmp_path / DRIVER_FILE).read_text())["host"] == socket.gethostname()


@pytest.mark.parametrize("fresh", [False, True])
def test_run_on_a_live_run_folder_is_refused_and_touches_nothing(tmp_path, other_driver, cli, fresh):
    """`smhsearch run` (and `--fresh`) on a folder another driver holds: exit 2, the holder named, no file changed."""
    space = write_space(tmp_path)
    out = tmp_path / "run"
    out.mkdir()
    (out / "study.db").write_bytes(b"the other driver's study")
    (out / "space.yaml").write_text("the other driver's space\n")
    (out / "trials" / "0000").mkdir(parents=True)
    (out / "trials" / "0000" / "trial.json").write_text('{"status": "running"}')
    p = other_driver(out)
    before = snapshot(out)
    rc, stdout, stderr = cli("run", space, "--out", out, *(["--fresh"] if fresh else []))
    assert rc == 2, stdout + stderr
    assert f"pid {p.pid}" in stderr and "in use by another smhsearch driver" in stderr and "nothing was changed" in stderr
    assert "Traceback" not in stderr
    after = snapshot(out)
    after.pop(DRIVER_FILE), before.pop(DRIVER_FILE)  # the holder's own heartbeat moves
    assert after == before
