"""Early stopping on non-dominated rank: the rung decision on synthetic results (no Ray), and one real run."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from smhsearch.search._scheduler import ParetoRungs, rung_objectives

SIZE_ACC = [("val_acc", "max"), ("stored_params", "min")]


def dominated_by_someone(p, peers) -> bool:
    """Independent of moocore: some peer is at least as good on both and better on one."""
    acc, size = p
    return any(a >= acc and s <= size and (a > acc or s < size) for a, s in peers)


def test_the_issue_case_keeps_the_smallest_model_asha_would_stop():
    # ResNet-8 at 2..50% after one epoch: accuracy rises with size, so ASHA (accuracy alone) stops the small ones
    r = ParetoRungs(SIZE_ACC, grace_period=1, reduction_factor=2, max_t=4)
    sizes = [2_000, 5_000, 10_000, 25_000, 50_000]
    accs = [0.55, 0.62, 0.70, 0.74, 0.77]
    for i in reversed(range(5)):  # the big ones report first, as they would if the small one were slower
        assert r.on_result(f"t{i}", {"epoch": 1, "val_acc": accs[i], "stored_params": sizes[i]}) is False
    assert r.stopped == {}


def test_a_dominated_trial_is_stopped_once_enough_peers_rank_better():
    r = ParetoRungs(SIZE_ACC, grace_period=1, reduction_factor=2, max_t=4)
    assert not r.on_result("a", {"epoch": 1, "val_acc": 0.8, "stored_params": 100})
    # dominated by a, and 1 of 2 (>= 2/2) ranks better: stopped
    assert r.on_result("b", {"epoch": 1, "val_acc": 0.7, "stored_params": 200})
    assert r.stopped == {"b": 1}
    # judged once per rung; the next rung is epoch 2 (grace * rf), and 4 (the last epoch) is no rung
    assert r.milestones == [1, 2]
    assert not r.on_result("a", {"epoch": 1, "val_acc": 0.1, "stored_params": 100})
    assert not r.on_result("a", {"epoch": 4, "val_acc": 0.1, "stored_params": 100}) and "a" in r.recorded[2]


def test_rf_3_needs_a_third_of_the_rung_to_rank_better():
    r = ParetoRungs(SIZE_ACC, grace_period=1, reduction_factor=3, max_t=9)
    for i, (acc, size) in enumerate([(0.9, 10), (0.8, 20), (0.7, 30)]):  # each dominates the next
        r.on_result(f"t{i}", {"epoch": 1, "val_acc": acc, "stored_params": size})
    # t1 (2 of 2 ranked: 1 better >= 2/3) stopped; t2 (3 ranked: 2 better >= 1) stopped
    assert set(r.stopped) == {"t1", "t2"}
    # rank counts, not only domination: a rank-1 trial among many rank-0 ones is stopped, one among few is not
    r = ParetoRungs(SIZE_ACC, grace_period=1, reduction_factor=3, max_t=9)
    front = [(0.9, 50), (0.8, 40), (0.7, 30), (0.6, 20)]
    for i, (acc, size) in enumerate(front):
        r.on_result(f"f{i}", {"epoch": 1, "val_acc": acc, "stored_params": size})
    assert not r.stopped
    assert r.on_result("x", {"epoch": 1, "val_acc": 0.65, "stored_params": 45})  # 4 of 5 rank better >= 5/3


@pytest.mark.parametrize("seed", range(20))
def test_never_stops_a_trial_non_dominated_at_its_rung(seed):
    """The promise, on random rungs: every stopped trial is dominated by a peer recorded at its rung before it,
    and rf-halving still stops some (so the test is not passing by stopping nothing)."""
    rng = random.Random(seed)
    r = ParetoRungs(SIZE_ACC, grace_period=1, reduction_factor=rng.choice([2, 3, 4]), max_t=30)
    seen: dict = {m: [] for m in r.milestones}
    for step in range(200):
        trial, epoch = f"t{rng.randrange(40)}", rng.randint(1, 30)
        p = (round(rng.random(), 2), rng.choice([100, 200, 400, 800, 1600]))
        rung = max((m for m in r.milestones if epoch >= m), default=None)
        fresh = rung is not None and trial not in r.recorded[rung]
        stop = r.on_result(trial, {"epoch": epoch, "val_acc": p[0], "stored_params": p[1]})
        if fresh:
            if stop:
                assert dominated_by_someone(p, seen[rung]), (p, seen[rung])
            seen[rung].append(p)
        else:
            assert not stop
    assert r.stopped, "nothing was stopped: the test proves nothing"


def ranks_by_peeling(points) -> list[int]:
    """Non-dominated ranks, independent of moocore: peel off the points no remaining one dominates, front by front."""
    left, ranks, rank = set(range(len(points))), [0] * len(points), 0
    while left:
        front = {i for i in left if not dominated_by_someone(points[i], [points[j] for j in left if j != i])}
        for i in front:
            ranks[i] = rank
        left -= front
        rank += 1
    return ranks


def test_keeps_the_best_1_over_rf_by_rank_no_fewer_and_no_more():
    """The rule's boundary: a dominated trial is kept while fewer than n/rf of the n trials rank better, and stopped
    once n/rf do. A rule that stops on any better peer fails the first half; one that needs more than n/rf, the second."""
    r = ParetoRungs(SIZE_ACC, grace_period=1, reduction_factor=2, max_t=4)
    for i in range(3):  # three equal trials: none dominates another, all rank 0
        assert not r.on_result(f"d{i}", {"epoch": 1, "val_acc": 0.5, "stored_params": 100})
    assert not r.on_result("a", {"epoch": 1, "val_acc": 0.9, "stored_params": 10})  # dominates them: they drop to rank 1
    # a fourth equal one, dominated by a, at rank 1: only a ranks better, 1 of 5 < 5/2, so it is kept
    assert not r.on_result("x", {"epoch": 1, "val_acc": 0.5, "stored_params": 100})
    assert r.stopped == {}

    r = ParetoRungs(SIZE_ACC, grace_period=1, reduction_factor=2, max_t=4)
    assert not r.on_result("w", {"epoch": 1, "val_acc": 0.4, "stored_params": 300})
    assert not r.on_result("f0", {"epoch": 1, "val_acc": 0.6, "stored_params": 10})  # f0 and f1: the front
    assert not r.on_result("f1", {"epoch": 1, "val_acc": 0.9, "stored_params": 100})
    # y is dominated by f0 and f1 and dominates w: ranks f0, f1 = 0, y = 1, w = 2; 2 of 4 rank better = exactly 4/2
    assert r.on_result("y", {"epoch": 1, "val_acc": 0.5, "stored_params": 200})
    assert r.stopped == {"y": 1}


@pytest.mark.parametrize("seed", range(20))
def test_the_rule_on_random_rungs_against_an_independent_count(seed):
    """Every decision, fresh trial by fresh trial, is "stop iff better * rf >= n" with ranks computed here by peeling
    fronts (ties and repeated points included), so any other threshold disagrees on some rung."""
    rng = random.Random(seed)
    rf = rng.choice([2, 3, 4])
    r = ParetoRungs(SIZE_ACC, grace_period=1, reduction_factor=rf, max_t=30)
    seen: dict = {m: [] for m in r.milestones}
    decisions = {True: 0, False: 0}
    for step in range(150):
        trial, epoch = f"t{rng.randrange(40)}", rng.randint(1, 30)
        p = (rng.choice([0.2, 0.4, 0.5, 0.6, 0.8]), rng.choice([100, 200, 400, 800]))
        rung = max((m for m in r.milestones if epoch >= m), default=None)
        fresh = rung is not None and trial not in r.recorded[rung]
        stop = r.on_result(trial, {"epoch": epoch, "val_acc": p[0], "stored_params": p[1]})
        if fresh:
            seen[rung].append(p)
            ranks = ranks_by_peeling(seen[rung])
            better = sum(k < ranks[-1] for k in ranks)
            assert stop == (better * rf >= len(ranks)), (rf, p, seen[rung])
            decisions[stop] += 1
    assert decisions[True] and decisions[False], decisions  # both outcomes were checked


def test_one_objective_is_ashas_successive_halving():
    r = ParetoRungs([("val_acc", "max")], grace_period=1, reduction_factor=2, max_t=3)
    kept = [not r.on_result(f"t{i}", {"epoch": 1, "val_acc": a}) for i, a in enumerate([0.5, 0.6, 0.4, 0.7])]
    # ASHA's cutoff: the (1 - 1/rf) percentile of the peers recorded before, stop if below
    ref, seen = [], []
    for a in [0.5, 0.6, 0.4, 0.7]:
        ref.append(not (seen and a < np.nanpercentile(seen, 50)))
        seen.append(a)
    assert kept == ref == [True, True, False, True]


def test_missing_or_nan_objectives_are_not_judged_and_bad_settings_are_refused():
    r = ParetoRungs(SIZE_ACC, grace_period=1, reduction_factor=2, max_t=4)
    assert not r.on_result("a", {"epoch": 1, "val_acc": float("nan"), "stored_params": 1})
    assert not r.on_result("b", {"epoch": 1, "val_acc": 0.5})
    assert r.recorded[1] == {}
    with pytest.raises(ValueError, match="mode must be one of"):
        ParetoRungs([("val_acc", "up")], 1, 2, 4)
    with pytest.raises(ValueError, match="reduction_factor > 1"):
        ParetoRungs(SIZE_ACC, 1, 1, 4)


def test_rung_objectives_follow_the_space():
    assert rung_objectives(["accuracy"]) == [("val_acc", "max")]
    assert rung_objectives(["accuracy", "stored_params", "throughput"]) == [("val_acc", "max"), ("stored_params", "min"),
                                                                            ("flops", "min")]


SPACE = """name: {name}
dataset: {{name: fashion-mnist-small}}
train: {{epochs: 2, batch_size: 256, lr: 0.05, variable_lr_mult: {{hashed2: 100.0, hashed1: 1.0e-9}}}}
space: {{arch: [mlp], budget: ["30%"], method: [hashed2, hashed1]}}
search: {{sampler: grid, objectives: [accuracy, stored_params]}}
scheduler: {{kind: pareto, grace_period: 1, reduction_factor: 2}}
resources: {{cpus_per_trial: 1, max_concurrent: 1}}
"""


@pytest.mark.slow
def test_a_real_run_stops_the_dominated_trial_and_its_record_says_so(tmp_path):
    """hashed1 stores one parameter more than hashed2 at the same budget and its variables barely move (lr x 1e-9),
    so at epoch 1 it is dominated by hashed2 (which ran first: one trial at a time) and stopped; hashed2 runs on."""
    from tests.test_search import smhsearch, study_of

    space = tmp_path / "p.yaml"
    space.write_text(SPACE.format(name="p"))
    run = tmp_path / "run"
    r = smhsearch("run", str(space), "--out", str(run))
    assert r.returncode == 0, r.stdout + r.stderr
    records = {}
    for t in study_of(run, "p").trials:
        records[t.user_attrs["config"]["method"]] = (
            t,
            json.loads((run / "trials" / f"{t.number:04d}" / "trial.json").read_text()),
        )
    (_, rec1), (t2, rec2) = records["hashed2"], records["hashed1"]
    assert rec1["status"] == "complete" and rec1["metrics"]["epoch"] == 2
    assert rec1["metrics"]["stored_params"] <= rec2["metrics"]["stored_params"]
    assert rec1["history"][0]["val_acc"] > rec2["history"][0]["val_acc"]
    assert rec2["status"] == "early_stopped" and rec2["stopped_at_epoch"] == 1 and len(rec2["history"]) == 1
    assert t2.state.name == "PRUNED" and "(stopped early)" in r.stdout
    # both deploy the same dense MLP: speed was measured once (by the first), with its spread, and shared
    assert (
        rec1["metrics"]["throughput"] == rec2["metrics"]["throughput"] and rec2["speed"]["cached"] and not rec1["speed"]["cached"]
    )
    assert rec1["metrics"]["latency_s"] > 0 and rec1["metrics"]["throughput_spread"] >= 0
    assert len(list((run / "speed").glob("*.json"))) == 1
