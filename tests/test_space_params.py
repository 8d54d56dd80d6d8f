"""One declaration of a space's parameters: the grid, define-by-run sampling and its inverse all derive from it.

For every shipped space and a few richer ones (precision, entropy, distillation, presets that pin a precision,
listed options, a scope rule), the grid of candidates is exactly what sampling each grid point's parameters
reaches, the sampler never leaves the grid, and a condition changed in the declaration changes all three at once.
"""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import optuna
import pytest

from smhsearch.methods._precision import check_precision
from smhsearch.search._params import StructuredSpace
from smhsearch.space import load_space
from smhsearch.space._params import ParamSpace, param_space

SHIPPED = sorted((Path(__file__).resolve().parents[1] / "spaces").glob("*.yaml"))

RICH = {
    "precision": """
  arch: [resnet8]
  budget: ["10%", 5000]
  method: [dense, binaryconnect, smh, deep_compression, {name: hashednets, hashes: [1, 2], sign: true},
           {name: hashednets, hashes: [3]}, width]
  scope: [all, conv]
  scale: [fixed, learnable]
  bits: [32, 16, 8, "kmeans:16"]
  quant: [ptq, qat]
  entropy: [false, true]
  distill: [false, true]""",
    "entropy_only": """
  arch: [resnet8, mlp]
  budget: ["25%"]
  method: [dense, smh, lowrank]
  bits: [16, 4]
  entropy: [true]""",
    "dense_only": """
  arch: [mlp]
  method: [dense, binaryconnect]
  bits: [32, 8]
  distill: [true, false]""",
    "scope_rule": """
  arch: [resnet8]
  budget: ["25%"]
  method: [smh, {name: hashednets, per_layer: [false, true]}, {name: hashednets, hashes: 2}, prune]
  scope: [all, {min_size: 1000}]""",
}


def rich(tmp_path: Path, name: str, sampler: str = "grid"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"name: {name}\ndataset: {{name: fashion-mnist-small}}\ntrain: {{epochs: 1}}\nspace:{RICH[name]}\n"
                    f"search: {{sampler: {sampler}}}\n")
    return load_space(path)


@pytest.fixture(scope="module", params=[*SHIPPED, *RICH], ids=lambda p: getattr(p, "name", p))
def space(request, tmp_path_factory):
    p = request.param
    return load_space(p, check_data=False) if isinstance(p, Path) else rich(tmp_path_factory.mktemp("spaces"), p)


def test_the_grid_is_what_sampling_each_grid_points_params_reaches(space):
    """params_of -> sample -> the same candidate, for every candidate; and the trial suggests exactly those parameters."""
    ps = param_space(space.space)
    grid = space.candidates()
    assert grid == ps.grid() and len(set(grid)) == len(grid)
    for c in grid:
        params = ps.params_of(c)
        assert ps.sample(optuna.trial.FixedTrial(params)) == c, params
        study = optuna.create_study()
        study.enqueue_trial(params)
        trial = study.ask()
        assert ps.sample(trial) == c
        assert trial.params == params  # nothing enqueued that the sampler does not ask for, nothing it asks left out


def test_the_sampler_never_leaves_the_grid_and_each_name_keeps_one_distribution(space):
    ps = param_space(space.space)
    grid, distributions = set(space.candidates()), ps.distributions()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(100):
        trial = study.ask()
        assert ps.sample(trial) in grid
        assert all(d == distributions[n] for n, d in trial.distributions.items())


def _with_condition(ps: ParamSpace, name: str, when) -> ParamSpace:
    entries = {
        k: dataclasses.replace(e, common=tuple(dataclasses.replace(p, when=when) if p.name == name else p for p in e.common))
        for k, e in ps.entries.items()
    }
    return dataclasses.replace(ps, entries=entries)


def test_a_changed_condition_shows_up_in_the_grid_the_sampler_and_the_inverse_at_once(tmp_path):
    ps = param_space(rich(tmp_path, "precision").space)
    changed = _with_condition(ps, "entropy", ("bits", lambda b: b == 8))  # entropy no longer offered for kmeans:16
    before, after = ps.grid(), changed.grid()
    kmeans_coded = [c for c in before if c.bits == "kmeans:16" and c.entropy and c.method != "deep_compression"]
    assert kmeans_coded and not set(kmeans_coded) & set(after) and set(after) < set(before)
    assert all(changed.candidate_of(changed.params_of(c)) == c for c in after)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    assert all(changed.sample(study.ask()) in set(after) for _ in range(200))


def test_the_conditions_offer_exactly_the_precisions_the_config_accepts(tmp_path):
    """Each grid candidate's config builds (nothing offered that the config refuses), and each (bits, quant, entropy)
    the config accepts from the space's lists is offered."""
    space = rich(tmp_path, "precision")
    s = space.space
    grid = [c for c in space.candidates() if c.method == "smh"]
    for c in grid:
        c.method_config()
    offered = {(c.bits or 32, c.quant, bool(c.entropy)) for c in grid}
    accepted = set()
    for bits in s.bits:
        for quant in [None, *s.quant]:
            for entropy in s.entropy:
                try:
                    check_precision(bits, quant, entropy)
                except ValueError:
                    continue
                accepted.add((bits, quant, entropy))
    assert offered == {a for a in accepted if a[1] is not None or a[0] == 32}  # below 32 bits quant is always chosen


def test_dense_reads_no_axis_and_a_presets_pinned_precision_is_not_sampled(tmp_path):
    ps = param_space(rich(tmp_path, "precision").space)
    axes = {"budget", "scope", "scale"}
    assert not axes & {p.name for p in ps.entries["dense"].own} and axes <= {p.name for p in ps.entries["smh"].own}
    assert {p.name for p in ps.entries["dense"].common} == {"distill", "bits", "quant", "entropy"}
    assert {p.name for p in ps.entries["binaryconnect"].common} == {"distill", "entropy"}  # bits 1 and qat are its own
    assert ps.entries["binaryconnect"].fixed == {"bits": 1, "quant": "qat"}
    assert {p.name for p in ps.entries["deep_compression"].common} == {"distill"}
    assert {p.name for p in ps.entries["hashednets#2"].own} == {"budget", "scope", "hashednets#2.hashes"}


def test_a_scope_rule_is_stored_as_an_index_and_the_space_pickles(tmp_path):
    """Optuna's storage cannot hold a scope rule: the parameter is its index, the candidate the rule itself."""
    space = rich(tmp_path, "scope_rule", sampler="random")
    structured = pickle.loads(pickle.dumps(StructuredSpace(space, {"resnet8": 75_002}, {"resnet8": None})))  # as Ray saves it
    rule = space.space.scope[1]
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}")
    c = next(c for c in space.candidates() if c.scope == rule)
    study.enqueue_trial(structured.params_of(c))
    trial = study.ask()
    assert structured(trial) == {"_candidate": c.params()} and trial.params["scope"] == 1
    assert structured.candidate_of(study.trials[0].system_attrs["fixed_params"]) == c
