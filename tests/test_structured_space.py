"""The structured space the samplers see: real parameters (``arch``, ``method``, a budget that may be a
range, the method's own options only where it reads them), mapped to the candidate a trial builds.

Most tests drive the study the way the driver's searcher does, without Ray; one TPE run goes
through Ray Tune (a module-scoped local Ray, 2 CPUs, 1-epoch MLP trials on the embedded data).
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from smhsearch.search import open_study, plan_run, trials_done
from smhsearch.search._study import _searcher
from smhsearch.space import SpaceError, load_space

S = optuna.trial.TrialState
MLP_PARAMS = 784 * 1000 + 1000 + 1000 * 10 + 10  # the default MLP on 28x28 inputs
RESNET8_PARAMS = 75_002  # resnet8 on 1-channel inputs, 10 classes (checked against the model below)

SPACE = """name: {name}
dataset: {{name: fashion-mnist-small}}
train: {{epochs: 1, batch_size: 256, lr: 0.05}}
space: {{arch: {archs}, budget: {budget}, method: {methods}}}
search: {search}
scheduler: {{kind: none}}
resources: {{cpus_per_trial: 1, max_concurrent: 1}}
"""
METHODS = "[dense, smh, {name: hashednets, hashes: [1, 2]}, width]"


def plan_of(tmp_path: Path, name: str = "st", budget: str = '["20%", "40%"]', methods: str = METHODS,
            search: str = "{sampler: tpe, trials: 4, seed: 0}", archs: str = "[mlp]"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(SPACE.format(name=name, budget=budget, methods=methods, search=search, archs=archs))
    return plan_run(load_space(path), path, tmp_path / "run"), path


def sampled(plan, params: dict) -> optuna.trial.FrozenTrial:
    """One trial of an in-memory study whose parameters start as ``params`` (the rest sampled), as the searcher samples it."""
    study = optuna.create_study(directions=["maximize", "minimize", "maximize"])
    study.enqueue_trial(params)
    trial = study.ask()
    plan.structured(trial)
    return study.tell(trial, [0.0, 0.0, 0.0])


def test_distributions_are_the_real_parameters_conditional_on_the_method(tmp_path):
    plan, _ = plan_of(tmp_path)
    methods = CategoricalDistribution(["dense", "smh", "hashednets", "width"])
    dense = sampled(plan, {"method": "dense"})
    assert dense.distributions == {"arch": CategoricalDistribution(["mlp"]), "method": methods}  # dense reads no budget
    hashed = sampled(plan, {"method": "hashednets"})
    assert hashed.distributions == {"arch": CategoricalDistribution(["mlp"]), "method": methods,
                                    "budget": CategoricalDistribution(["20%", "40%"]),
                                    "scope": CategoricalDistribution(["all"]),
                                    "hashednets.hashes": CategoricalDistribution([1, 2])}
    smh = sampled(plan, {"method": "smh"})  # SMH reads scale too, and has no hashes
    assert set(smh.distributions) == {"arch", "method", "budget", "scope", "scale"}
    width = sampled(plan, {"method": "width"})
    assert set(width.distributions) == {"arch", "method", "budget"}
    # what the trial builds is what the parameters say
    assert hashed.user_attrs["config"] == {"arch": "mlp", "method": "hashednets", "budget": hashed.params["budget"],
                                           "scope": "all", "hashes": hashed.params["hashednets.hashes"]}


def test_a_range_budget_is_a_number_int_for_counts_float_for_fractions(tmp_path):
    plan, _ = plan_of(tmp_path, budget="{low: 5K, high: 500K, log: true}", methods="[smh, width]")
    assert sampled(plan, {"method": "smh"}).distributions["budget"] == IntDistribution(5000, 500_000, log=True)
    plan, _ = plan_of(tmp_path, budget="{low: 0.02, high: '50%'}", methods="[smh, width]")
    t = sampled(plan, {"method": "width"})
    assert t.distributions["budget"] == FloatDistribution(0.02, 0.5, log=False)
    assert t.user_attrs["config"]["budget"] == t.params["budget"]


def test_grid_enqueues_every_candidate_exactly_once_and_a_range_with_grid_is_refused(tmp_path):
    plan, path = plan_of(tmp_path, search="{sampler: grid}")
    assert len(plan.candidates) == 1 + 3 * 2 + 2  # dense; smh, hashednets x2 hashes and width at two budgets
    study, _ = open_study(plan)
    open_study(plan)  # reopening enqueues nothing twice
    waiting = [plan.structured.candidate_of(t.system_attrs["fixed_params"]) for t in study.get_trials() if t.state == S.WAITING]
    assert waiting == plan.candidates
    path.write_text(path.read_text().replace('["20%", "40%"]', "{low: 0.1, high: 0.5}"))
    with pytest.raises(SpaceError, match=r"search\.sampler: grid enumerates listed values, so it needs space\.budget "
                                         r"to list the budgets .*, but got a range"):
        load_space(path)


def test_samples_that_cannot_run_are_rejected_before_any_training(tmp_path):
    """resnet8 is far below the range's top and max_params leaves the dense MLP (not the dense resnet8) out: the searcher
    rejects those samples (told FAIL, marked rejected, not counted) and hands Ray only runnable candidates."""
    from smhsearch.models import create_model

    assert sum(p.numel() for p in create_model("resnet8", num_classes=10, in_channels=1).parameters()) == RESNET8_PARAMS
    plan, _ = plan_of(tmp_path, budget="{low: 10K, high: 500K, log: true}", methods="[dense, smh]", archs="[mlp, resnet8]",
                      search="{sampler: random, trials: 12, seed: 3, max_params: 600K}")
    study, storage = open_study(plan)
    searcher = _searcher(plan, storage)
    configs = [searcher.suggest(f"t{i}") for i in range(12)]
    for cfg in configs:
        c = cfg["_candidate"]
        size = MLP_PARAMS if c["arch"] == "mlp" else RESNET8_PARAMS
        if c["method"] == "dense":
            assert c["arch"] == "resnet8", c
        else:
            assert 10_000 <= c["budget"] < size and c["budget"] <= 600_000, c
    trials = study.get_trials()
    rejected = [t for t in trials if t.user_attrs.get("rejected")]
    assert rejected and all(t.state == S.FAIL for t in rejected)  # the space makes some rejections certain
    assert trials_done(study) == 0  # none of them counts as a trial of the run
    assert {cfg["_number"] for cfg in configs} == {t.number for t in trials if t.state == S.RUNNING}


def test_an_interrupted_structured_trial_is_queued_again_with_its_params(tmp_path):
    plan, path = plan_of(tmp_path, budget="{low: 50K, high: 400K, log: true}", methods=METHODS)
    study, storage = open_study(plan)
    searcher = _searcher(plan, storage)
    cut = searcher.suggest("t0")  # RUNNING when the driver dies
    params = study.get_trials()[cut["_number"]].params
    study, _ = open_study(plan)  # the resume
    by_number = {t.number: t for t in study.get_trials()}
    assert by_number[cut["_number"]].state == S.FAIL and by_number[cut["_number"]].user_attrs["interrupted"]
    again = _searcher(plan, storage).suggest("t1")
    assert again["_candidate"] == cut["_candidate"] and study.get_trials()[again["_number"]].params == params
    # the fingerprint covers the range itself: a changed range is refused, not resumed
    path.write_text(path.read_text().replace("log: true", "log: false"))  # same candidates (the ends), another space
    with pytest.raises(ValueError, match="changed since .* --fresh"):
        open_study(plan_run(load_space(path), path, tmp_path / "run"))



@pytest.mark.slow  # a Ray start and three trials: about two minutes on 2 busy cores
def test_a_tpe_run_samples_the_structured_space_and_budgets_off_any_grid(tmp_path, local_ray, cli):
    plan, path = plan_of(tmp_path, name="tpe_range", budget="{low: 20K, high: 400K, log: true}", methods="[smh, width]",
                         search="{sampler: tpe, trials: 3, seed: 0}")
    rc, out, err = cli("run", path, "--out", tmp_path / "run")
    assert rc == 0, out[-3000:] + err[-3000:]
    study = optuna.load_study(study_name="tpe_range", storage=f"sqlite:///{tmp_path / 'run' / 'study.db'}")
    trials = [t for t in study.get_trials() if t.state == S.COMPLETE]
    assert len(trials) == 3
    budgets = []
    for t in trials:
        assert set(t.params) == {"arch", "method", "budget"} | ({"scope", "scale"} if t.params["method"] == "smh" else set())
        assert t.distributions["budget"] == IntDistribution(20_000, 400_000, log=True)
        record = json.loads((tmp_path / "run" / "trials" / f"{t.number:04d}" / "trial.json").read_text())
        assert record["config"] == t.user_attrs["config"] and record["config"]["budget"] == t.params["budget"]
        assert t.user_attrs["stored_params"] <= t.params["budget"]  # the sampled budget is the one the model met
        budgets.append(t.params["budget"])
    assert all(20_000 <= b <= 400_000 for b in budgets) and len(set(budgets)) == 3
    assert not set(budgets) & {20_000, 400_000}  # numbers from the range, not its two ends
