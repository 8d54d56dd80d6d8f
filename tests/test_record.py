"""A trial's record: its states and the moves between them, the run folder's layout, and the searcher that records
outcomes in the study (driven here without starting Ray: ``suggest`` and ``on_trial_complete`` as Ray Tune calls them)."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import optuna
import pytest

from smhsearch._layout import RunLayout
from smhsearch._record import IllegalTransition, Status, TrialRecord

S = optuna.trial.TrialState
PACKAGE = Path(__file__).resolve().parent.parent / "smhsearch"
SPACE = """name: rec
dataset: {name: fashion-mnist-small}
train: {epochs: 2, batch_size: 256}
space: {arch: [mlp], budget: ["20%"], method: [smh]}
search: {sampler: random, trials: 3, seed: 0, objectives: [accuracy, stored_params]}
scheduler: {kind: none}
resources: {cpus_per_trial: 1}
"""


def written(path: Path) -> dict:
    return json.loads(path.read_text())


# -- the states and their moves ------------------------------------------------------------------------
def test_a_record_moves_only_where_its_state_allows_and_a_refused_move_writes_nothing(tmp_path):
    path = tmp_path / "trial.json"
    rec = TrialRecord.begin(path, number=4, attempt=1)
    rec.progress(metrics={"epoch": 1})
    assert written(path)["status"] == "running"
    rec.complete(metrics={"epoch": 2, "val_acc": 0.5})
    done = path.read_text()
    for move in (lambda: rec.fail("boom"), lambda: rec.stop_early(1), lambda: rec.progress(), rec.die,
                 lambda: rec.mark_transient(True)):
        with pytest.raises(IllegalTransition, match="complete"):
            move()
    assert path.read_text() == done and rec.status == Status.COMPLETE  # the file and the record stay complete

    stopped = TrialRecord.begin(tmp_path / "s.json")
    stopped.stop_early(1)
    with pytest.raises(IllegalTransition, match="cannot go from early_stopped to complete"):
        stopped.complete()
    running = TrialRecord.begin(tmp_path / "r.json")
    with pytest.raises(IllegalTransition, match="only a failed record is marked transient"):
        running.mark_transient(True)


def test_a_new_attempt_follows_only_a_died_worker_or_a_transient_failure(tmp_path):
    path = tmp_path / "trial.json"
    died = TrialRecord.begin(path, attempt=1)
    died.progress()
    assert TrialRecord.begin(path, TrialRecord.load(path), attempt=2).attempt == 2
    died.fail("OSError: no space left on device")
    died.mark_transient(True)
    assert TrialRecord.begin(path, TrialRecord.load(path), attempt=2).status == Status.RUNNING
    died.mark_transient(False)  # an error a retry would raise again
    with pytest.raises(IllegalTransition, match="a failed trial is not run again .*no space left"):
        TrialRecord.begin(path, TrialRecord.load(path), attempt=2)
    finished = TrialRecord.begin(tmp_path / "c.json")
    finished.complete()
    with pytest.raises(IllegalTransition, match="a complete trial is not run again"):
        TrialRecord.begin(tmp_path / "c.json", finished)


def test_a_record_written_before_the_type_reads_back_whole(tmp_path):
    """The keys on disk are the ones every earlier writer used; keys the type does not name are kept as they are."""
    old = {"number": 3, "study": {"name": "s", "uid": "u1"}, "config": {"arch": "mlp", "method": "smh"}, "attempt": 1,
           "label": "mlp smh@20%", "spec": {"arch": "mlp"}, "seed": 0, "status": "complete", "started": 1.0,
           "versions": {"torch": "2"}, "device": "cpu", "data": {"name": "x"}, "speed": {"cached": False},
           "metrics": {"val_acc": 0.5, "epoch": 2}, "history": [{"epoch": 1}], "resumed": False, "finished": 2.0,
           "stopped_early": False, "train_settings": {"lr": 0.1}, "tpu_visible_chips": None}
    path = tmp_path / "trial.json"
    path.write_text(json.dumps(old))
    rec = TrialRecord.load(path, "u1")
    assert rec.status == Status.COMPLETE and rec.metrics["val_acc"] == 0.5 and rec.extra["train_settings"] == {"lr": 0.1}
    assert json.loads(json.dumps(rec.as_json())) == old
    assert TrialRecord.load(path, "another study") is None  # never adopted by another study
    path.write_text("{not json")
    assert TrialRecord.load(path) is None
    path.write_text(json.dumps({"status": "exploded"}))
    assert TrialRecord.load(path) is None


# -- the layout owns the run folder's paths ------------------------------------------------------------
def _code_lines(pattern: str, skip: set[str]):
    for file in sorted(PACKAGE.rglob("*.py")):
        if file.name in skip:
            continue
        for n, line in enumerate(file.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if re.search(pattern, code):
                yield f"{file.relative_to(PACKAGE.parent)}:{n}: {line.strip()}"


def test_only_the_layout_builds_a_trial_path():
    hits = list(_code_lines(r"""["']trial\.json["']|/ *["']trials["']|:04d\}|["']checkpoint\.pt["']""", {"_layout.py"}))
    assert not hits, "build run-folder paths with smhsearch._layout.RunLayout:\n" + "\n".join(hits)


def test_the_layout_names_every_path_of_a_run_folder(tmp_path):
    layout = RunLayout(tmp_path)
    assert layout.trial_record(12) == tmp_path / "trials" / "0012" / "trial.json"
    assert layout.model_file(12).parent == layout.checkpoint(12).parent == layout.trial_dir(12)
    assert layout.storage_url(None) == f"sqlite:///{(tmp_path / 'study.db').resolve()}"
    assert layout.storage_url("postgresql://db/x") == "postgresql://db/x"
    (tmp_path / "trials").mkdir()
    (tmp_path / "space.yaml").write_text("x")
    (tmp_path / "speed").mkdir()
    assert sorted(layout.moved_aside()) == ["space.yaml", "trials"]  # the shared caches stay


# -- the searcher: Ray's public API only --------------------------------------------------------------
def test_the_searcher_uses_no_private_ray_attribute():
    hits = list(_code_lines(r"_ot_|_completed_trials|OptunaSearch|ray\._private", set()))
    assert not hits, "\n".join(hits)
    from ray.tune.search import Searcher

    from smhsearch.search._study import _searcher_class

    assert issubclass(_searcher_class(), Searcher)


@pytest.fixture
def searcher(tmp_path):
    from smhsearch.search import open_study, plan_run
    from smhsearch.search._study import _searcher
    from smhsearch.space import load_space

    path = tmp_path / "rec.yaml"
    path.write_text(SPACE)
    plan = plan_run(load_space(path), path, tmp_path / "run")
    study, storage = open_study(plan)
    return plan, study, _searcher(plan, storage)


def _record(plan, number: int, status: str, **fields) -> Path:
    path = plan.layout.trial_record(number)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"number": number, "study": {"name": "rec", "uid": plan.study_uid}, "status": status, **fields}))
    return path


def test_a_finished_record_wins_over_a_lost_acknowledgement(searcher):
    plan, study, s = searcher
    cfg = s.suggest("a")
    assert cfg["arch"] == "mlp" and cfg["_candidate"]["method"] == "smh" and study.trials[cfg["_number"]].state == S.RUNNING
    metrics = {"val_acc": 0.7, "stored_params": 1234, "epoch": 2}
    _record(plan, cfg["_number"], "complete", metrics=metrics)
    s.on_trial_complete("a", None, error=True)  # the worker's answer was lost, its record says complete
    t = study.trials[cfg["_number"]]
    assert t.state == S.COMPLETE and t.values == [0.7, 1234] and t.user_attrs["val_acc"] == 0.7
    s.on_trial_complete("a", None, error=True)  # Ray telling twice changes nothing
    assert study.trials[cfg["_number"]].state == S.COMPLETE


def test_a_worker_that_died_is_failed_with_its_cause_and_an_early_stop_is_pruned(searcher):
    plan, study, s = searcher
    died, stopped = s.suggest("d"), s.suggest("e")
    path = _record(plan, died["_number"], "running", attempt=2, history=[{"epoch": 1}])
    s.on_trial_complete("d", None, error=True)
    t = study.trials[died["_number"]]
    assert (
        t.state == S.FAIL
        and "its worker died in attempt 2" in t.user_attrs["error"]
        and "after 1 epochs" in t.user_attrs["error"]
    )
    assert written(path)["status"] == "failed" and written(path)["error"] == t.user_attrs["error"]

    path = _record(plan, stopped["_number"], "running")
    s.on_trial_complete("e", {"val_acc": 0.3, "stored_params": 1234, "epoch": 1})  # stopped by the scheduler at epoch 1
    t = study.trials[stopped["_number"]]
    assert t.state == S.PRUNED and t.user_attrs["early_stopped"] is True
    assert written(path)["status"] == "early_stopped" and written(path)["stopped_at_epoch"] == 1


def test_the_searcher_checkpoint_and_pickle_hold_no_study(searcher, tmp_path):
    _, _, s = searcher
    s.suggest("a")
    s.save(str(tmp_path / "ckpt.pkl"))
    assert pickle.loads((tmp_path / "ckpt.pkl").read_bytes()) == {}
    s.restore(str(tmp_path / "ckpt.pkl"))
    from ray import cloudpickle  # how Ray's Tuner pickles its settings, this searcher included, into the run folder

    copy = cloudpickle.loads(cloudpickle.dumps(s))
    assert copy._study is None and copy._running == {}
