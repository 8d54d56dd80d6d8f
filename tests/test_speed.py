"""Speed apart from training: the deployed architecture's signature, the cache, the lock, repeats until stable."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import torch

from smhsearch.methods import SMH, HashedNets, WidthMultiplier, compress
from smhsearch._timing import protocol, spread
from smhsearch.models import create_model
from smhsearch.speed import SpeedPhase, deployed, measure_speed, signature

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
SHAPE = (1, 28, 28)


def resnet8():
    torch.manual_seed(0)
    return create_model("resnet8", num_classes=10, in_channels=1)


def test_dense_smh_and_hashednets_deploy_one_architecture_width_another():
    dense = resnet8()
    smh, hashed = compress(resnet8(), SMH(budget="25%")), compress(resnet8(), HashedNets(budget="25%"))
    width = compress(resnet8(), WidthMultiplier(budget="25%"))
    assert signature(deployed(dense)) == signature(deployed(smh)) == signature(deployed(hashed))
    assert signature(deployed(width)) != signature(dense)
    assert signature(resnet8()) == signature(dense)  # weights' values do not matter, only the network


def test_measurement_repeats_until_the_spread_is_small_and_records_it():
    s = measure_speed(create_model("mlp_1x1000"), SHAPE, CPU, batch_size=16, max_spread=10.0, max_steps=50)
    assert s["steps"] == 10 and s["throughput_spread"] <= 10.0  # any spread passes: one round
    s = measure_speed(create_model("mlp_1x1000"), SHAPE, CPU, batch_size=16, max_spread=0.0, max_steps=25)
    assert s["steps"] == 25  # no spread passes: up to the cap
    assert s["throughput"] > 0 and s["latency_s"] > 0 and s["batch_size"] == 16 and "threads" in s["device"]
    assert spread([1.0, 1.0, 1.0, 1.0]) == 0 and spread([1.0, 2.0]) == float("inf")


def test_every_speed_figure_is_timed_by_the_one_protocol(tmp_path, monkeypatch):
    """The search's figures, ``measure.throughput``'s default and ONNX Runtime's (int8 report, ``bench``) all stop by the
    protocol's one rule: where it never finds the spread small, each times up to its cap, and says how it was timed."""
    from smhsearch import _timing, int8, measure
    from smhsearch.export import float_onnx

    monkeypatch.setattr(_timing, "spread", lambda times: float("inf"))  # never stable: every protocol runs to its cap
    net = create_model("mlp_1x1000")
    s = measure_speed(net, SHAPE, CPU, batch_size=4, max_steps=15)
    assert s["steps"] == 15 and s["protocol"] == protocol(max_steps=15)
    assert len(measure.throughput(net, SHAPE, batch_size=4).steps_s) == _timing.MAX_STEPS
    assert len(measure.throughput(net, SHAPE, batch_size=4, warmup=1, repeats=7).steps_s) == 7  # a fixed count when asked
    f = int8.timing(float_onnx(net, SHAPE, tmp_path / "m.onnx"), SHAPE, max_steps=15)
    assert f["steps"] == 15 and f["protocol"] == protocol(max_steps=15) and f["batch_size"] == int8.BATCH
    assert f["throughput"] > 0 and f["latency_s"] > 0


def test_the_cache_measures_each_architecture_once_per_run(tmp_path):
    a, b = SpeedPhase(tmp_path, CPU, 0, max_steps=20), SpeedPhase(tmp_path, CPU, 1, max_steps=20)
    first = a.measure(resnet8(), SHAPE, batch_size=8)
    again = b.measure(compress(resnet8(), SMH(budget="10%")), SHAPE, batch_size=8)
    assert not first["cached"] and again["cached"] and again["throughput"] == first["throughput"]
    assert again["measured_by_trial"] == 0
    other = b.measure(compress(resnet8(), WidthMultiplier(budget="25%")), SHAPE, batch_size=8)
    assert not other["cached"] and other["throughput"] != first["throughput"]
    assert not b.measure(resnet8(), SHAPE, batch_size=16)["cached"]  # another batch size is another figure
    assert len(list((tmp_path / "speed").glob("*.json"))) == 3


HOLD = """
import sys, time, torch
from smhsearch.speed import SpeedPhase
p = SpeedPhase(sys.argv[1], torch.device("cpu"), int(sys.argv[2]))
{body}
"""


def child(run: Path, trial: int, body: str) -> subprocess.Popen:
    code = HOLD.format(body=textwrap.dedent(body))
    return subprocess.Popen([sys.executable, "-c", code, str(run), str(trial)], cwd=ROOT, stdout=subprocess.PIPE, text=True)


def test_a_measurement_waits_for_running_epochs_and_holds_new_ones_back(tmp_path):
    # another trial is mid-epoch for 3 s: the measurement starts only once that epoch has ended
    busy = child(tmp_path, 7, "p.acquire_epoch(); print('in', flush=True); time.sleep(3); p.release_epoch()")
    go = tmp_path / "go"
    starter = child(tmp_path, 8, f"""
        print('ready', flush=True)
        while not __import__('os').path.exists({str(go)!r}): time.sleep(0.01)
        p.acquire_epoch(); print(time.time(), flush=True)""")
    assert busy.stdout.readline().strip() == "in" and starter.stdout.readline().strip() == "ready"
    phase = SpeedPhase(tmp_path, CPU, 1)
    with phase.alone() as waited:
        assert waited > 1.0
        go.touch()  # and while it measures, no epoch of another trial starts
        time.sleep(2.0)
        left = time.time()
    assert float(starter.stdout.readline()) >= left
    busy.wait(10), starter.wait(10)


def test_a_trial_records_speed_with_its_spread(tmp_path):
    from smhsearch.job import JobSpec, run_job
    from smhsearch.train import TrainConfig

    spec = JobSpec(
        "mlp",
        model_kwargs={"hidden": [16]},
        dataset="synthetic",
        dataset_kwargs={"n": 64, "size": 8, "in_channels": 1},
        train=TrainConfig(epochs=2, batch_size=32),
    )
    phase = SpeedPhase(tmp_path, CPU, 3)
    result = run_job(spec, record_path=tmp_path / "trials" / "0003" / "trial.json", speed_phase=phase)
    m = result.metrics
    assert m["throughput"] > 0 and m["latency_s"] > 0 and 0 <= m["throughput_spread"] < float("inf")
    assert result.record["speed"]["batch_size"] == 64 and not result.record["speed"]["cached"]
    assert not phase.own.is_locked  # the trial's epoch lock is let go when training ends
