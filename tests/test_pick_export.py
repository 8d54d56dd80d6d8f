"""``smhsearch pick`` and ``smhsearch export`` on a real run of spaces/quick.yaml, through the real CLI."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from smhsearch import create_model, pareto
from smhsearch.data import load_dataset
from smhsearch.export import load_compact
from smhsearch.runs import load_run
from smhsearch.space import load_space

from .conftest import ROOT, smhsearch_cli


# The first test here also waits for the session's real run of the quick space (shortened; conftest.quick_run).
pytestmark = pytest.mark.timeout(600)


@pytest.mark.slow
def test_the_shipped_quick_space_runs_as_make_demo_runs_it(tmp_path):
    """`make demo`'s job, unshortened: every candidate of spaces/quick.yaml finishes, and the README's pick answers."""
    space = load_space(ROOT / "spaces" / "quick.yaml")
    r = smhsearch_cli("run", str(ROOT / "spaces" / "quick.yaml"), "--out", str(tmp_path / "quick"), timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    run = load_run(tmp_path / "quick")
    assert len(run.trials) == len(space.candidates()) == 7
    assert {t.status for t in run.trials} <= {"complete", "early_stopped"}
    assert {t.method for t in run.complete()} >= {"dense", "smh"}
    r = smhsearch_cli("pick", str(tmp_path / "quick"), "--max-params", "20K")
    assert r.returncode == 0 and "--trial" in r.stdout, r.stdout + r.stderr

def test_pick_chooses_what_pareto_chooses_and_says_why(quick_run, cli):
    run = load_run(quick_run)
    budget = max(int(t.get("stored_params")) for t in run.complete() if t.method != "dense")
    expected = pareto.pick(run.trials, pareto.Constraints(max_params=budget)).chosen
    r = smhsearch_cli("pick", str(quick_run), "--max-params", str(budget))  # once through the installed command
    assert r.returncode == 0, r.stderr
    assert f"#{expected.number} {expected.label}" in r.stdout
    assert f"{int(expected.get('stored_params')):,} <= {budget:,}" in r.stdout  # its metric beside the constraint
    assert "the highest val acc of the" in r.stdout and f"--trial {expected.number}" in r.stdout
    # --json carries the same choice, and an accuracy floor
    floor = expected.get("val_acc") - 0.01
    rc, stdout, _ = cli("pick", quick_run, "--max-params", budget, "--min-accuracy", f"{100 * floor:.2f}%", "--json")
    out = json.loads(stdout)
    assert rc == 0 and out["chosen"]["number"] == expected.number
    assert out["constraints"]["min_accuracy"] == pytest.approx(round(floor, 4), abs=1e-4)


def test_pick_with_nothing_in_reach_exits_1_and_lists_the_nearest(quick_run, cli):
    run = load_run(quick_run)
    smallest = min(int(t.get("stored_params")) for t in run.complete())
    rc, out, _ = cli("pick", quick_run, "--max-params", smallest - 1, "--min-throughput", "1")
    assert rc == 1
    assert "no finished trial satisfies stored parameters <=" in out and "nearest:" in out
    nearest = pareto.pick(run.trials, pareto.Constraints(max_params=smallest - 1, min_throughput=1)).nearest
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("  #")]
    assert listed == [f"#{t.number}" for t, _ in nearest] and len(listed) == min(3, len(run.complete()))
    assert "over --max-params by" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["pick", "no/such/run", "--max-params", "5.3M"], "RUN: no run folder at no/such/run"),
        (["pick", "{run}", "--max-params", "lots"], "--max-params: expected a positive number such as 20000, 20K, 5.3M"),
        (["pick", "{run}", "--max-params", "25%"], "--max-params: give an absolute count"),
        (["pick", "{run}", "--min-accuracy", "1.5"], "--min-accuracy: expected a fraction in [0, 1] (0.8) or a percentage (80%)"),
        (["pick", "{run}", "--min-throughput", "-3"], "--min-throughput: expected a positive number"),
        (["export", "no/such/run", "--trial", "0", "--out", "{tmp}/e"], "RUN: no run folder"),
        (["export", "{run}", "--trial", "99", "--out", "{tmp}/e"], "--trial: {run}: no trial 99; the run has trials {numbers}"),
        (
            ["export", "{run}", "--trial", "{first}", "--out", "{tmp}/e", "--format", "onnx,tflite"],
            "--format: unknown format 'tflite'; allowed: safetensors, torchscript, pt2, onnx, onnx-int8, compact",
        ),
        (
            ["export", "{run}", "--trial", "{dense}", "--out", "{tmp}/e", "--format", "compact"],
            "is a dense model, so it has no compact file",
        ),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message_and_write_nothing(quick_run, tmp_path, cli, args, message):
    run = load_run(quick_run)
    fill = {
        "run": quick_run,
        "tmp": tmp_path,
        "first": run.complete()[0].number,
        "numbers": ", ".join(str(t.number) for t in run.trials),
        "dense": next(t.number for t in run.complete() if t.method == "dense"),
    }
    rc, out, err = cli(*[a.format(**fill) for a in args])
    assert rc == 2, out + err
    assert message.format(**fill) in err, err
    assert not (tmp_path / "e").exists()


def test_export_refuses_trials_without_a_model_and_a_folder_in_use(quick_run, tmp_path, cli):
    run = load_run(quick_run)
    stopped = [t for t in run.trials if t.status == "early_stopped"]
    if stopped:  # ASHA stops some of quick.yaml's trials; which ones depends on timing
        rc, _, err = cli("export", quick_run, "--trial", stopped[0].number, "--out", tmp_path / "e")
        assert rc == 2 and "was stopped early by the scheduler" in err and "trials with a model:" in err
        assert not (tmp_path / "e").exists()
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "keep.txt").write_text("mine")
    rc, _, err = cli("export", quick_run, "--trial", run.complete()[0].number, "--out", tmp_path / "used")
    assert rc == 2 and "exists and is not an empty folder; nothing was written" in err
    assert [p.name for p in (tmp_path / "used").iterdir()] == ["keep.txt"]


def _accuracy(forward, data, preprocess) -> float:
    """Test accuracy with the input prepared as the export's manifest says."""
    mean = torch.tensor(preprocess["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(preprocess["std"]).view(1, -1, 1, 1)
    correct = 0
    for i in range(0, len(data.test.y), 256):
        x, y = (data.test.x[i:i + 256].float() / 255 - mean) / std, data.test.y[i:i + 256]
        correct += int((forward(x).argmax(1) == y).sum())
    return correct / len(data.test.y)


def test_export_of_the_picked_model_reproduces_its_test_accuracy_in_every_format(quick_run, tmp_path):
    run = load_run(quick_run)
    chosen = pareto.pick([t for t in run.trials if t.method != "dense"], pareto.Constraints()).chosen
    out = tmp_path / "model"
    r = smhsearch_cli("export", str(quick_run), "--trial", str(chosen.number), "--out", str(out),
                      "--format", "safetensors,torchscript,pt2,onnx,compact", "--json")
    assert r.returncode == 0, r.stderr
    manifest = json.loads(r.stdout)
    assert manifest == json.loads((out / "export.json").read_text())
    assert {f["format"] for f in manifest["files"]} == {"safetensors", "torchscript", "pt2", "onnx", "compact"}
    assert all(f["ok"] and f["max_abs_diff"] <= f["tolerance"] for f in manifest["files"])
    assert sorted(p.name for p in out.iterdir()) == sorted(["export.json", *(f["path"] for f in manifest["files"])])

    # independently of the command: each file, loaded the way a deployment would, gets the trial's test accuracy
    data = load_dataset(run.dataset)
    expected = chosen.get("test_acc")
    pre = manifest["preprocess"]
    assert pre["mean"] == [0.286] and pre["std"] == [0.353]  # fashion-mnist's normalisation
    tol = 1.5 / len(data.test.y)  # float rounding may flip one borderline sample
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(out / "model.safetensors"), "pt") as f:
        meta = json.loads(f.metadata()["arch"])
    dense = create_model(meta["name"], **meta["kwargs"])
    dense.load_state_dict(load_file(str(out / "model.safetensors")))
    dense.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated; the file must still load
        assert _accuracy(dense, data, pre) == pytest.approx(expected, abs=tol)
        assert _accuracy(torch.jit.load(str(out / "model.torchscript.pt")), data, pre) == pytest.approx(expected, abs=tol)
        assert _accuracy(torch.export.load(str(out / "model.pt2")).module(), data, pre) == pytest.approx(expected, abs=tol)
        assert _accuracy(load_compact(out / "model.compact.safetensors"), data, pre) == pytest.approx(expected, abs=tol)
    import onnxruntime as ort

    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert _accuracy(lambda x: torch.from_numpy(session.run(None, {"input": x.numpy()})[0]), data, pre) == pytest.approx(
        expected, abs=tol
    )
    # the compact file is the small one: the stored variables, not the dense weights
    sizes = {f["format"]: f["bytes"] for f in manifest["files"]}
    assert sizes["compact"] < sizes["safetensors"]


def test_export_of_a_dense_trial_skips_compact_by_default(quick_run, tmp_path, cli):
    run = load_run(quick_run)
    dense = next(t for t in run.complete() if t.method == "dense")
    rc, out, err = cli("export", quick_run, "--trial", dense.number, "--out", tmp_path / "d")
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["export.json", "model.onnx", "model.safetensors"]
    assert "max |diff|" in out and np.isfinite(
        json.loads((tmp_path / "d" / "export.json").read_text())["files"][0]["max_abs_diff"]
    )


def test_int8_export_is_quantised_calibrated_and_scored_beside_the_float_model(quick_run, tmp_path, cli):
    import onnx

    run = load_run(quick_run)
    chosen = pareto.pick([t for t in run.trials if t.method != "dense"], pareto.Constraints()).chosen
    out = tmp_path / "int8"
    rc, stdout, err = cli("export", quick_run, "--trial", chosen.number, "--out", out, "--format", "onnx,onnx-int8",
                          "--calibration-images", "256", "--json")
    assert rc == 0, err
    manifest = json.loads(stdout)
    files = {f["format"]: f for f in manifest["files"]}
    assert files["onnx-int8"]["calibration_images"] == 256 and files["onnx-int8"]["tolerance"] is None
    graph = onnx.load(str(out / "model.int8.onnx")).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # ONNX Runtime's QDQ format
    int8_weights = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) >= 2]
    assert int8_weights and files["onnx-int8"]["bytes"] < 0.4 * files["onnx"]["bytes"]  # weights in a byte, not four
    # scored independently on the test split, as deployed: the manifest's figures are the file's
    import onnxruntime as ort

    data = load_dataset(run.dataset)
    session = ort.InferenceSession(str(out / "model.int8.onnx"), providers=["CPUExecutionProvider"])
    acc = _accuracy(lambda x: torch.from_numpy(session.run(None, {"input": x.numpy()})[0]), data, manifest["preprocess"])
    report = manifest["int8"]
    assert report["int8"]["test_acc"] == pytest.approx(acc, abs=1e-9) and report["test_images"] == len(data.test.y)
    assert report["float"]["test_acc"] == pytest.approx(chosen.get("test_acc"), abs=1.5 / len(data.test.y))
    assert abs(report["int8"]["test_acc"] - report["float"]["test_acc"]) < 0.05  # calibrated: not a broken model
    assert all(report[k]["latency_s"] > 0 and report[k]["throughput"] > 0 for k in ("float", "int8"))
    rc, _, err = cli("export", quick_run, "--trial", chosen.number, "--out", tmp_path / "x", "--format", "onnx-int8",
                     "--calibration-images", "0")
    assert rc == 2 and "--calibration-images: expected 1 to 100000" in err and not (tmp_path / "x").exists()
