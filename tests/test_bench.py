"""``smhsearch bench``: a run's models timed again on this machine, stored in the run, read by ``pick`` and ``report``."""

from __future__ import annotations

import json
import shutil

import pytest

from smhsearch._timing import protocol
from smhsearch.runs import load_run


@pytest.fixture
def run(quick_run, tmp_path):
    """A copy of the session's quick run (bench writes into the run folder)."""
    return shutil.copytree(quick_run, tmp_path / "quick")


def test_bench_times_each_deployed_network_once_and_only_new_trials(run, cli):
    rc, out, err = cli("bench", run, "--max-steps", "8", "--name", "here", "--json")
    assert rc == 0, err
    result = json.loads(out)
    record = json.loads((run / "bench" / "here.json").read_text())
    assert {k: result[k] for k in record} == record and record["runtime"] == "torch" and record["batch_size"] == 64
    finished = [t for t in load_run(run).complete() if t.model_file is not None]
    assert sorted(map(int, record["trials"])) == [t.number for t in finished]
    figures = record["trials"]
    networks = {f["architecture"] for f in figures.values()}
    assert result["timed_networks"] == len(networks)  # one timing per deployed network, not per trial
    by_method = {t.method: figures[str(t.number)] for t in finished}
    if {"dense", "smh"} <= set(by_method):  # an SMH model deploys its dense network: the very same figure
        assert by_method["smh"] == by_method["dense"]
    assert all(f["throughput"] > 0 and f["latency_s"] > 0 and f["steps"] <= 8 for f in figures.values())
    assert all(f["protocol"] == protocol(max_steps=8) for f in figures.values())  # each figure says how it was timed

    rc, out, _ = cli("bench", run, "--max-steps", "8", "--name", "here", "--json")  # nothing new to time
    assert rc == 0 and json.loads(out)["timed_networks"] == 0 and json.loads(out)["trials"] == figures
    rc, out, _ = cli("bench", run, "--max-steps", "8", "--name", "here", "--json", "--force")
    assert rc == 0 and json.loads(out)["timed_networks"] == len(networks)


def test_pick_and_report_read_the_targets_figures(run, cli, tmp_path):
    assert cli("bench", run, "--max-steps", "8", "--name", "edge")[0] == 0
    path = run / "bench" / "edge.json"
    record = json.loads(path.read_text())
    # make the target's figures unmistakable: the most accurate finished trial is the slowest there
    best = max(load_run(run).complete(), key=lambda t: t.get("val_acc"))
    for n, f in record["trials"].items():
        f["throughput"], f["latency_s"] = (1.0, 2.0) if int(n) == best.number else (5000.0, 0.001)
    path.write_text(json.dumps(record))

    rc, out, _ = cli("pick", run, "--json")
    assert rc == 0 and json.loads(out)["chosen"]["number"] == best.number
    rc, out, _ = cli("pick", run, "--speed", "edge", "--min-throughput", "100", "--json")
    chosen = json.loads(out)["chosen"]
    assert rc == 0 and chosen["number"] != best.number and chosen["throughput"] == 5000.0
    assert "target 'edge'" in json.loads(out)["speed_from"]
    rc, out, _ = cli("pick", run, "--speed", "edge", "--max-latency", "10ms")
    assert rc == 0 and f"#{best.number} " not in out.split("\n")[0] and "latency (batch 1)" in out and "target 'edge'" in out
    rc, out, _ = cli("pick", run, "--speed", "edge", "--max-latency", "100us")
    assert rc == 1 and "over --max-latency" in out

    rc, _, err = cli("report", run, "--speed", "edge", "--out", tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert rc == 0 and "timed by smhsearch bench (target &#x27;edge&#x27;)" in page, err
    cli("report", run, "--out", tmp_path / "plain.html")
    assert "the search: each trial&#x27;s device during the run" in (tmp_path / "plain.html").read_text()


def test_onnxruntime_times_the_exported_file(run, cli):
    trial = load_run(run).complete()[0].number
    rc, out, err = cli("bench", run, "--runtime", "onnxruntime", "--trial", trial, "--max-steps", "8", "--json")
    assert rc == 0, err
    record = json.loads(out)
    assert record["name"].endswith("-cpu-onnxruntime-b64") and list(record["trials"]) == [str(trial)]
    figure = record["trials"][str(trial)]
    assert figure["runtime"].startswith("onnxruntime ") and figure["throughput"] > 0
    assert figure["protocol"] == protocol(max_steps=8) and figure["steps"] <= 8  # timed as the torch figures are


@pytest.mark.parametrize("args, message", [
    (["--runtime", "tvm"], "--runtime: unknown runtime 'tvm'; allowed: torch, onnxruntime"),
    (["--device", "tpu"], "--device='tpu' is not a device; allowed:"),
    (["--trial", "99"], "--trial: trial(s) 99 have no trained model here; trials with one:"),
    (["--name", "a/b"], "--name: 'a/b' is not a plain name"),
    (["--batch-size", "0"], "--batch-size: expected a positive integer"),
    (["--name", "taken", "--batch-size", "8"], "holds figures of"),
])
def test_bad_bench_requests_exit_2_and_change_nothing(run, cli, args, message):
    (run / "bench").mkdir()
    taken = {"device": "cpu", "runtime": "torch", "batch_size": 64, "name": "taken", "host": "h", "trials": {}}
    (run / "bench" / "taken.json").write_text(json.dumps(taken))
    rc, _, err = cli("bench", run, *args)
    assert rc == 2 and message in err, err
    assert [p.name for p in (run / "bench").iterdir()] == ["taken.json"]
    assert json.loads((run / "bench" / "taken.json").read_text()) == taken
    rc, _, err = cli("pick", run, "--speed", "nosuch")
    assert rc == 2 and "--speed:" in err and "no bench target 'nosuch'; targets: taken" in err
