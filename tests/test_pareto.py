"""Front data, hypervolume, pick and the published points, checked against definitions computed independently here."""

from __future__ import annotations

import itertools
import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smhsearch import pareto
from smhsearch.models import MODELS
from smhsearch.runs import TrialRecord

from .conftest import SHARED_DATA


def rec(n, method="smh", params=1000.0, acc=0.5, thr=100.0, flops=1e6, status="complete", arch="resnet8", test=None, size=4000.0):
    metrics = {"stored_params": params, "val_acc": acc, "throughput": thr, "flops": flops, "stored_bytes": size}
    if test is not None:
        metrics["test_acc"] = test
    return TrialRecord(number=n, status=status, config={"arch": arch, "method": method, "budget": "10%"}, metrics=metrics)


def dominated(p, q, x_sense):
    """Does q dominate p? (accuracy is maximised; x by its sense)."""
    better_x = q[0] <= p[0] if x_sense == "min" else q[0] >= p[0]
    strictly = (q[0] < p[0] if x_sense == "min" else q[0] > p[0]) or q[1] > p[1]
    return better_x and q[1] >= p[1] and strictly


points = st.lists(st.tuples(st.integers(1, 50), st.integers(0, 20)), min_size=1, max_size=25)


@settings(max_examples=60, deadline=None)
@given(points, st.sampled_from(list(pareto.AXES)))
def test_front_is_exactly_the_non_dominated_set(pts, axis):
    trials = [
        rec(
            i,
            **{{"stored_params": "params", "throughput": "thr", "flops": "flops", "stored_bytes": "size"}[axis]: float(x)},
            acc=a / 20,
        )
        for i, (x, a) in enumerate(pts)
    ]
    f = pareto.front(trials, axis)
    sense = pareto.AXES[axis]["sense"]
    expected = {i for i, p in enumerate(pts) if not any(dominated(p, q, sense) for j, q in enumerate(pts) if j != i)}
    assert set(f.numbers) == expected
    xs = [x for _, x, _ in f.front]
    assert xs == sorted(xs)
    # the staircase visits every front point in order and moves monotonically: x grows, and accuracy
    # grows with a minimised cost or falls with a maximised one
    assert f.step[::2] == [(x, a) for _, x, a in f.front] and len(f.step) == max(0, 2 * len(f.front) - 1)
    assert [x for x, _ in f.step] == sorted(x for x, _ in f.step)
    accs = [a for _, a in f.step]
    assert accs == (sorted(accs) if sense == "min" else sorted(accs, reverse=True))


def test_step_path_shapes():
    assert pareto.step_path([(1, 0.5), (2, 0.7), (4, 0.9)], "min") == [(1, 0.5), (2, 0.5), (2, 0.7), (4, 0.7), (4, 0.9)]
    # throughput: more is better, so accuracy falls as x grows; the line drops at each point's x
    assert pareto.step_path([(1, 0.9), (3, 0.6)], "max") == [(1, 0.9), (1, 0.6), (3, 0.6)]


def test_only_finished_trials_are_on_fronts():
    trials = [rec(0, acc=0.5, params=100), rec(1, acc=0.9, params=50, status="early_stopped"), rec(2, acc=0.99, status="failed"),
              TrialRecord(3, "complete", {"arch": "resnet8", "method": "smh"}, {"val_acc": 0.9})]  # no size: not placeable
    assert pareto.front(trials).numbers == [0]


