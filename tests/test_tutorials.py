"""Every tutorial of the docs runs as written, from a fresh folder, on the embedded data."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TUTORIALS = ROOT / "docs" / "tutorials"
BIN = Path(sys.executable).parent


def run(cmd: list[str], cwd: Path, **extra_env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONPATH": str(ROOT),
           "OMP_NUM_THREADS": "1", **extra_env}
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{cmd} failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.mark.parametrize("script", ["compress_and_train.py", "from_trained.py", "bytes.py", "distillation.py"])
def test_python_tutorial_runs(script, tmp_path):
    out = run([sys.executable, str(TUTORIALS / script)], tmp_path).stdout
    assert out.strip(), "a tutorial shows its results"


def test_cli_tutorial_runs(tmp_path):
    run(["bash", str(TUTORIALS / "compress_and_train.sh")], tmp_path)
    assert (tmp_path / "trained-smh25" / "result.json").exists() and (tmp_path / "trained-smh25" / "model.safetensors").exists()


@pytest.mark.slow
@pytest.mark.cluster
def test_search_tutorial_runs(tmp_path):
    # slow: a real Ray search of 3 one-epoch trials, its report, pick and export (about a minute on 2 cores)
    shutil.copy(TUTORIALS / "tiny.yaml", tmp_path / "tiny.yaml")
    run(["bash", str(TUTORIALS / "search.sh")], tmp_path)
    assert (tmp_path / "tiny.html").exists() and any((tmp_path / "shipped").iterdir())


@pytest.mark.slow
@pytest.mark.cluster
def test_cluster_tutorial_runs(tmp_path):
    # slow: starts a one-machine Ray cluster on loopback, searches 3 one-epoch trials on it, stops it
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    shutil.copy(TUTORIALS / "tiny.yaml", tmp_path / "tiny.yaml")
    out = run(["bash", str(TUTORIALS / "cluster.sh")], tmp_path, PORT=str(port), RAY_USAGE_STATS_ENABLED="0").stdout
    assert "runs/tiny/trials/" in out  # the pick names its model file


def test_every_tutorial_is_on_a_page_and_tested():
    pages = "".join(p.read_text() for p in (ROOT / "docs").rglob("*.md"))
    for script in TUTORIALS.iterdir():
        if script.suffix in (".py", ".sh", ".yaml"):
            assert f"docs/tutorials/{script.name}" in pages, f"{script.name} is on no page"
    tested = Path(__file__).read_text()
    assert all(s.name in tested for s in TUTORIALS.iterdir() if s.suffix in (".py", ".sh"))
