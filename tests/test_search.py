"""The search driver for real: Ray Tune on a local Ray (2 CPUs), the Optuna study in SQLite.

These start Ray, so each takes tens of seconds; they are the driver's reliability promises:
every trial recorded, a failing trial recorded as failed while the search goes on, resume
after SIGKILL without losing or repeating finished trials, and a real cluster via --address.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

ROOT = Path(__file__).resolve().parents[1]
SPACE = """name: {name}
dataset: {{name: fashion-mnist-small}}
train: {{epochs: {epochs}, batch_size: 256, lr: 0.05{mult}}}
space: {{arch: [mlp], budget: ["30%"], method: [{methods}]}}
search: {{sampler: grid}}
scheduler: {{kind: none}}
resources: {{cpus_per_trial: 1}}
"""


def write_space(tmp_path: Path, name: str, methods: str, epochs: int = 1) -> Path:
    path = tmp_path / f"{name}.yaml"
    mult = ", variable_lr_mult: {hashed1: 1.0e+9}" if "hashed1" in methods else ""  # diverges on purpose where it is run
    path.write_text(SPACE.format(name=name, methods=methods, epochs=epochs, mult=mult))
    return path


def smhsearch(*args: str, timeout: int = 600, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "smhsearch.cli", *args], capture_output=True, text=True, timeout=timeout, env=env, **kw
    )


def study_of(run: Path, name: str):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{run / 'study.db'}")


def test_run_records_every_trial_and_a_failure_does_not_stop_it(tmp_path):
    space = write_space(tmp_path, "t1", "dense, smh, hashed1")  # hashed1's lr x 1e9 diverges on purpose
    run = tmp_path / "run"
    r = smhsearch("run", str(space), "--out", str(run))
    assert r.returncode == 0, r.stdout + r.stderr
    study = study_of(run, "t1")
    S = optuna.trial.TrialState
    by_method = {t.user_attrs["config"]["method"]: t for t in study.trials}
    assert set(by_method) == {"dense", "smh", "hashed1"}
    assert by_method["hashed1"].state == S.FAIL and "TrainingDiverged" in by_method["hashed1"].user_attrs["error"]
    for m in ("dense", "smh"):
        t = by_method[m]
        assert t.state == S.COMPLETE and t.values[0] > 0.5  # val accuracy after one epoch
        record = json.loads((run / "trials" / f"{t.number:04d}" / "trial.json").read_text())
        assert record["status"] == "complete" and record["metrics"]["test_acc"] > 0.5
        assert {"smhsearch", "torch", "python"} <= set(record["versions"]) and "device" in record and record["seed"] == 0
        assert t.values[1] == record["metrics"]["stored_params"]
    assert (run / "trials" / f"{by_method['smh'].number:04d}" / "model.safetensors").is_file()
    assert json.loads((run / "trials" / f"{by_method['hashed1'].number:04d}" / "trial.json").read_text())["status"] == "failed"
    assert "[3/3 done" in r.stdout and "1 failed" in r.stdout
    assert (run / "space.yaml").is_file()
    # a second run of the same space has nothing left to do and re-runs nothing
    again = smhsearch("run", str(space), "--out", str(run))
    assert again.returncode == 0 and len(study_of(run, "t1").trials) == 3
    # the report lists the failed trial with its error, and pick never chooses it
    r = smhsearch("report", str(run), "--out", str(tmp_path / "t1.html"))
    assert r.returncode == 0, r.stderr
    page = (tmp_path / "t1.html").read_text()
    row = re.search(rf'<tr class="failed" data-number="{by_method["hashed1"].number}">(.*?)</tr>', page, re.S)
    assert row and "TrainingDiverged" in row.group(1)
    r = smhsearch("pick", str(run), "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["chosen"]["config"]["method"] in ("dense", "smh")


@pytest.mark.slow  # two driver starts and four 3-epoch trials: over a minute on 2 cores
def test_resume_after_sigkill_loses_and_repeats_nothing(tmp_path):
    space = write_space(tmp_path, "t2", "dense, smh, width, lowrank", epochs=3)
    run = tmp_path / "run"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    log = tmp_path / "first.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "smhsearch.cli", "run", str(space), "--out", str(run)],
                                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.time() + 200
    done: list[Path] = []
    try:
        while time.time() < deadline and proc.poll() is None:  # kill once one trial has finished, others under way
            done = [p for p in run.glob("trials/*/trial.json") if json.loads(p.read_text()).get("status") == "complete"]
            if done:
                break
            time.sleep(0.2)
        assert done, f"no trial finished before the kill (exit {proc.poll()}):\n{log.read_text()[-3000:]}"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finished_before = {json.loads(p.read_text())["number"] for p in done}
    r = smhsearch("run", str(space), "--out", str(run))
    assert r.returncode == 0, r.stdout + r.stderr
    study = study_of(run, "t2")
    S = optuna.trial.TrialState
    complete = [t for t in study.trials if t.state == S.COMPLETE]
    configs = [json.dumps(t.user_attrs["config"], sort_keys=True) for t in complete]
    assert len(configs) == len(set(configs)) == 4  # every candidate once, no duplicates
    assert finished_before <= {t.number for t in complete}  # finished trials kept, not re-run
    for t in study.trials:
        assert t.state == S.COMPLETE or t.user_attrs.get("interrupted")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop_cluster(port: int) -> None:
    """Stop the Ray cluster whose head listens on ``port``, and only it: ``ray stop`` would end every Ray on the
    machine, other tests' drivers included (a driver exits when its raylet dies)."""
    import signal

    mark = re.compile(rb"(:|gcs_server_port=)%d(\x00|$)" % port)  # its GCS address (any IP) in every process's arguments
    mine = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and mark.search((proc / "cmdline").read_bytes()):
                mine.append(int(proc.name))
        except OSError:
            continue
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in mine:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        time.sleep(2)


