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
    text = SPACE.format(name=name, methods=methods, search=search)
    if methods == "[dense]":  # no method reads a budget
        text = text.replace(', budget: ["20%"]', "")
    path.write_text(text + extra)
    return path


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and mtime: what "nothing was touched" compares (but the lock's own
    empty file, which a driver must create to ask for the lock and never removes: removing a flock file races)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


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


# --- 2. a study and its files are bound together -------------------------------------------------

@pytest.fixture(scope="module")
def local_ray():
    """One Ray for the module's runs (the driver joins a Ray that is already up)."""
    import ray

    if ray.is_initialized():
        yield
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def trial_json(out: Path, number: int) -> dict:
    return json.loads((out / "trials" / f"{number:04d}" / "trial.json").read_text())


def test_fresh_moves_the_old_run_aside_and_records_carry_their_study(tmp_path, local_ray, cli):
    """Every trial.json names its study; --fresh moves trials/, study.db, space.yaml aside (nothing deleted)
    and the new trial 0 is run, not adopted from the old trial 0's record."""
    space = write_space(tmp_path, methods="[dense]")
    out = tmp_path / "run"
    rc, so, se = cli("run", space, "--out", out)
    assert rc == 0, so + se
    first = json.loads((out / "study.json").read_text())
    old0 = trial_json(out, 0)
    assert old0["study"] == {"name": "integ", "uid": first["uid"]} and old0["status"] == "complete"
    rc, so, se = cli("run", space, "--out", out, "--fresh")
    assert rc == 0, so + se
    [aside] = list(out.glob(".old-*"))
    assert f"moved to {aside}" in so
    assert json.loads((aside / "trials" / "0000" / "trial.json").read_text()) == old0  # kept, whole
    assert (aside / "study.db").is_file() and (aside / "space.yaml").is_file()
    second = json.loads((out / "study.json").read_text())
    new0 = trial_json(out, 0)
    assert second["uid"] != first["uid"] and new0["study"]["uid"] == second["uid"]
    assert new0["started"] > old0["finished"]  # trained again, not the old record adopted
    old_study = optuna.load_study(study_name="integ", storage=f"sqlite:///{aside / 'study.db'}")
    assert old_study.user_attrs["uid"] == first["uid"] and old_study.trials[0].state == S.COMPLETE


def test_a_record_of_another_study_is_never_adopted(tmp_path):
    """A trial left RUNNING (driver killed) whose folder holds a complete trial.json of ANOTHER study is marked
    interrupted and queued again; with its own study's stamp the same record is adopted as complete."""
    from smhsearch.job import write_record
    from smhsearch.search import open_study, plan_run
    from smhsearch.space import load_space

    space_path = write_space(tmp_path, methods="[dense]")
    plan = plan_run(load_space(space_path), space_path, tmp_path / "run")
    metrics = {"val_acc": 0.5, "stored_params": 795010, "throughput": 100.0, "epoch": 1}  # the default objectives

    def resume_with(uid_of_record: str | None) -> optuna.trial.FrozenTrial:
        study, _ = open_study(plan)
        t = study.ask()  # RUNNING, as a killed driver leaves it
        write_record(plan.run_dir / "trials" / f"{t.number:04d}" / "trial.json",
                     {"number": t.number, "study": {"name": "integ", "uid": uid_of_record or plan.study_uid},
                      "status": "complete", "metrics": metrics})
        study, _ = open_study(plan)
        return study.trials[t.number]

    foreign = resume_with("0123456789abcdef")
    assert foreign.state == S.FAIL and foreign.user_attrs["interrupted"] is True
    own = resume_with(None)
    assert own.state == S.COMPLETE and own.values == [0.5, 795010, 100.0]


def test_another_study_in_the_same_folder_is_refused(tmp_path, cli):
    """The same --out with another space name, or a folder whose storage lost its study: exit 2, nothing touched."""
    from smhsearch.search import open_study, plan_run
    from smhsearch.space import load_space

    space_path = write_space(tmp_path, methods="[dense]")
    out = tmp_path / "run"
    open_study(plan_run(load_space(space_path), space_path, out))
    before = snapshot(out)
    other = write_space(tmp_path, name="other", methods="[dense]")
    rc, so, se = cli("run", other, "--out", out)
    assert rc == 2 and "belongs to the study 'integ', not 'other'" in se and "--fresh" in se, so + se
    assert snapshot(out) == before
    (out / "study.db").unlink()  # e.g. a relative storage path that now points elsewhere
    rc, so, se = cli("run", space_path, "--out", out)
    assert rc == 2 and "which its storage no longer holds" in se, so + se
    assert not (out / "study.db").exists()


@pytest.mark.parametrize("name", ["..", "."])
def test_a_name_that_escapes_the_runs_folder_is_refused(tmp_path, cli, name):
    space = tmp_path / "esc.yaml"
    space.write_text(write_space(tmp_path, methods="[dense]").read_text().replace("name: integ", f"name: '{name}'"))
    for command in ("check", "run"):
        rc, so, se = cli(command, space)
        assert rc == 2 and "name" in se and "not only dots" in se, so + se
    assert not (tmp_path / "space.yaml").exists()


def test_a_relative_storage_path_is_taken_from_the_space_file(tmp_path, monkeypatch):
    from smhsearch.search import plan_run
    from smhsearch.space import load_space

    sub = tmp_path / "spaces"
    sub.mkdir()
    for storage, expect in [("sqlite:///studies/s.db", f"sqlite:///{sub / 'studies' / 's.db'}"),
                            ("studies/s.journal", str(sub / "studies" / "s.journal")),
                            ("sqlite:////abs/s.db", "sqlite:////abs/s.db")]:
        path = write_space(sub, methods="[dense]", extra=f"storage: {storage}\n")
        for cwd in (tmp_path, sub):
            monkeypatch.chdir(cwd)
            assert plan_run(load_space(path), path).storage_url == expect
