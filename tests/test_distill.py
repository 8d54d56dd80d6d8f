"""Distillation: the loss against a hand computation, the teacher trained once per key and shared (across
concurrent jobs and across a kill and resume), the space's ``train.distill`` and ``distill`` axis, and
``smhsearch train --distill``."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from smhsearch.distill import DistillConfig, kd_loss
from smhsearch.job import JobSpec, run_job, teacher_spec
from smhsearch.methods import SMH, Dense, HashedNets
from smhsearch.teachers import teacher_key
from smhsearch.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
DATA = {"n": 256, "size": 8, "in_channels": 1}


DEFAULT = DistillConfig()
UNCOMPRESSED = Dense()


def spec(method=UNCOMPRESSED, epochs: int = 2, distill: DistillConfig | None = DEFAULT, **train) -> JobSpec:
    train = {"batch_size": 32, "lr": 0.05, **train}
    return JobSpec("mlp", method=method, model_kwargs={"hidden": [32]}, dataset="synthetic", dataset_kwargs=DATA,
                   train=TrainConfig(epochs=epochs, distill=distill, **train))


# --- the loss --------------------------------------------------------------------------------------

def test_kd_loss_matches_a_hand_computation():
    s = [[1.0, -0.5, 2.0], [0.2, 0.3, -1.0]]
    t = [[3.0, 0.0, 1.0], [-1.0, 2.5, 0.5]]
    y = [2, 0]
    T, alpha = 4.0, 0.9

    def softmax(z, temp=1.0):
        e = [math.exp(v / temp) for v in z]
        return [v / sum(e) for v in e]

    ce = sum(-math.log(softmax(si)[yi]) for si, yi in zip(s, y)) / 2
    kl = sum(sum(p * math.log(p / q) for p, q in zip(softmax(ti, T), softmax(si, T))) for si, ti in zip(s, t)) / 2
    want = (1 - alpha) * ce + alpha * T * T * kl
    got = kd_loss(torch.tensor(s), torch.tensor(t), torch.tensor(y), DistillConfig(temperature=T, alpha=alpha))
    assert float(got) == pytest.approx(want, rel=1e-6)
    # alpha = 0 is plain cross-entropy (label smoothing included); alpha = 1 is the soft term alone
    cfg0 = DistillConfig(alpha=0.0)
    assert float(kd_loss(torch.tensor(s), torch.tensor(t), torch.tensor(y), cfg0)) == pytest.approx(ce, rel=1e-6)
    smoothed = F.cross_entropy(torch.tensor(s), torch.tensor(y), label_smoothing=0.1)
    assert torch.equal(kd_loss(torch.tensor(s), torch.tensor(t), torch.tensor(y), cfg0, label_smoothing=0.1), smoothed)
    soft = kd_loss(torch.tensor(s), torch.tensor(t), torch.tensor(y), DistillConfig(temperature=T, alpha=1.0))
    assert float(soft) == pytest.approx(T * T * kl, rel=1e-6)


def test_kd_loss_gradient_reaches_the_student_only():
    s = torch.randn(4, 5, requires_grad=True)
    t = torch.randn(4, 5, requires_grad=True)
    kd_loss(s, t, torch.tensor([0, 1, 2, 3]), DistillConfig()).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0 and t.grad is None


@pytest.mark.parametrize("kwargs, message", [
    ({"alpha": 2}, r"0 <= alpha <= 1 must hold, but got \(alpha=2\)"), ({"alpha": -0.1}, "0 <= alpha <= 1 must hold"),
    ({"temperature": 0}, "0 < temperature < inf must hold"), ({"temperature": float("inf")}, "0 < temperature < inf must hold"),
    ({"teacher": "no/such/model.safetensors"},
     "teacher must be 'dense' or the path of a saved model file, but got no model file at 'no/such/model.safetensors'"),
    ({"teacher": ""}, "teacher must be 'dense' or the path of a saved model file, but got ''"),
    ({"teacher_epochs": 0}, "teacher_epochs must be an int >= 1 or null, but got 0"),
    ({"teacher_epochs": 2.5}, "teacher_epochs must be an int >= 1"),
    ({"teacher": __file__, "teacher_epochs": 3}, "teacher_epochs applies to teacher 'dense'"),
])
def test_distill_config_checks_itself(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DistillConfig(**kwargs)


def test_a_mapping_becomes_the_config_and_unknown_keys_are_refused():
    assert TrainConfig(distill={"alpha": 0.5}).distill == DistillConfig(alpha=0.5)
    assert TrainConfig(distill={}).distill == DistillConfig()
    with pytest.raises(ValueError, match="unknown key.*beta"):
        TrainConfig(distill={"beta": 1})


# --- the trainer -----------------------------------------------------------------------------------

def test_the_trainer_needs_a_teacher_exactly_when_distilling():
    from smhsearch.data import load_dataset
    from smhsearch.models import create_model
    from smhsearch.train import train

    data = load_dataset("synthetic", **DATA)
    net = create_model("mlp", image_size=8, in_channels=1, hidden=[8])
    with pytest.raises(ValueError, match="teacher model is needed exactly when cfg.distill is set"):
        train(net, data, TrainConfig(epochs=1, distill=DistillConfig()), progress=False)
    with pytest.raises(ValueError, match="teacher model is needed exactly when cfg.distill is set"):
        train(
            net, data, TrainConfig(epochs=1), progress=False, teacher=create_model("mlp", image_size=8, in_channels=1, hidden=[8])
        )


def test_distillation_changes_training_and_alpha_zero_does_not():
    """alpha = 0 trains exactly as without a teacher; alpha = 0.9 pulls the student toward the teacher."""
    plain = run_job(spec(SMH(budget=0.5), distill=None))
    zero = run_job(spec(SMH(budget=0.5), distill=DistillConfig(alpha=0.0)))
    kd = run_job(spec(SMH(budget=0.5)))
    for a, b in zip(plain.train.history, zero.train.history):
        assert a.train_loss == pytest.approx(b.train_loss, rel=1e-6) and a.val_acc == b.val_acc
    assert kd.train.history[-1].train_loss != pytest.approx(plain.train.history[-1].train_loss, rel=1e-3)
    assert kd.record["teacher"]["trained_here"] and kd.metrics["teacher_forward_s"] > 0
    assert kd.metrics["teacher_train_seconds"] > 0 and kd.record["train_settings"]["teacher_forward_total_s"] > 0


def test_a_teacher_file_is_read_and_checked_against_the_data(tmp_path):
    from smhsearch.export import save_trained
    from smhsearch.models import create_model

    dense = run_job(spec(distill=None, epochs=1), record_path=tmp_path / "t" / "result.json")
    job = run_job(spec(HashedNets(budget=0.5), distill=DistillConfig(teacher=str(dense.model_file))))
    assert job.record["teacher"] == {"source": str(dense.model_file.resolve()), "trained_here": False, "train_seconds": 0.0}
    wrong = save_trained(
        create_model("mlp", image_size=8, in_channels=1, hidden=[8], num_classes=3), tmp_path / "three.safetensors"
    )
    with pytest.raises(ValueError, match=r"distill.teacher must give one output per class of synthetic \(10\), but got .*, "
                                         r"which gives 3 outputs"):
        run_job(spec(SMH(budget=0.5), distill=DistillConfig(teacher=str(wrong))), record_path=tmp_path / "never" / "r.json")
    assert not (tmp_path / "never").exists()  # refused before anything was written


# --- one teacher per key, shared -------------------------------------------------------------------

def _job(method: str, record: Path, teachers: Path, epochs: int, kill_after: int | None) -> None:
    """A job in a forked child process; with ``kill_after``, SIGKILLed right after the teacher's checkpoint of that epoch."""
    import signal

    import smhsearch.train as train_module

    if kill_after is not None:
        save = train_module.save_checkpoint

        def save_then_die(path, model, opt, sched, gen, be, epoch, history):
            save(path, model, opt, sched, gen, be, epoch, history)
            if epoch + 1 == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)

        train_module.save_checkpoint = save_then_die
    run_job(spec({"smh": SMH(budget=0.5), "hashednets": HashedNets(budget=0.5)}[method], epochs=epochs), record_path=record,
            teachers=teachers)


