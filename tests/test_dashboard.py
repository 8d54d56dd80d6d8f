"""A finished run's study opens in optuna-dashboard: started on a loopback port, its API lists the trials and their values."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from smhsearch.runs import load_run

DASHBOARD = shutil.which("optuna-dashboard") or str(Path(sys.executable).with_name("optuna-dashboard"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, deadline: float):
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return json.loads(r.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.mark.skipif(not Path(DASHBOARD).is_file(), reason="optuna-dashboard is not installed (pip install -e '.[dev]')")
def test_the_study_opens_in_optuna_dashboard(quick_run):
    run = load_run(quick_run)
    port = _free_port()
    proc = subprocess.Popen([DASHBOARD, f"sqlite:///{quick_run / 'study.db'}", "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}/api/studies"
        summaries = _get(base, time.monotonic() + 120)["study_summaries"]
        (study,) = [s for s in summaries if s["study_name"] == run.name]
        detail = _get(f"{base}/{study['study_id']}", time.monotonic() + 60)
        shown = {t["number"]: t for t in detail["trials"]}
        assert set(shown) == {t.number for t in run.trials}
        for t in run.complete():
            assert shown[t.number]["state"] == "Complete"
            # the objectives, in the study's order: validation accuracy, stored parameters, throughput
            assert shown[t.number]["values"] == pytest.approx([t.get("val_acc"), t.get("stored_params"), t.get("throughput")])
    finally:
        proc.terminate()
        proc.wait(timeout=30)
