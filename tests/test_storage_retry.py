"""A storage error that passes (a locked SQLite file, a dropped connection) is retried; any other error is not."""

from __future__ import annotations

import sqlite3
import threading
import time

import optuna
import pytest

from smhsearch._storage import retry_transient, transient


def test_a_tell_waits_out_a_locked_database(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 0.2}})
    study = optuna.create_study(study_name="s", storage=storage)
    trial = study.ask()
    holder = sqlite3.connect(tmp_path / "study.db", isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")  # another writer holds the file: every write here is refused until it lets go
    release = threading.Timer(2.0, lambda: holder.execute("COMMIT"))
    release.start()
    with pytest.raises(Exception) as first:
        study.tell(trial, 0.5)  # without a retry: refused
    assert transient(first.value)
    t0 = time.time()
    retry_transient(lambda: study.tell(trial, 0.5), "telling the study", delays=(0.5,) * 12)
    release.join()
    assert time.time() - t0 < 10 and study.trials[0].state == optuna.trial.TrialState.COMPLETE and study.trials[0].value == 0.5


def test_an_error_that_does_not_pass_is_raised_at_once():
    calls = []

    def refuse():
        calls.append(1)
        raise ValueError("Cannot tell a COMPLETE trial")

    with pytest.raises(ValueError):
        retry_transient(refuse, "telling the study", delays=(0.01,) * 5)
    assert len(calls) == 1
