"""Reading a run is light: ``pick``, ``report`` and ``export --help`` import no torch (issue 18).

The run folder's ``run.json`` (written by the driver) carries the validated space and the
architectures' families, so the read path needs neither the pydantic schema (whose
methods import torch) nor the model registry.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from smhsearch.runs import RunError, load_run, trial_label
from smhsearch.space import Candidate

from .conftest import QUICK_SHORTENED

HEAVY = {"torch", "ray", "pydantic", "torchvision", "fvcore"}


def imported(*args: str, cwd=None) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run ``python -X importtime -m smhsearch ARGS``; its result and every module it imported."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "smhsearch", *args], capture_output=True, text=True,
                       timeout=300, env=env, cwd=cwd)
    modules = {line.rsplit("|", 1)[1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    return r, modules


@pytest.mark.parametrize("command", ["pick", "report", "export --help"])
def test_reading_a_run_imports_no_torch(quick_run, tmp_path, command):
    args = {"pick": ["pick", str(quick_run)], "report": ["report", str(quick_run), "--out", str(tmp_path / "r.html")],
            "export --help": ["export", "--help"]}[command]
    r, modules = imported(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "smhsearch.runs" in modules or command == "export --help"  # the probe sees imports at all
    assert not HEAVY & modules, f"{command} imported {sorted(HEAVY & modules)}"
    if command == "report":
        assert (tmp_path / "r.html").stat().st_size > 0
    if command == "pick":
        assert "export with" in r.stdout


def _copy_run(src, dst):
    """The parts of a run that a reader reads (not the models or Ray's folders)."""
    dst.mkdir()
    for name in ("space.yaml", "study.db", "run.json"):
        if (src / name).exists():
            shutil.copy(src / name, dst / name)
    for trial in (src / "trials").iterdir():
        (dst / "trials" / trial.name).mkdir(parents=True)
        shutil.copy(trial / "trial.json", dst / "trials" / trial.name / "trial.json")
    return dst


def test_run_json_says_what_validating_the_space_says(quick_run, tmp_path):
    from smhsearch.report import report_data

    light = load_run(quick_run)
    old = _copy_run(quick_run, tmp_path / "old")
    (old / "run.json").unlink()  # a run from before run.json: read by validating space.yaml
    heavy = load_run(old)
    assert light.settings == heavy.settings == json.loads(light.space.model_dump_json())
    assert light.families == {"resnet8": "resnet_cifar"} and heavy.families is None
    assert [t.as_row() for t in light.trials] == [t.as_row() for t in heavy.trials]
    a, b = report_data(light), report_data(heavy)
    assert (a.training, a.published, a.dataset, a.epochs) == (b.training, b.published, b.dataset, b.epochs)
    assert (
        a.training["epochs"] == QUICK_SHORTENED["train"]["epochs"] and a.training["optimizer"] == "sgd"
    )  # defaults filled in, not only the file's keys


def test_a_broken_run_json_is_named(quick_run, tmp_path):
    run = _copy_run(quick_run, tmp_path / "r")
    (run / "run.json").write_text('{"space": {"name": "quick"}}')
    with pytest.raises(RunError, match=r"run\.json: not the run record"):
        load_run(run)


@pytest.mark.parametrize("config", [
    {"arch": "resnet8", "method": "dense"},
    {"arch": "resnet8", "method": "smh", "budget": "25%", "scope": "all", "scale": "learnable"},
    {"arch": "mlp", "method": "prune", "budget": 1000, "schedule": "gradual", "end": 0.5},
    {"arch": "resnet20", "method": "width", "budget": "10%"},
])
def test_trial_label_is_the_candidates_label(config):
    assert trial_label(config) == Candidate.from_params(config).label()