def test_hypervolume_equals_the_dominated_area():
    # two smh points and one width point under a shared reference (accuracy 0, twice the worst size = 2000)
    trials = [rec(0, "smh", params=100, acc=0.8), rec(1, "smh", params=1000, acc=0.9), rec(2, "width", params=100, acc=0.5),
              rec(3, "width", params=1000, acc=0.4)]
    hv = pareto.hypervolumes(trials, "stored_params")
    ref = math.log10(2000)
    smh = (math.log10(1000) - math.log10(100)) * 0.8 + (ref - math.log10(1000)) * 0.9
    width = (ref - math.log10(100)) * 0.5
    assert hv["smh"] == pytest.approx(smh) and hv["width"] == pytest.approx(width)
    assert pareto.reference_point(trials, "stored_params") == (2000.0, 0.0)
    # throughput is maximised: the reference is half the slowest
    t = [rec(0, thr=400, acc=0.5), rec(1, thr=100, acc=0.7)]
    assert pareto.hypervolumes(t, "throughput")["smh"] == pytest.approx(
        (math.log10(400) - math.log10(50)) * 0.5
        + (math.log10(100) - math.log10(400)) * 0
        + (math.log10(100) - math.log10(50)) * 0.2
    )


def test_pick_takes_the_most_accurate_within_every_constraint_and_breaks_ties_by_size():
    trials = [rec(0, params=5000, acc=0.9, thr=50), rec(1, params=2000, acc=0.8, thr=500), rec(2, params=1500, acc=0.8, thr=400),
              rec(3, params=1000, acc=0.95, status="early_stopped"), rec(4, params=900, acc=0.6, thr=1000)]
    C = pareto.Constraints
    assert pareto.pick(trials, C()).chosen.number == 0
    assert pareto.pick(trials, C(max_params=2000)).chosen.number == 2  # tie on accuracy: fewer parameters
    assert [t.number for t in pareto.pick(trials, C(max_params=2000)).satisfying] == [2, 1, 4]
    assert pareto.pick(trials, C(max_params=2000, min_throughput=450)).chosen.number == 1
    assert pareto.pick(trials, C(min_accuracy=0.85)).chosen.number == 0
    none = pareto.pick(trials, C(max_params=800, min_accuracy=0.7))
    assert none.chosen is None and none.satisfying == []
    # nearest first: #4 is 12.5% over on size and 14% under on accuracy; #2 is 87.5% over on size
    assert [t.number for t, _ in none.nearest] == [4, 2, 1]
    assert none.nearest[0][1] == pytest.approx({"max_params": 900 / 800 - 1, "min_accuracy": (0.7 - 0.6) / 0.7})


def test_pick_on_test_accuracy_and_unknown_keys():
    trials = [rec(0, acc=0.9, test=0.7), rec(1, acc=0.8, test=0.85)]
    assert pareto.pick(trials, pareto.Constraints()).chosen.number == 0
    assert pareto.pick(trials, pareto.Constraints(), acc_key="test_acc").chosen.number == 1
    with pytest.raises(ValueError, match="allowed: stored_params, throughput, flops"):
        pareto.front(trials, "latency")


def test_every_published_point_names_a_registered_arch_a_source_and_a_plausible_value():
    pts = pareto.load_baselines()
    assert len(pts) >= 90
    for p in pts:
        assert p.arch in MODELS, p
        assert p.family == MODELS.get(p.arch).family, p  # the column a report matches on, without the registry
        assert p.dataset in {"cifar10", "imagenet", "mnist"}
        assert 0 < p.accuracy < 100 and p.params > 0 and p.source and p.where
    # the overlay matches on dataset and architecture family
    cifar = pareto.published_points("cifar10", ["resnet8"])
    assert {p.arch for p in cifar} == {"resnet20", "resnet32", "resnet44", "resnet56", "resnet110"}
    assert pareto.published_points("fashion-mnist-small", ["resnet8"]) == []
    assert {p.arch for p in pareto.published_points("imagenet", ["efficientnet_b0"])} >= {"efficientnet_b2", "efficientnet_b0"}
    assert {p.arch for p in pareto.published_points("mnist", ["mlp"])} == {"mlp_1x1000", "mlp_3x1000", "lenet300_100"}
    # sizes in bytes where the paper gives them: Deep Compression's LeNet-300-100, 1070 KB -> 27 KB (40x)
    dc = {p.series: p for p in pts if p.file == "deep_compression_mnist.csv"}
    assert {round(p.bytes) for p in dc.values()} == {1_070_000, 27_000} and all(p.accuracy > 98 for p in dc.values())
    assert all(p.bytes == 4 * p.params for p in pts if p.file == "hashednets_mnist.csv")  # float32 weights