def child(method: str, record: Path, teachers: Path, epochs: int = 2, kill_after: int | None = None):
    """A started process running :func:`_job`: spawned, not forked (a process that has run autograd, as a test
    worker has, cannot fork a child that runs it: pytorch's Autograd-and-Fork)."""
    import multiprocessing

    p = multiprocessing.get_context("spawn").Process(target=_job, args=(method, record, teachers, epochs, kill_after))
    p.start()
    return p


def teacher_folder(teachers: Path, epochs: int = 2) -> Path:
    from smhsearch.data import load_dataset

    return teachers / teacher_key(
        {**teacher_spec(spec(epochs=epochs)).to_dict(), "data": load_dataset("synthetic", **DATA).describe()}
    )


def test_two_concurrent_jobs_share_one_teacher(tmp_path):
    teachers = tmp_path / "teachers"
    jobs = [child(m, tmp_path / m / "trial.json", teachers) for m in ("smh", "hashednets")]
    for p in jobs:
        p.join(timeout=300)
        assert p.exitcode == 0
    records = [json.loads((tmp_path / m / "trial.json").read_text()) for m in ("smh", "hashednets")]
    assert [r["status"] for r in records] == ["complete", "complete"]
    assert sorted(r["teacher"]["trained_here"] for r in records) == [False, True]  # one trained it, the other waited or loaded it
    assert len({r["teacher"]["key"] for r in records}) == 1
    assert [p.name for p in teachers.iterdir()] == [teacher_folder(teachers).name]
    teacher = json.loads((teacher_folder(teachers) / "teacher.json").read_text())
    assert (
        teacher["status"] == "complete" and len(teacher["sessions"]) == 1 and [h["epoch"] for h in teacher["history"]] == [1, 2]
    )
    assert not (teacher_folder(teachers) / "checkpoint.pt").exists()
    # both record what the teacher cost: the same training seconds, each its own forward per step
    assert records[0]["metrics"]["teacher_train_seconds"] == records[1]["metrics"]["teacher_train_seconds"] > 0
    assert all(r["metrics"]["teacher_forward_s"] > 0 for r in records)
    # other training settings: another key, another teacher
    other = run_job(spec(SMH(budget=0.5), lr=0.02), record_path=tmp_path / "lr" / "trial.json", teachers=teachers)
    assert other.record["teacher"]["trained_here"] and len(list(teachers.iterdir())) == 2
    # other data given to the job (a benchmark's subset): another teacher too
    from smhsearch.data import load_dataset

    subset = load_dataset("synthetic", **DATA)
    subset.train.x, subset.train.y = subset.train.x[:128], subset.train.y[:128]
    third = run_job(spec(SMH(budget=0.5)), data=subset, record_path=tmp_path / "sub" / "trial.json", teachers=teachers)
    assert third.record["teacher"]["trained_here"] and len(list(teachers.iterdir())) == 3


