"""Search paths no other test takes: the TPE, NSGA-II and random samplers, ``max_params``,
``min_throughput`` and the ``flops`` objective, each through a real ``smhsearch run``
(the command in this process: Ray Tune, the study in SQLite).

One local Ray (2 CPUs, on 127.0.0.1) serves the module, so a run costs its trials, not a
Ray start: 1 or 2 one-epoch trials of an MLP on the embedded data, one at a time.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from smhsearch import ConfigError
from smhsearch.search import _sampler, plan_run
from smhsearch.space import load_space


S = optuna.trial.TrialState
MLP_PARAMS = 784 * 1000 + 1000 + 1000 * 10 + 10  # the default MLP on 28x28 inputs, counted by hand
MLP_FLOPS = 784 * 1000 + 1000 * 10  # one multiply-add per weight (fvcore's convention)

SPACE = """name: {name}
dataset: {{name: fashion-mnist-small}}
train: {{epochs: 1, batch_size: 256, lr: 0.05}}
space: {{arch: [mlp], budget: {budgets}, method: {methods}}}
search: {search}
scheduler: {{kind: none}}
resources: {{cpus_per_trial: 1, max_concurrent: 1}}
"""


def write_space(tmp_path: Path, name: str, search: str, budgets: str = '["20%", "40%"]', methods: str = "[dense, smh]") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(SPACE.format(name=name, search=search, budgets=budgets, methods=methods))
    return path



@pytest.fixture
def run(local_ray, cli):
    def go(space: Path, out: Path) -> optuna.Study:
        rc, stdout, stderr = cli("run", space, "--out", out)
        assert rc == 0, stdout[-3000:] + stderr[-3000:]
        return optuna.load_study(study_name=space.stem, storage=f"sqlite:///{out / 'study.db'}")

    return go


def record(out: Path, number: int) -> dict:
    return json.loads((out / "trials" / f"{number:04d}" / "trial.json").read_text())


@pytest.mark.parametrize("sampler,cls", [("tpe", optuna.samplers.TPESampler), ("nsga2", optuna.samplers.NSGAIISampler),
                                         ("random", optuna.samplers.RandomSampler)])
def test_sampler_runs_trials_it_chose(tmp_path, run, sampler, cls):
    """The driver builds the sampler the space names, and a short search under it completes every trial.

    The trials are the sampler's own picks (a grid enqueues each candidate, these are not
    enqueued); NSGA-II leaves its generation on every trial it samples. The NSGA-II run also
    has FLOPs as its second objective: the study's values carry them.
    """
    objectives = "[accuracy, flops]" if sampler == "nsga2" else "[accuracy, stored_params]"
    space_path = write_space(tmp_path, f"s_{sampler}", f"{{sampler: {sampler}, trials: 2, seed: 1, objectives: {objectives}}}")
    plan = plan_run(load_space(space_path), space_path, tmp_path / "run")
    assert type(_sampler(plan)) is cls  # what the driver hands to Ray's OptunaSearch
    study = run(space_path, tmp_path / "run")
    trials = study.get_trials()
    assert len(trials) == 2 and all(t.state == S.COMPLETE for t in trials), [(t.number, t.state) for t in trials]
    assert all("fixed_params" not in t.system_attrs for t in trials)  # sampled, not enqueued
    assert all(t.params["arch"] == "mlp" and t.params["method"] in ("dense", "smh") for t in trials)  # structured, not an index
    assert all(plan.structured.candidate_of(t.params) in plan.candidates for t in trials)
    if sampler == "nsga2":
        assert all("NSGAIISampler:generation" in t.system_attrs for t in trials)
        assert study.directions == [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
        for t in trials:  # hashing changes no FLOPs: every candidate costs the dense MLP's
            assert t.values[1] == t.user_attrs["flops"] == record(tmp_path / "run", t.number)["metrics"]["flops"] == MLP_FLOPS
    else:
        assert all(t.values[1] == t.user_attrs["stored_params"] for t in trials)


def test_max_params_leaves_out_what_cannot_fit(tmp_path):
    """Candidates whose final stored count is over search.max_params are never planned (absolute or a fraction)."""
    def plan(max_params: str, methods: str = "[dense, smh, width, prune]"):
        path = write_space(tmp_path, "mp", f"{{sampler: grid, max_params: {max_params}}}", methods=methods)
        return plan_run(load_space(path), path, tmp_path / "run")

    def kept(p):
        return sorted((c.method, c.budget) for c in p.candidates)

    everything = [(m, b) for m in ("prune", "smh", "width") for b in ("20%", "40%")] + [("dense", None)]
    assert kept(plan("null")) == sorted(everything)
    assert kept(plan('"30%"')) == [("prune", "20%"), ("smh", "20%"), ("width", "20%")]
    assert kept(plan(str(int(0.4 * MLP_PARAMS)))) == sorted(c for c in everything if c[0] != "dense")  # 40% is at the cap
    assert kept(plan(str(int(0.4 * MLP_PARAMS) - 1))) == [("prune", "20%"), ("smh", "20%"), ("width", "20%")]
    assert plan('"30%"').target_trials == 3
    with pytest.raises(ConfigError, match="search.max_params must admit some candidate of the space, but got max_params=1000, "
                                          "which no candidate satisfies") as e:
        plan("1000")
    assert e.value.field == "search.max_params"


def test_min_throughput_fails_slow_trials_with_the_reason_and_max_params_holds_in_a_run(tmp_path, run):
    """A real grid run: max_params leaves one candidate, and a throughput floor no model reaches fails it,
    with the measured rate and the floor in the error, before any training."""
    space_path = write_space(tmp_path, "thr", '{sampler: grid, max_params: "30%", min_throughput: 1.0e+12}')
    out = tmp_path / "run"
    study = run(space_path, out)
    trials = study.get_trials()
    assert [t.user_attrs["config"] for t in trials] == [{"arch": "mlp", "method": "smh", "budget": "20%", "scope": "all",
                                                          "scale": "fixed"}]
    t = trials[0]
    assert t.state == S.FAIL
    assert f"below search.min_throughput {1.0e12}" in t.user_attrs["error"], t.user_attrs["error"]
    rec = record(out, t.number)
    assert rec["status"] == "failed" and "below search.min_throughput" in rec["error"]
    assert 0 < rec["metrics"]["throughput"] < 1e12 and f"{rec['metrics']['throughput']:.1f}/s" in rec["error"]
    assert "history" not in rec and not (out / "trials" / f"{t.number:04d}" / "model.safetensors").exists()  # never trained
