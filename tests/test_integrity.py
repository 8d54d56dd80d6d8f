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


# --- 3. every bad input: exit 2, one line, nothing written, bounded time and memory ---------------

def _garbage_idx(d: Path) -> list[str]:
    (d / "idx").mkdir()
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (d / "idx" / stem).write_bytes(b"\x00\x00\x08\x03\xff\xff\xff\xff\x00\x00\x00\x1c\x00\x00\x00\x1c")  # 4G images, no data
    return ["train", "mlp", "--method", "dense", "--dataset", "mnist", "--root", "idx", "--epochs", "1"]


def _garbage_cifar(d: Path) -> list[str]:
    (d / "c" / "cifar-10-batches-py").mkdir(parents=True)
    for f in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch", "batches.meta"):
        (d / "c" / "cifar-10-batches-py" / f).write_bytes(b"\x80\x04garbage")
    return ["train", "resnet8", "--method", "dense", "--dataset", "cifar10", "--root", "c", "--epochs", "1"]


def _corrupt_study(d: Path) -> list[str]:
    (d / "r").mkdir()
    (d / "r" / "space.yaml").write_text("name: r\nspace: {arch: [mlp], method: [dense]}\n")
    (d / "r" / "study.db").write_bytes(b"not a database" * 100)
    return ["pick", "r", "--max-params", "1M"]


def _greedy(d: Path) -> list[str]:
    """A local run whose trials ask for GPUs no machine here has: they would wait for ever."""
    path = write_space(d, methods="[dense]")
    path.write_text(path.read_text().replace("cpus_per_trial: 1,", "cpus_per_trial: 1, gpus_per_trial: 1000,"))
    return ["run", str(path), "--out", str(d / "run")]


def _model_run(d: Path, case: str) -> list[str]:
    """A run folder whose one finished trial left the model file ``case`` of the corpus: ``export`` must refuse it."""
    from ._modelfiles import CORPUS

    run = d / "r"
    (run / "trials" / "0000").mkdir(parents=True)
    (run / "space.yaml").write_text("name: r\ndataset: {name: fashion-mnist-small}\nspace: {arch: [mlp], method: [dense]}\n")
    study = optuna.create_study(study_name="r", storage=f"sqlite:///{run / 'study.db'}")
    study.add_trial(optuna.trial.create_trial(value=0.5, user_attrs={"config": {"arch": "mlp", "method": "dense"}}))
    CORPUS[case][0](run / "trials" / "0000" / "model.safetensors")
    return ["export", "r", "--trial", "0", "--out", "exported"]


def _file_as(d: Path, name: str, text: bytes = b"mine") -> Path:
    (d / name).write_bytes(text)
    return d / name


BAD = {
    "non-utf8 space": (lambda d: ["check", str(_file_as(d, "s.yaml", b"name: a\n\xff\xfe: 1\n"))], "s.yaml: cannot read"),
    "a folder as space": (lambda d: ((d / "f.yaml").mkdir(), ["check", "f.yaml"])[1], "f.yaml"),
    "corrupt idx file": (_garbage_idx, "idx"),
    "corrupt cifar folder": (_garbage_cifar, "not a readable cifar10 folder"),
    "budget 1e400": (lambda d: ["compress", "mlp", "--budget", "1e400"], "--budget"),
    "num-classes 1e11": (lambda d: ["compress", "mlp", "--budget", "50%", "--num-classes", "100000000000"], "--num-classes"),
    "input-size 64 for a 28 px mlp": (lambda d: ["compress", "mlp", "--budget", "50%", "--input-size", "64"], "--input-size"),
    "input-size 100000": (lambda d: ["compress", "mlp", "--budget", "50%", "--input-size", "100000"], "--input-size"),
    "run --out a file": (lambda d: ["run", str(ROOT / "spaces" / "quick.yaml"), "--out", str(_file_as(d, "afile"))], "--out"),
    "compress --out an existing file": (lambda d: ["compress", "mlp", "--budget", "50%", "--out", str(_file_as(d, "m.st"))],
                                        "--force"),
    "pick on a corrupt study.db": (_corrupt_study, "cannot read the study"),
    "a GPU request this machine cannot give": (_greedy, "resources.gpus_per_trial=1000 but this machine has"),
}
# model files: the commands that load one (export) refuse each before building anything (tests/_modelfiles.py)
# (a few through the real command, each a process of its own; the whole corpus in-process further down)
for _case in ("truncated", "huge header", "bad JSON entry", "1e8 hidden units", "100000 hashes", "1M tiny layers"):
    BAD[f"model file: {_case}"] = (lambda d, c=_case: _model_run(d, c), "trial 0's model file: ")
