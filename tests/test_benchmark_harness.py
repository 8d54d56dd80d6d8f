"""The benchmarks' harness (benchmarks/_harness.py): a worker's failure stops the run instead of hanging it, the data
check runs before any worker, stored cells are reused only when they match, and a rerun that trains nothing
leaves its results file as it was."""

from __future__ import annotations

import json
import math
import os
import sys
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import _common  # type: ignore[import-not-found]  # noqa: E402
import _harness  # type: ignore[import-not-found]  # noqa: E402


@pytest.mark.timeout(300)
def test_pool_returns_every_result_and_raises_a_workers_failure_instead_of_hanging():
    # the workers run standard-library functions: a spawned worker imports nothing heavy
    assert sorted(_harness.pool(math.sqrt, [0, 1, 4], workers=2)) == [0, 1, 2]
    with pytest.raises(ValueError, match="math domain error"):
        list(_harness.pool(math.sqrt, [1, -1], workers=2))
    with pytest.raises(BrokenProcessPool):  # a worker that dies without a word (multiprocessing.Pool waited for ever)
        list(_harness.pool(os._exit, [1, 1], workers=2))


def test_pool_runs_the_data_check_here_first_and_not_at_all_without_jobs():
    calls = []
    with pytest.raises(SystemExit):  # the check exits: no job runs
        list(_harness.pool(lambda x: calls.append(x), [1, 2], workers=1, check=lambda: sys.exit(2)))
    assert calls == []
    assert list(_harness.pool(math.sqrt, [], workers=2, check=lambda: sys.exit(2))) == []  # nothing to train: no data needed


def test_missing_data_exits_2_saying_where_it_looked(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(_harness.DATA_ENV, str(tmp_path))
    assert _harness.data_dir("mnist") == tmp_path / "mnist"
    with pytest.raises(SystemExit) as e:
        _harness.need_dir("MNIST", _harness.data_dir("mnist"))
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "mnist") in err and _harness.DATA_ENV in err
    (tmp_path / "mnist").mkdir()
    assert _harness.need_dir("MNIST", _harness.data_dir("mnist")) == tmp_path / "mnist"
    monkeypatch.delenv(_harness.DATA_ENV)
    assert _harness.data_root() == _harness.REPO.parent / "shared" / "data"


def test_split_reuses_only_matching_cells_in_plan_order():
    plan = [{"m": "a", "seed": 0, "rates": 1}, {"m": "a", "seed": 1, "rates": 1}, {"m": "b", "seed": 0, "rates": 2}]
    key = lambda c: _harness.joined_key(c, ("m", "seed"))  # noqa: E731
    stored = {"a|0": {"m": "a", "seed": 0, "rates": 1, "acc": 0.9}, "b|0": {"m": "b", "seed": 0, "rates": 3, "acc": 0.8}}
    reused, todo = _harness.split(plan, stored, key, lambda old, c: old["rates"] == c["rates"])
    assert reused == {"a|0": stored["a|0"]}
    assert todo == plan[1:]  # the missing cell, and the one whose rates changed


def test_a_rerun_that_trains_nothing_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    monkeypatch.setattr(_common, "RESULTS", tmp_path)
    monkeypatch.setattr(_harness, "RESULTS", tmp_path)
    cpu = torch.device("cpu")
    first = _harness.ResultsFile("demo", cpu)
    first.trained = True
    path = first.write({"cells": {"a": 1}})
    stored = json.loads(path.read_text()) | {"date": "2000-01-01T00:00:00+00:00", "commit": "abc1234"}
    path.write_text(json.dumps(stored, indent=2) + "\n")
    before = path.read_bytes()
    again = _harness.ResultsFile("demo", cpu)
    again.write({"cells": {"a": 1}})  # nothing trained
    assert path.read_bytes() == before
    again.trained = True
    again.write({"cells": {"a": 1}})
    assert json.loads(path.read_text())["date"] != "2000-01-01T00:00:00+00:00"
