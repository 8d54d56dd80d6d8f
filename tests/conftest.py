"""Shared fixtures: tiny models (STYLE.md #7) and the shared data folder, if present."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from smhsearch.models import create_model

collect_ignore = ["plugins"]  # plugin modules register methods when imported: only the tests that want them load them

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


class UserNet(nn.Module):
    """A user model smhsearch knows nothing of: conv, depthwise conv, BN, squeeze-excite, linear."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.se = nn.Conv2d(8, 8, 1)
        self.head = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.stem(x)))
        x = self.dw(x) * torch.sigmoid(self.se(x.mean((2, 3), keepdim=True)))
        return self.head(x.mean((2, 3)))


def tiny(name: str, seed: int = 0) -> tuple[nn.Module, tuple[int, ...]]:
    """A tiny model and its per-sample input shape; ``seed`` draws its initial weights."""
    torch.manual_seed(seed)
    if name == "resnet8":
        return create_model("resnet8", widths=(8, 16, 16)), (3, 16, 16)
    if name == "mlp":
        return create_model("mlp", image_size=8, hidden=[32, 16]), (1, 8, 8)
    if name == "user":
        return UserNet(), (3, 8, 8)
    if name == "mobilenet_v3_small":
        return create_model("mobilenet_v3_small", num_classes=10), (3, 32, 32)
    raise KeyError(name)


TINY = ["resnet8", "mlp", "user"]


@torch.no_grad()
def perturb(model: nn.Module, seed: int = 1234) -> nn.Module:
    """Move every tensor ``model`` saves away from where any constructor leaves it; returns ``model``.

    A round trip (state dict, compact file, materialisation) compared on a freshly built
    model passes even when nothing is loaded, because the rebuild starts from the same
    seeds. After this, only a faithful load reproduces the model:

    - a compressed model is taken part-way through training (``set_progress(0.6)``), so
      gradual pruning has masked weights and counted its level;
    - every floating parameter gets noise of a tenth of its own magnitude (absolute where
      it is all zeros, as batch-norm's bias starts);
    - every saved floating buffer moves: batch-norm's running means shift, its running
      variances and the methods' per-layer scales (SMH's ``scale_init``) are rescaled;
    - batch-norm's ``num_batches_tracked`` counts on.

    Buffers that are not saved (HashedNets' index and signs, rebuilt from its hash seed)
    are left alone, and so are the other integer buffers (the hash seed, the pruning level).
    """
    from smhsearch.methods import CompressedModel

    if isinstance(model, CompressedModel):
        model.set_progress(0.6)
    g = torch.Generator().manual_seed(seed)
    noise = lambda t: torch.randn(t.shape, generator=g, dtype=t.dtype).to(t.device)  # noqa: E731
    for p in model.parameters():
        if p.is_floating_point():
            scale = float(p.abs().mean()) or 1.0
            p.add_(0.1 * scale * noise(p))
    saved = set(model.state_dict(keep_vars=True))
    for name, b in model.named_buffers():
        if name not in saved:
            continue
        if b.is_floating_point():
            if name.endswith("running_mean"):
                b.add_(0.3 * noise(b))
            else:  # variances and scales: positive, so rescale them
                b.mul_(torch.exp(0.3 * noise(b)))
        elif name.endswith("num_batches_tracked"):
            b.add_(7)
    return model


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Two state dicts (or compact state dicts) hold the same keys and bit-equal tensors."""
    assert a.keys() == b.keys(), sorted(set(a) ^ set(b))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


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
    return subprocess.run([sys.executable, "-m", "smhsearch.cli", *args], capture_output=True, text=True, timeout=timeout, env=env, **kw)


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
        skip_xla = pytest.mark.skip(reason="needs PyTorch/XLA (torch_xla is not importable here; `make test-xla` builds .venv-xla)")
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