if not __import__("torch").cuda.is_available():
    BAD["--device cuda without one"] = (lambda d: ["train", "mlp", "--method", "dense", "--device", "cuda", "--epochs", "1"],
                                        "--device")


# A small launcher measures the command. ru_maxrss is a high-water mark that survives exec, so a command
# forked straight from pytest (over a GiB by now) would report pytest's size, not its own.
_MEASURE = ("import json, os, subprocess, sys\n"
            "p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n"
            "err = p.stderr.read()\n"
            "_, status, u = os.wait4(p.pid, 0)\n"  # this child's own usage (RUSAGE_CHILDREN would sum every child)
            "sys.stderr.write(err.decode(errors='replace'))\n"
            "print(json.dumps([os.waitstatus_to_exitcode(status), u.ru_utime + u.ru_stime, u.ru_maxrss * 1024]))\n")


def _child(args: list[str], cwd: Path) -> tuple[int, str, float, int]:
    """(exit status, stderr, CPU seconds, peak RSS in bytes) of the real command as a child process."""
    r = subprocess.run([sys.executable, "-c", _MEASURE, sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    rc, cpu, rss = json.loads(r.stdout.strip().splitlines()[-1])
    return rc, r.stderr, cpu, rss


@pytest.fixture(scope="module")
def startup_cpu(tmp_path_factory) -> float:
    """CPU seconds of starting Python with smhsearch and torch imported: what every command pays before it checks."""
    _, _, cpu, _ = _child(["-c", "import smhsearch.cli, torch, smhsearch.methods"], tmp_path_factory.mktemp("base"))
    return cpu


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, case, startup_cpu):
    make, names = BAD[case]
    args = make(tmp_path)
    before = snapshot(tmp_path)
    rc, err, cpu, rss = _child(["-m", "smhsearch.cli", *args], tmp_path)
    assert rc == 2, err[-2000:]
    assert "Traceback" not in err and err.strip().count("\n") == 0 and names in err, err[-2000:]
    assert snapshot(tmp_path) == before  # nothing written, no stray temporary
    # the target is 5 s; 10 s of CPU beyond the start leaves room for a loaded shared machine
    assert cpu - startup_cpu < 10.0, f"{case}: {cpu:.1f}s CPU beyond a {startup_cpu:.1f}s start"
    assert rss < 1 << 30, f"{case}: peak RSS {rss / 2**20:.0f} MiB"


def test_atomic_write_removes_its_temporary_on_failure(tmp_path):
    """A writer that fails mid-way (disk full, a bug) leaves the old file whole and no temporary behind."""
    from smhsearch._atomic import atomic_path
    from smhsearch.job import write_record

    write_record(tmp_path / "trial.json", {"status": "complete"})
    looped: dict = {"status": "complete"}
    looped["self"] = looped
    with pytest.raises(ValueError, match="Circular reference"):  # json cannot encode it: fails mid-write
        write_record(tmp_path / "trial.json", looped)
    assert json.loads((tmp_path / "trial.json").read_text()) == {"status": "complete"}
    with pytest.raises(OSError), atomic_path(tmp_path / "x.bin") as tmp:
        tmp.write_bytes(b"half")
        raise OSError(28, "No space left on device")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trial.json"]


@pytest.fixture
def full_disk(tmp_path):
    """A real 64 KiB tmpfs: a write past it fails with ENOSPC, as on a full disk."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"a small tmpfs cannot be mounted here (it needs root): {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_a_full_disk_is_one_line_and_keeps_the_old_file(full_disk, cli):
    """safetensors' own writer and Python's both: the file named, status 1 (the storage failed, not the request),
    the user's old file whole, no temporary left."""
    import errno

    from smhsearch.job import write_record

    old = full_disk / "m.safetensors"
    old.write_bytes(b"the user's file")
    rc, out, err = cli("compress", "mlp", "--method", "smh", "--budget", "10%", "--out", old, "--force")  # about 320 KB
    assert rc == 1, out + err
    assert err.strip().count("\n") == 0 and f"{old}: No space left on device" in err, err
    assert old.read_bytes() == b"the user's file"
    with pytest.raises(OSError) as e:
        write_record(full_disk / "trial.json", {"history": "x" * 200_000})
    assert (e.value.errno, e.value.filename) == (errno.ENOSPC, str(full_disk / "trial.json"))
    assert sorted(p.name for p in full_disk.iterdir()) == ["m.safetensors"]


def test_changing_the_objectives_under_a_run_is_refused(tmp_path):
    """The study's directions are fixed at its start: other objectives would make every later trial fail."""
    from smhsearch.search import open_study, plan_run
    from smhsearch.space import load_space

    path = write_space(tmp_path, methods="[dense]", search=", objectives: [accuracy, stored_params]")
    open_study(plan_run(load_space(path), path, tmp_path / "run"))
    path = write_space(tmp_path, methods="[dense]", search=", objectives: [accuracy, flops]")
    with pytest.raises(ValueError, match="search.objectives changed"):
        open_study(plan_run(load_space(path), path, tmp_path / "run"))
    path = write_space(tmp_path, methods="[dense]", search=", objectives: [accuracy, stored_params], trials: 5")
    open_study(plan_run(load_space(path), path, tmp_path / "run"))  # a new trial count is fine


@pytest.mark.parametrize("case", sorted(__import__("tests._modelfiles", fromlist=["CORPUS"]).CORPUS))
def test_a_malformed_model_file_is_refused_in_one_line(tmp_path, case):
    """Every file of the corpus: ModelFileError (a ValueError) naming the file and what is wrong, in one line."""
    from smhsearch._modelfile import ModelFileError
    from smhsearch.export import load_trained

    from ._modelfiles import CORPUS

    make, expected = CORPUS[case]
    path = make(tmp_path / "model.safetensors")
    with pytest.raises(ModelFileError) as e:
        load_trained(path)
    message = str(e.value)
    assert message.startswith(str(path)) and expected in message and "\n" not in message, message


@pytest.mark.parametrize("case", ["truncated", "garbage", "another model", "other rates"])
def test_an_unusable_checkpoint_is_set_aside_and_training_starts_over(tmp_path, case, caplog):
    """A checkpoint only saves time: a cut or foreign one is moved aside (kept), nothing of it applied, and the
    run trains from the first epoch to the same model as a run that never had one. "other rates": the same
    model trained at other learning rates (as after a change of a method's rate rule) is another run."""
    import torch

    from smhsearch.data import load_dataset
    from smhsearch.models import create_model
    from smhsearch.train import TrainConfig, train

    data = load_dataset("fashion-mnist-small")
    cfg = TrainConfig(epochs=1, batch_size=256, lr=0.05, compile="off")

    def make():
        torch.manual_seed(0)
        return create_model("mlp", hidden=[16])

    straight = make()
    train(straight, data, cfg, progress=False)
    ckpt = tmp_path / "ckpt.pt"
    if case == "another model":
        torch.manual_seed(0)
        other = create_model("mlp", hidden=[8])
        train(other, data, cfg, checkpoint=ckpt, progress=False)
    elif case == "other rates":
        train(make(), data, TrainConfig(epochs=1, batch_size=256, lr=0.1, compile="off"), checkpoint=ckpt, progress=False)
    else:
        train(make(), data, cfg, checkpoint=ckpt, progress=False)
        data_bytes = ckpt.read_bytes()
        ckpt.write_bytes(data_bytes[: len(data_bytes) // 2] if case == "truncated" else b"not a checkpoint" * 50)
    before = ckpt.read_bytes()
    resumed = make()
    result = train(resumed, data, cfg, checkpoint=ckpt, progress=False)
    assert (tmp_path / "ckpt.pt.unusable").read_bytes() == before  # kept, not deleted
    assert "cannot be used" in caplog.text and len(result.history) == 1
    for (n, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), n