def test_a_teacher_killed_while_training_resumes_and_is_never_trained_again(tmp_path):
    teachers, epochs = tmp_path / "teachers", 4
    killed = child("smh", tmp_path / "a" / "trial.json", teachers, epochs=epochs, kill_after=2)
    killed.join(timeout=300)
    assert killed.exitcode == -9  # SIGKILL
    folder = teacher_folder(teachers, epochs)
    left = json.loads((folder / "teacher.json").read_text())
    assert left["status"] == "running" and (folder / "checkpoint.pt").is_file() and not (folder / "model.safetensors").exists()
    assert [h["epoch"] for h in left["history"]] == [1]  # the kill came between epoch 2's checkpoint and its record
    # the resumed job takes the lock the dead one held, continues from epoch 3 and finishes the teacher
    resumed = run_job(spec(SMH(budget=0.5), epochs=epochs), record_path=tmp_path / "a" / "trial.json", teachers=teachers)
    assert resumed.record["teacher"]["trained_here"] and resumed.record["status"] == "complete"
    done = json.loads((folder / "teacher.json").read_text())
    assert [s["resumed_from_epoch"] for s in done["sessions"]] == [0, 2]
    assert [h["epoch"] for h in done["history"]] == [1, 2, 3, 4]  # every epoch trained once
    assert not (folder / "checkpoint.pt").exists()
    # the resumed teacher is the uninterrupted one, bit for bit
    fresh = run_job(
        spec(HashedNets(budget=0.5), epochs=epochs), record_path=tmp_path / "f" / "trial.json", teachers=tmp_path / "fresh"
    )
    from safetensors.torch import load_file

    a, b = load_file(folder / "model.safetensors"), load_file(fresh.record["teacher"]["folder"] + "/model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # a later job of the run loads it: never trained again
    later = run_job(spec(HashedNets(budget=0.5), epochs=epochs), record_path=tmp_path / "b" / "trial.json", teachers=teachers)
    assert not later.record["teacher"]["trained_here"]
    assert len(json.loads((folder / "teacher.json").read_text())["sessions"]) == 2


# --- the space: train.distill and the distill axis ------------------------------------------------

SPACE = """name: kd
dataset: {{name: fashion-mnist-small}}
train: {{epochs: 1, batch_size: 256, lr: 0.05{train}}}
space: {{arch: [mlp], budget: ["20%"], method: [dense, smh]{space}}}
search: {{sampler: grid}}
scheduler: {{kind: none}}
"""


def space_file(tmp_path: Path, train: str = "", space: str = "") -> Path:
    path = tmp_path / "kd.yaml"
    path.write_text(SPACE.format(train=train, space=space))
    return path


def test_the_distill_axis_doubles_the_candidates_and_each_trial_gets_its_config(tmp_path):
    import optuna

    from smhsearch.search import plan_run, trial_spec
    from smhsearch.space import load_space

    path = space_file(tmp_path, train=", distill: {alpha: 0.5}", space=", distill: [false, true]")
    space = load_space(path)
    plan = plan_run(space, path, tmp_path / "run")
    assert [(c.method, c.distill) for c in plan.candidates] == [("dense", False), ("dense", True), ("smh", False), ("smh", True)]
    assert plan.candidates[3].label() == "mlp smh@20% (all/fixed) distilled"
    for c in plan.candidates:  # the grid's parameters name the candidate back, and the job distils exactly when it says
        assert plan.structured.candidate_of(plan.structured.params_of(c)) == c
        assert trial_spec(space, path, c).train.distill == (DistillConfig(alpha=0.5) if c.distill else None)
    study = optuna.create_study(directions=["maximize", "minimize", "maximize"])
    study.enqueue_trial({"method": "smh"})
    trial = study.ask()
    plan.structured(trial)
    assert trial.distributions["distill"] == optuna.distributions.CategoricalDistribution([False, True])
    # without the axis, train.distill distils every trial; with neither, none
    assert all(trial_spec(load_space(p), p, c).train.distill == DistillConfig()
               for p in [space_file(tmp_path, train=", distill: {}")] for c in load_space(p).candidates())
    path = space_file(tmp_path)
    assert all(trial_spec(load_space(path), path, c).train.distill is None for c in load_space(path).candidates())
    assert "distill" not in plan_run(load_space(path), path, tmp_path / "r2").candidates[0].params()


def test_a_relative_teacher_path_is_taken_from_the_current_directory(tmp_path, monkeypatch):
    from smhsearch.space import load_space

    dense = run_job(spec(distill=None, epochs=1), record_path=tmp_path / "t" / "result.json")
    monkeypatch.chdir(tmp_path)
    space = load_space(space_file(tmp_path, train=", distill: {teacher: t/model.safetensors}"))
    assert space.train.distill.teacher == str(dense.model_file.resolve())
    assert json.loads(space.as_written())["train"]["distill"] == {
        "teacher": str(dense.model_file.resolve())
    }  # what every trial reads


@pytest.mark.parametrize(
    "train, space, message",
    [
        (", distill: {alpha: 2}", "", "train.distill.alpha: 0 <= alpha <= 1 must hold, but got (alpha=2.0)"),
        (", distill: {temperature: 0}", "", "train.distill.temperature: 0 < temperature < inf must hold"),
        (
            ", distill: {teacher: nowhere/model.safetensors}",
            "",
            "train.distill.teacher: teacher must be 'dense' or the path of a saved model file, but got no model file at "
            "'nowhere/model.safetensors'",
        ),
        (
            ", distill: {beta: 1}",
            "",
            "train.distill.beta: unknown key; allowed keys under train.distill: teacher, temperature, alpha",
        ),
        (
            ", distill: {alpha: 0.5}",
            ", distill: [false]",
            "train.distill: train.distill needs a trial that distills: add true "
            "to space.distill or remove train.distill, "
            "but got space.distill [False], so no trial of this space distills",
        ),
        ("", ", distill: [true, true]", "space.distill: space.distill's values must not repeat, but got [True, True]"),
        ("", ", distill: [maybe]", "space.distill.0: Input should be a valid boolean"),
        ("", ", distill: []", "space.distill: List should have at least 1 item"),
    ],
)
def test_bad_distill_keys_exit_2_naming_the_file_and_key(tmp_path, cli, train, space, message):
    path = space_file(tmp_path, train=train, space=space)
    rc, out, err = cli("check", path)
    assert rc == 2 and str(path) in err and message in err, err
    assert len(err.strip().splitlines()) == 1, err


# --- smhsearch train --distill ---------------------------------------------------------------------

TRAIN = ["train", "resnet8", "--dataset", "synthetic", "--epochs", "1", "--batch-size", "32", "--lr", "0.05", "--device", "cpu"]


def test_train_distill_flags_make_the_training_config():
    from smhsearch.cli import build_parser
    from smhsearch.cli._common import train_from_flags

    def cfg(*flags):
        return train_from_flags(build_parser("train").parse_args([*TRAIN, *flags]), 0)

    assert cfg().distill is None
    assert cfg("--distill").distill == DistillConfig()
    assert cfg("--distill", "--distill-alpha", "0.5", "--distill-temperature", "2").distill == DistillConfig(
        temperature=2.0, alpha=0.5
    )
    assert cfg("--distill", "--distill-teacher-epochs", "30").distill == DistillConfig(teacher_epochs=30)


def test_the_teacher_trains_its_own_epochs_and_a_weaker_teacher_is_said():
    from smhsearch.job import JobSpec, _weaker_teacher, teacher_spec

    spec = JobSpec("mlp", SMH(budget="10%"), train=TrainConfig(epochs=3, distill={"teacher_epochs": 30}))
    t = teacher_spec(spec)
    assert t.method == Dense() and t.train.epochs == 30 and t.train.distill is None and spec.train.epochs == 3
    assert teacher_spec(JobSpec("mlp", train=TrainConfig(epochs=3, distill={}))).train.epochs == 3  # default: the students' own
    teacher = {"val_acc": 0.78}
    _weaker_teacher(teacher, {"val_acc": 0.80})
    assert teacher["weaker_than_student"] is True
    teacher = {"val_acc": 0.89}
    _weaker_teacher(teacher, {"val_acc": 0.86})
    assert "weaker_than_student" not in teacher


@pytest.mark.slow  # three trainings and their speed measurements in this process: a minute or two on 2 busy cores
def test_train_distill_flag_trains_the_teacher_beside_the_result(tmp_path, cli):
    out = tmp_path / "out"
    rc, stdout, err = cli(
        *TRAIN, "--method", "smh", "--budget", "50%", "--distill", "--distill-alpha", "0.5", "--out", out, "--json"
    )
    assert rc == 0, err
    record = json.loads((out / "result.json").read_text())
    assert record["spec"]["train"]["distill"] == {"teacher": "dense", "temperature": 4.0, "alpha": 0.5, "teacher_epochs": None}
    assert record["teacher"]["trained_here"] and record["metrics"]["teacher_train_seconds"] > 0
    folder = Path(record["teacher"]["folder"])
    assert folder.parent == out / "teachers" and (folder / "model.safetensors").is_file()
    assert json.loads((folder / "teacher.json").read_text())["spec"]["train"]["distill"] is None  # the teacher is not distilled
    # that teacher file, given by path, is read, not trained
    rc, stdout, err = cli(*TRAIN, "--distill", "--distill-teacher", folder / "model.safetensors", "--json")
    assert rc == 0, err and json.loads(stdout)["teacher"]["trained_here"] is False


@pytest.mark.parametrize("flags, message", [
    (["--distill-alpha", "0.5"], "--distill-alpha: applies with --distill only"),
    (["--distill", "--distill-alpha", "2"], "--distill-alpha: 0 <= alpha <= 1 must hold, but got (alpha=2.0)"),
    (["--distill", "--distill-temperature", "x"], "--distill-temperature: 'x' is not a number"),
    (["--distill", "--distill-teacher", "no/such.safetensors"],
     "--distill-teacher: teacher must be 'dense' or the path of a saved model file, but got no model file at "
     "'no/such.safetensors'"),
    (["--distill", "--distill-teacher", "README.md"], "--distill-teacher: "),
])
def test_train_bad_distill_flags_exit_2_with_nothing_written(tmp_path, cli, monkeypatch, flags, message):
    monkeypatch.chdir(ROOT)
    rc, out, err = cli(*TRAIN, *flags, "--out", tmp_path / "out")
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


# --- a search: trials share the teacher, across a kill of the driver and a resume ------------------

SEARCH = """name: kdrun
dataset: {name: fashion-mnist-small}
train: {epochs: 3, batch_size: 256, lr: 0.05, distill: {alpha: 0.9}}
space: {arch: [mlp], budget: ["30%"], method: [smh, hashednets], distill: [true]}
search: {sampler: grid}
scheduler: {kind: none}
resources: {cpus_per_trial: 1, max_concurrent: 2}
"""


@pytest.mark.slow  # Ray starts twice and the teacher and two students train: a few minutes on 2 busy cores
def test_a_search_killed_while_its_teacher_trains_resumes_it_and_trains_it_once(tmp_path):
    import signal
    import subprocess
    import time

    space, run = tmp_path / "kdrun.yaml", tmp_path / "run"
    space.write_text(SEARCH)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "first.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "smhsearch.cli", "run", str(space), "--out", str(run)], stdout=out,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline, record = time.time() + 400, {}
    try:  # kill the driver and its trials once the teacher has finished an epoch, before it is complete
        while time.time() < deadline and proc.poll() is None:
            found = list(run.glob("teachers/*/teacher.json"))
            record = json.loads(found[0].read_text()) if found else {}
            if record.get("history"):
                break
            time.sleep(0.1)
        assert record.get("status") == "running" and record.get("history"), f"exit {proc.poll()}:\n{log.read_text()[-3000:]}"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    r = subprocess.run(
        [sys.executable, "-m", "smhsearch.cli", "run", str(space), "--out", str(run)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (folder,) = list((run / "teachers").iterdir())
    teacher = json.loads((folder / "teacher.json").read_text())
    assert teacher["status"] == "complete" and [h["epoch"] for h in teacher["history"]] == [1, 2, 3]  # every epoch once
    assert len(teacher["sessions"]) == 2 and teacher["sessions"][1]["resumed_from_epoch"] >= 1
    summary = json.loads(r.stdout[r.stdout.index("{"):])  # the resumed run's printed summary
    records = [json.loads(p.read_text()) for p in run.glob("trials/*/trial.json")]
    complete = [rec for rec in records if rec["status"] == "complete"]
    assert sorted(rec["config"]["method"] for rec in complete) == ["hashednets", "smh"]
    assert sum(rec["teacher"]["trained_here"] for rec in complete) == 1  # the resumed trial finished it, the other loaded it
    assert all(rec["metrics"]["teacher_forward_s"] > 0 and rec["teacher"]["key"] == folder.name for rec in complete)
    assert [t["key"] for t in summary["teachers"]] == [folder.name] and summary["teachers"][0]["sessions"] == 2
