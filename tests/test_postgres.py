"""A search whose study lives in a real PostgreSQL (a private server, tests/_postgres.py).

The storage's password must never reach the run folder (space.yaml, run.json, study.json,
trial.json, Ray's files) nor any message; `check` and `run` on a server that cannot be
reached, or that refuses the login, exit 2 naming the key; a server killed mid-search and
restarted loses no trial and records none wrongly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from ._postgres import PASSWORD, USER
from .conftest import ROOT

S = optuna.trial.TrialState

SPACE = """name: pg
dataset: {{name: fashion-mnist-small}}
train: {{epochs: 1, batch_size: 256, lr: 0.05}}
space: {{arch: [mlp], budget: ["20%", "40%"], method: {methods}}}
search: {{sampler: grid}}
scheduler: {{kind: none}}
resources: {{cpus_per_trial: 1, max_concurrent: 1}}
{storage}"""


def write_space(folder: Path, storage: str | None, methods: str = "[dense, smh]") -> Path:
    path = folder / "pg.yaml"
    text = SPACE.format(methods=methods, storage=f"storage: {storage}\n" if storage else "")
    if methods == "[dense]":  # no method reads a budget
        text = text.replace('budget: ["20%", "40%"], ', "")
    path.write_text(text)
    return path


def files_holding(folder: Path, secret: str) -> list[str]:
    """Every file under ``folder`` whose bytes contain ``secret``."""
    return [str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


# --- check: connects, and says clearly why it cannot -------------------------------------------------

@pytest.mark.parametrize("url,why", [("postgresql+psycopg2://u:pw9@127.0.0.1/db", "its driver is not installed"),
                                     ("nosuchdb://u:pw9@127.0.0.1/db", "Can't load plugin"),
                                     ("postgresql://u:pw9@127.0.0.1:1/db", "Connection refused")])
def test_check_says_why_a_storage_cannot_be_used(tmp_path, cli, monkeypatch, url, why):
    """No server needed: a missing driver, an unknown database kind, nothing listening; one line, no password."""
    monkeypatch.delenv("SMHSEARCH_STORAGE", raising=False)
    space = write_space(tmp_path, url)
    rc, so, se = cli("check", space)
    assert rc == 2 and f"{space}: storage: cannot connect to" in se and why in se and se.strip().count("\n") == 0, se
    assert "pw9" not in se and ":***@" in se


def test_check_connects_and_names_the_key_when_it_cannot(tmp_path, postgres, pg_db, cli, monkeypatch):
    monkeypatch.delenv("SMHSEARCH_STORAGE", raising=False)
    space = write_space(tmp_path, postgres.url(pg_db))  # the password in the space file itself
    rc, so, se = cli("check", space)
    assert rc == 0 and "valid" in so, so + se
    assert PASSWORD not in so + se

    bare = write_space(tmp_path, postgres.url(pg_db, password=None, scheme="postgresql"))  # libpq: no password given
    rc, so, se = cli("check", bare)
    assert rc == 2 and se.startswith("smhsearch check: error: ") and f"{bare}: storage: cannot connect to" in se, se
    assert "password" in se and se.strip().count("\n") == 0

    monkeypatch.setenv("SMHSEARCH_STORAGE", postgres.url(pg_db, password="wrong-" + PASSWORD))  # supplies the password
    rc, so, se = cli("check", bare)
    assert rc == 2 and "SMHSEARCH_STORAGE: cannot connect to" in se and "password authentication failed" in se, se
    assert PASSWORD not in se and f"{USER}:***@" in se

    monkeypatch.setenv("SMHSEARCH_STORAGE", postgres.url(pg_db))
    rc, so, se = cli("check", bare)
    assert rc == 0, so + se
    monkeypatch.setenv("SMHSEARCH_STORAGE", postgres.url("other"))  # names another database than the space
    rc, so, se = cli("check", bare)
    assert rc == 2 and "storage: the space names" in se and "remove one of them" in se and PASSWORD not in se, se

    monkeypatch.delenv("SMHSEARCH_STORAGE")
    dead = write_space(tmp_path, f"postgresql://{USER}:{PASSWORD}@127.0.0.1:1/{pg_db}")  # no server on port 1
    for command in ("check", "run"):
        rc, so, se = cli(command, dead, *(["--out", tmp_path / "run"] if command == "run" else []))
        assert rc == 2 and f"{dead}: storage: cannot connect to" in se and PASSWORD not in se, se
    assert not (tmp_path / "run").exists()  # run refused before making its folder


def test_the_run_folder_records_the_storage_without_its_password(tmp_path, postgres, pg_db, monkeypatch):
    """The driver's files name the study's storage redacted; `pick` and `report` read it back with the password from
    SMHSEARCH_STORAGE (or libpq's PGPASSWORD), and say so in one line, without the password, when they have none."""
    from smhsearch.runs import RunError, load_run
    from smhsearch.search import plan_run, run_search
    from smhsearch.space import load_space

    monkeypatch.setenv("SMHSEARCH_STORAGE", postgres.url(pg_db))
    space_path = write_space(tmp_path, postgres.url(pg_db, password=None), methods="[dense]")
    plan = plan_run(load_space(space_path), space_path, tmp_path / "run")
    assert plan.storage == postgres.url(pg_db) and PASSWORD not in plan.space.as_written()
    plan.target_trials = 0  # the driver opens the study and writes its files, then finds nothing owed (no Ray)
    run_search(plan)
    out = tmp_path / "run"
    assert {"space.yaml", "run.json", "study.json"} <= {p.name for p in out.iterdir()}
    assert files_holding(out, PASSWORD) == []
    assert json.loads((out / "run.json").read_text())["space"]["storage"] == postgres.url(pg_db, password="***")
    study = optuna.load_study(study_name="pg", storage=postgres.url(pg_db))  # the study really is in PostgreSQL
    assert study.user_attrs["uid"] == json.loads((out / "study.json").read_text())["uid"]

    assert load_run(out).name == "pg"
    monkeypatch.delenv("SMHSEARCH_STORAGE")
    monkeypatch.setenv("PGPASSWORD", PASSWORD)  # libpq's own variable
    assert load_run(out).name == "pg"
    monkeypatch.delenv("PGPASSWORD")
    with pytest.raises(RunError, match="cannot read the study: storage: cannot open postgresql") as e:
        load_run(out)
    assert PASSWORD not in str(e.value) and "\n" not in str(e.value)


# --- a search against the server, which is killed mid-search and restarted ---------------------------

def _wait_for(predicate, timeout: float, what: str) -> None:
    t0 = time.time()
    while not predicate():
        if time.time() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def _complete_records(out: Path) -> dict[int, dict]:
    records = {}
    for f in sorted((out / "trials").glob("*/trial.json")):
        try:
            r = json.loads(f.read_text())
        except ValueError:
            continue
        if r.get("status") == "complete":
            records[r["number"]] = r
    return records


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.timeout(1800)  # three Ray starts and two searches on a shared 2-core machine
def test_a_postgres_killed_mid_search_loses_no_trial(tmp_path, postgres, pg_db):
    """Three trials; once the first has finished, the server is crashed (pg_ctl stop -m immediate), and started
    again only once the second has finished too (or the driver has given up). Whatever the driver did meanwhile,
    `smhsearch run` again finishes the search with each candidate complete once, every result equal to its trial's own
    record, and the password in no file and no message."""
    space = write_space(tmp_path, postgres.url(pg_db, password=None, scheme="postgresql"))
    out = tmp_path / "run"
    env = {**os.environ, "SMHSEARCH_STORAGE": postgres.url(pg_db), "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "smhsearch.cli", "run", str(space), "--out", str(out)]
    driver = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: 0 in _complete_records(out) or driver.poll() is not None, 600, "trial 0 to finish")
        postgres.stop("immediate")  # a crash: clients are cut off mid-connection
        # down long enough that the driver needs it (to tell a result, to ask for the next trial) and cannot have it
        _wait_for(
            lambda: 1 in _complete_records(out) or driver.poll() is not None, 600, "trial 1 to finish or the driver to stop"
        )
        time.sleep(5)
        postgres.start()
        first_out, first_err = driver.communicate(timeout=600)
        print(f"first driver: exit {driver.returncode}; trials it finished: {sorted(_complete_records(out))}")
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]

    study = optuna.load_study(study_name="pg", storage=postgres.url(pg_db))
    uid = study.user_attrs["uid"]
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == S.COMPLETE]
    labels = sorted(t.user_attrs.get("config", {}).get("label", str(t.params)) for t in complete)
    assert len(complete) == 3 and len(set(labels)) == 3, labels  # each candidate exactly once
    # nothing recorded wrongly: a trial the study holds failed was interrupted (and redone), never one that finished
    for t in trials:
        assert t.state in (S.COMPLETE, S.FAIL), (t.number, t.state)
        if t.state == S.FAIL:
            assert t.user_attrs.get("interrupted") is True, (t.number, t.user_attrs)
    records = _complete_records(out)
    for t in complete:
        r = records[t.number]
        assert r["study"]["uid"] == uid
        assert t.values == [r["metrics"]["val_acc"], r["metrics"]["stored_params"], r["metrics"]["throughput"]]
    assert set(records) == {t.number for t in complete}  # no finished record the study does not hold as complete

    pick = subprocess.run([sys.executable, "-m", "smhsearch.cli", "pick", str(out), "--max-params", "1M", "--json"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert pick.returncode == 0, pick.stderr[-2000:]
    assert files_holding(out, PASSWORD) == []
    for text in (first_out, first_err, again.stdout, again.stderr, pick.stdout, pick.stderr):
        assert PASSWORD not in text
