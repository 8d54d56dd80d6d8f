"""The CLI as a user runs it: a real subprocess, exit codes, nothing written on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import cli_in_process


def run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "smhsearch.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_compress_reports_and_saves(tmp_path):
    out = tmp_path / "m.safetensors"
    r = run("compress", "resnet20", "--budget", "25%", "--scale", "learnable", "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    facts = json.loads(r.stdout)
    assert facts["stored_parameters"] <= int(0.25 * facts["base_parameters"])
    assert facts["virtual_parameters"] == facts["base_parameters"] == 269_722
    assert out.is_file() and facts["compact_bytes"] == out.stat().st_size
    import smhsearch

    assert smhsearch.load_compact(out).stored_count() == facts["stored_parameters"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["compress", "resnet33", "--budget", "10K"], "ARCH: unknown architecture 'resnet33'; nearest: "),
        (["compress", "resnet32", "--budget", "1K"], "--budget: SMH: budget is too small: the unhashed parameters"),
        (
            ["compress", "resnet32", "--budget", "10%", "--scope", "dense"],
            "--scope: scope must be one of all, conv, linear, but got 'dense'",
        ),
        (["compress", "resnet32", "--budget", "lots"], "--budget: budget must be"),
        (["compress", "resnet32", "--budget", "10K", "--method", "smj"], "--method: unknown method 'smj'; nearest: smh"),
        (["models", "--family", "bert"], "--family: unknown family 'bert'; allowed: "),
        (["compress", "resnet20", "--method", "prune"], "--budget: method 'prune' needs a budget"),
        (["compress", "resnet20", "--method", "width", "--alpha", "2"], "--alpha: alpha must lie in (0, 1], but got 2.0"),
        (
            ["compress", "resnet20", "--method", "hashednets", "--budget", "10%", "--hashes", "0"],
            "--hashes: hashes must be an int >= 1",
        ),
        (
            ["compress", "resnet20", "--method", "width", "--budget", "10%", "--alpha", "0.5"],
            "--budget: give exactly one of budget and alpha, but got (budget='10%', alpha=0.5)",
        ),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(tmp_path, args, message):
    # the command's own main, in this process: a refusal needs no new Python (test_integrity runs real processes)
    r = cli_in_process(*args, "--out", str(tmp_path / "x.safetensors")) if args[0] == "compress" else cli_in_process(*args)
    assert r.returncode == 2
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_listings():
    r = run("models", "--family", "resnet_cifar", "--json")
    assert [m["name"] for m in json.loads(r.stdout)] == ["resnet110", "resnet20", "resnet32", "resnet44", "resnet56", "resnet8"]
    assert "smh" in run("methods").stdout


@pytest.mark.parametrize(
    "args,key,check",
    [
        (
            ["--method", "hashednets", "--budget", "46K", "--hashes", "2"],
            "hashednets_hashes",
            lambda f, v: v == 2 and f["stored_parameters"] <= 46_000,
        ),
        (["--method", "width", "--alpha", "0.5", "--resolution"], "width_resolution", lambda f, v: v > 32),
        (["--method", "prune", "--budget", "10%"], "prune_nonzeros", lambda f, v: f["stored_parameters"] == int(0.1 * 269_722)),
        (
            ["--method", "lowrank", "--budget", "25%"],
            "lowrank_c",
            lambda f, v: v > 0 and f["stored_parameters"] <= int(0.25 * 269_722),
        ),
    ],
)
def test_compress_every_method(args, key, check):
    r = run("compress", "resnet20", *args, "--json")
    assert r.returncode == 0, r.stderr
    facts = json.loads(r.stdout)
    assert check(facts, facts[key])


def test_train_writes_result_and_compact_file(tmp_path):
    r = run("train", "mlp", "--method", "smh", "--budget", "30%", "--epochs", "1", "--lr", "0.05",
            "--variable-lr-mult", "1", "--out", str(tmp_path / "t"), "--json")  # x the derived rates
    assert r.returncode == 0, r.stderr
    facts = json.loads((tmp_path / "t" / "result.json").read_text())
    metrics = facts["metrics"]
    assert (
        facts["status"] == "complete"
        and metrics["test_acc"] > 0.6
        and metrics["stored_params"] <= int(0.3 * metrics["base_params"])
    )
    assert facts["spec"]["dataset"] == "fashion-mnist-small" and len(facts["history"]) == 1
    assert {"smhsearch", "torch", "python"} <= set(facts["versions"]) and facts["spec"]["method"]["method"] == "smh"
    assert facts["spec"]["train"]["variable_lr_mult"] == 1 and facts["spec"]["train"]["lr"] == 0.05
    from smhsearch.export import load_trained
    from smhsearch.methods import CompressedModel

    model = load_trained(tmp_path / "t" / "model.safetensors")
    assert isinstance(model, CompressedModel) and model.config.method == "smh" and json.loads(r.stdout)["status"] == "complete"
    # the file is the trained model, not a fresh build of its config: it scores the test accuracy the run reported
    from smhsearch.data import load_dataset
    from smhsearch.train import evaluate

    test = load_dataset("fashion-mnist-small").test
    assert evaluate(model, test)[0] == pytest.approx(facts["metrics"]["test_acc"], abs=1.5 / len(test))


@pytest.mark.parametrize(
    "args,message",
    [(["train", "mlp", "--dataset", "cifar-10"], "--dataset: unknown dataset 'cifar-10'; nearest: cifar10"),
     (["train", "mlp", "--dataset", "cifar10", "--root", "/nonexistent"], "--dataset/--root: cifar10: looked for /nonexistent"),
     (["train", "mlp", "--epochs", "0"], "--epochs: epochs >= 1 must hold, but got (epochs=0)"),
     (["train", "mlp", "--method", "smh"], "--budget: method 'smh' needs a budget")],
)
def test_train_bad_input(tmp_path, args, message):
    r = run(*args, "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()
