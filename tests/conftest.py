"""Shared fixtures: tiny models (STYLE.md #7) and the shared data folder, if present."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from smhsearch.testing import TINY, UserNet, assert_same_state, perturb, tiny  # noqa: F401  (tests import them from here)

collect_ignore = ["plugins"]  # plugin modules register methods when imported: only the tests that want them load them

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(params=TINY)
def tiny_model(request):
    return tiny(request.param)


ROOT = Path(__file__).resolve().parents[1]


def smhsearch_cli(*args: str, timeout: int = 600, **kw):
    """The real ``smhsearch`` command in a subprocess (Ray's usage stats off)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "smhsearch.cli", *args], capture_output=True, text=True, timeout=timeout, env=env, **kw
    )


def cli_in_process(*args, cwd: Path | None = None, env: dict[str, str] | None = None):
    """The ``smhsearch`` command run by its own ``main`` in this process, as a CompletedProcess: exit status and
    what it printed. For the many refusals that exit before anything heavy runs, this saves starting Python and
    torch each time; what a real process adds (its exit, memory and CPU) is asserted by test_integrity's corpus."""
    import contextlib
    import io
    import os
    import subprocess

    from smhsearch.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved_env, here = dict(os.environ), Path.cwd()
    try:
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main([str(a) for a in args])
    finally:
        os.chdir(here)
        if env is not None:
            os.environ.clear()
            os.environ.update(saved_env)
    return subprocess.CompletedProcess(["smhsearch", *map(str, args)], rc, out.getvalue(), err.getvalue())


@pytest.fixture
def cli(capsys):
    """The ``smhsearch`` command in this process: ``cli(*args) -> (exit status, stdout, stderr)``."""
    from smhsearch.cli import main

    def run(*args):
        capsys.readouterr()
        rc = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return rc, out, err

    return run


QUICK_SHORTENED = {"train": {"epochs": 2}, "space": {"budget": ["10%"]}, "scheduler": {"grace_period": 1}}
"""The shipped spaces/quick.yaml with fewer epochs and one budget: every method of it, the speed phase and the
scheduler, in about a third of the time (the full space runs in the slow test of test_pick_export and in `make demo`)."""


def quick_space_shortened(folder: Path) -> Path:
    """spaces/quick.yaml with :data:`QUICK_SHORTENED` merged in, written to ``folder`` (its ``name`` kept)."""
    import yaml

    space = yaml.safe_load((ROOT / "spaces" / "quick.yaml").read_text())
    for key, value in QUICK_SHORTENED.items():
        space[key] = {**space[key], **value}
    path = folder / "quick.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory) -> Path:
    """A real run of the shipped quick space, shortened (about a minute and a half on 2 idle cores), shared by the
    report, pick, export, dashboard and light-command tests: one run, read many ways."""
    base = tmp_path_factory.mktemp("runs")
    out = base / "quick"
    r = smhsearch_cli("run", str(quick_space_shortened(base)), "--out", str(out))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out


# Under ``pytest -n`` (``make test``) the tests using a fixture worth sharing run on one worker (``--dist loadgroup``):
# the quick run is made once, and each module's Ray is started once.
@pytest.hookimpl(tryfirst=True)  # before xdist's own, which reads the xdist_group marks to name each test's group
def pytest_collection_modifyitems(config, items):
    """``gpu`` tests skip, saying why, where no CUDA device is visible (they run with ``pytest -m gpu``), and ``xla`` tests
    where torch_xla is not importable (``make test-xla``); the users of a
    shared fixture are grouped onto one xdist worker."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "quick_run" in names:
            item.add_marker(pytest.mark.xdist_group("quick_run"))
        elif "local_ray" in names:
            item.add_marker(pytest.mark.xdist_group(f"ray-{item.module.__name__}"))
    import importlib.util

    if importlib.util.find_spec("torch_xla") is None:  # `make test-xla` runs them in .venv-xla, which has it
        skip_xla = pytest.mark.skip(
            reason="needs PyTorch/XLA (torch_xla is not importable here; `make test-xla` builds .venv-xla)"
        )
        for item in items:
            if "xla" in item.keywords:
                item.add_marker(skip_xla)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False here)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def pytest_configure(config):
    """Under xdist each worker is one of the machine's cores: one thread each, for torch here and for the commands the
    tests start (two workers of two threads each on two cores would time-slice every step)."""
    import os

    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
        torch.set_num_threads(1)


@pytest.fixture(scope="module")
def local_ray():
    """One Ray for a test module's runs, loopback only and 2 CPUs (a driver joins a Ray that is already up)."""
    import os

    import ray

    if ray.is_initialized():
        yield
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # address="local": a new Ray of its own, never one another test started with `ray start` (ray.init would join it)
    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def postgres():
    """A private PostgreSQL server for the session (tests/_postgres.py); skips, saying why, where none can start."""
    from ._postgres import Postgres, unavailable

    reason = unavailable()
    if reason:
        pytest.skip(reason)
    pg = Postgres()
    try:
        yield pg
    finally:
        pg.close()


@pytest.fixture
def pg_db(postgres) -> str:
    """A new empty database on the session's server (its name)."""
    return postgres.create_database()
