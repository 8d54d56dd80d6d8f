"""A trial whose worker dies is run again (``search.retries``) from its checkpoint, and recorded failed, with the cause,
when the retries run out. The worker really dies: the plugin ``tests/plugins/dies_once.py`` ends its own process
mid-training, as a killed process or a lost node would."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from smhsearch.data import load_dataset
from smhsearch.runs import load_run

PLUGINS = Path(__file__).parent / "plugins"
SPACE = """name: dies
plugins: [dies_once]
train: {{epochs: 3, batch_size: 256}}
space: {{arch: [resnet8], budget: ["20%"], method: [dies_once]}}
search: {{sampler: grid, objectives: [accuracy, stored_params], retries: {retries}}}
scheduler: {{kind: none}}
resources: {{cpus_per_trial: 1}}
"""


def _run(tmp_path: Path, retries: int) -> tuple[subprocess.CompletedProcess, dict]:
    (tmp_path / "dies.yaml").write_text(SPACE.format(retries=retries))
    steps = math.ceil(len(load_dataset("fashion-mnist-small").train.y) / 256)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")]),
           "RAY_USAGE_STATS_ENABLED": "0", "SMHSEARCH_DIED": str(tmp_path / "died"),
           "SMHSEARCH_DIE_AT": str(steps + 2)}  # in the second epoch, after the first one's checkpoint
    r = subprocess.run([sys.executable, "-m", "smhsearch", "run", str(tmp_path / "dies.yaml"), "--out", str(tmp_path / "run")],
                       capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path)
    assert (tmp_path / "died").is_file(), r.stdout[-2000:] + r.stderr[-2000:]  # the first attempt's worker did die
    return r, json.loads((tmp_path / "run" / "trials" / "0000" / "trial.json").read_text())


@pytest.mark.slow  # a 3-epoch trial, twice begun: a minute or two on 2 cores
def test_a_trial_whose_worker_died_runs_again_from_its_checkpoint(tmp_path):
    r, record = _run(tmp_path, retries=1)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert record["status"] == "complete" and record["attempt"] == 2 and record["resumed"] is True
    assert [h["epoch"] for h in record["history"]] == [1, 2, 3]  # the first epoch, from the checkpoint, kept
    assert not (tmp_path / "run" / "trials" / "0000" / "checkpoint.pt").exists()  # removed once complete
    (trial,) = load_run(tmp_path / "run").trials
    assert trial.status == "complete" and trial.get("epoch") == 3


@pytest.mark.slow
def test_a_worker_that_died_with_no_retry_left_is_recorded_failed_with_the_cause(tmp_path):
    r, record = _run(tmp_path, retries=0)
    (trial,) = load_run(tmp_path / "run").trials
    assert trial.status == "failed" and record["status"] == "failed"
    assert "its worker died in attempt 1" in trial.error and "search.retries ran out" in trial.error
    assert record["error"] == trial.error