@pytest.mark.cluster
def test_run_on_a_real_local_cluster(tmp_path):
    ray = str(Path(sys.executable).with_name("ray"))
    port = _free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    start = subprocess.run([ray, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
                            "--include-dashboard=false", "--disable-usage-stats"],
                           capture_output=True, text=True, timeout=180, env=env)
    assert start.returncode == 0, start.stdout + start.stderr
    try:
        space = write_space(tmp_path, "t3", "dense, smh")
        r = smhsearch("run", str(space), "--out", str(tmp_path / "run"), "--address", "auto")  # the cluster just started here
        assert r.returncode == 0, r.stdout + r.stderr
        study = study_of(tmp_path / "run", "t3")
        assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) == 2
    finally:
        _stop_cluster(port)


@pytest.mark.slow  # three driver starts, each starting Ray: over a minute on 2 cores
def test_max_trials_then_resume_then_fresh(tmp_path):
    space = write_space(tmp_path, "t4", "dense, width")
    run = tmp_path / "run"
    def finished():  # a grid enqueues every candidate; the ones not run yet wait in the study
        return [t for t in study_of(run, "t4").trials if t.state.is_finished()]

    assert smhsearch("run", str(space), "--out", str(run), "--max-trials", "1").returncode == 0
    assert len(finished()) == 1
    assert smhsearch("run", str(space), "--out", str(run)).returncode == 0  # the rest, nothing twice
    configs = [json.dumps(t.user_attrs["config"], sort_keys=True) for t in finished()]
    assert len(configs) == len(set(configs)) == 2
    assert smhsearch("run", str(space), "--out", str(run), "--fresh", "--max-trials", "1").returncode == 0
    assert len(finished()) == 1  # the old study is gone


def test_journal_storage_and_changed_space_is_refused(tmp_path):
    from smhsearch.search import open_study, plan_run
    from smhsearch.space import load_space

    path = write_space(tmp_path, "t5", "dense, smh")
    text = path.read_text() + f"storage: {tmp_path / 'study.log'}\n"
    path.write_text(text)
    plan = plan_run(load_space(path), path, tmp_path / "run")
    study, _ = open_study(plan)
    assert (tmp_path / "study.log").is_file() and study.study_name == "t5"
    path.write_text(text.replace("dense, smh", "dense, smh, width"))
    with pytest.raises(ValueError, match="changed since .* --fresh"):
        open_study(plan_run(load_space(path), path, tmp_path / "run"))


def test_a_trial_that_finished_just_before_the_driver_died_is_recorded_not_rerun(tmp_path):
    """The race the SIGKILL test can hit: trial.json says complete, but the study never heard (no Ray needed to set it up)."""
    from smhsearch.search import open_study, plan_run
    from smhsearch.space import load_space

    space_path = write_space(tmp_path, "t6", "dense, smh", epochs=2)
    plan = plan_run(load_space(space_path), space_path, tmp_path / "run")
    study, _ = open_study(plan)
    S = optuna.trial.TrialState
    finished, cut = study.ask(), study.ask()  # two enqueued grid trials, both RUNNING when the driver dies
    first, second = plan.structured.sample(finished), plan.structured.sample(cut)  # the structured params the grid fixed
    assert {first, second} == set(plan.candidates)
    metrics = {"val_acc": 0.8, "test_acc": 0.79, "stored_params": 1234, "throughput": 50.0, "flops": 99, "epoch": 2}
    folder = plan.run_dir / "trials" / f"{finished.number:04d}"
    folder.mkdir(parents=True)
    bound = {"uid": study.user_attrs["uid"]}  # as a trial of this study writes it (a record of another study is never adopted)
    (folder / "trial.json").write_text(
        json.dumps({"number": finished.number, "status": "complete", "metrics": metrics, "study": bound})
    )
    cut_folder = plan.run_dir / "trials" / f"{cut.number:04d}"
    cut_folder.mkdir(parents=True)
    (cut_folder / "trial.json").write_text(
        json.dumps({"number": cut.number, "status": "running", "metrics": {"epoch": 1}, "study": bound})
    )

    study, _ = open_study(plan)  # the resume
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    done = by_number[finished.number]
    assert done.state == S.COMPLETE and done.values == [0.8, 1234.0, 50.0] and done.user_attrs["test_acc"] == 0.79
    assert by_number[cut.number].state == S.FAIL and by_number[cut.number].user_attrs["interrupted"]
    waiting = [t for t in study.get_trials(deepcopy=False) if t.state == S.WAITING]
    assert [plan.structured.candidate_of(t.system_attrs["fixed_params"]) for t in waiting] == [
        second
    ]  # only the cut one runs again