REFERENCE = SHARED_DATA.parent / "reference" / "published_results.md"


@pytest.mark.skipif(
    not REFERENCE.is_file(), reason=f"the reference sheet {REFERENCE} is not on this machine (it is outside the project)"
)
def test_published_points_agree_with_the_reference_sheet():
    text = REFERENCE.read_text()
    pts = pareto.load_baselines()
    # Figure 6: every (parameters, accuracy) pair of the SMH and width-multiplier series
    for series, name in (("SMH", "SMH (paper)"), ("width multiplier", "width multiplier (paper)")):
        row = re.search(rf"^\| {re.escape(series)} \| (\(.+) \|$", text, re.M).group(1)
        ref = [(round(float(k) * 1000), float(a)) for k, a in re.findall(r"\(([\d.]+)K, ([\d.]+)\)", row)]
        ours = [(round(p.params), p.accuracy) for p in pts if p.series == name and p.arch == "resnet32"]
        assert ours == ref and len(ours) >= 5
    # HashedNets: accuracy = 100 - the published error, for every cell
    cells_seen = re.findall(r"^\| 1/(\d+) \| (\d) \| (.+) \|$", text, re.M)
    assert len(cells_seen) == 4
    for line in cells_seen:
        factor, layers, cells = line
        errors = [float(c) for c in cells.split(" | ")]
        arch = "mlp_1x1000" if layers == "3" else "mlp_3x1000"
        ours = [p for p in pts if p.dataset == "mnist" and p.arch == arch and f"1/{factor};" in p.note]
        assert sorted(100 - p.accuracy for p in ours) == pytest.approx(sorted(errors))
    # Table 3: fixed and learnable for every (model, size)
    table3 = re.findall(r"(B\d)@(\d+\.\d)M (\d+\.\d)→(\d+\.\d)", text)
    assert len(table3) == 15
    for model, size, fixed, learn in table3:
        arch = f"efficientnet_{model.lower()}"
        got = {p.series: p.accuracy for p in pts if p.where == "Table 3" and p.arch == arch and p.params == float(size) * 1e6}
        assert got == {"SMH fixed scale (paper)": float(fixed), "SMH learnable scale (paper)": float(learn)}
    # Table 1
    table1 = re.findall(r"^\| (SMH|\d+X hash) \| ([\d.]+)M \| ([\d.]+) \|", text, re.M)
    assert len(table1) == 8
    for method, size, top1 in table1:
        series = "SMH (paper)" if method == "SMH" else f"{method} (paper)"
        match = [p for p in pts if p.where == "Table 1" and p.series == series and p.params == float(size) * 1e6]
        assert len(match) == 1 and match[0].accuracy == pytest.approx(100 * float(top1))


def test_constraints_describe_and_shortfalls_of_missing_metrics():
    c = pareto.Constraints(max_params=1000, min_throughput=10, min_accuracy=0.5)
    assert c.describe() == "stored parameters <= 1,000, throughput >= 10.0/s, accuracy >= 50.00%"
    t = TrialRecord(0, "complete", {"arch": "resnet8", "method": "smh"}, {"val_acc": 0.9})
    assert set(c.shortfalls(t, "val_acc")) == {"max_params", "min_throughput"}
    assert all(math.isinf(v) for v in c.shortfalls(t, "val_acc").values())
    assert list(itertools.islice(pareto.AXES, 3)) == ["stored_params", "throughput", "flops"]
    size = pareto.Constraints(max_bytes=100_000)
    assert size.describe() == "stored bytes <= 100,000" and math.isinf(size.shortfalls(t, "val_acc")["max_bytes"])
