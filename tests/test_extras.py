"""The core install and its extras: the commands that need no extra run without them, and a path that needs one says
which extra to install (exit 2 at the command line), having written nothing.

An extra is made missing as Python sees a package that is not installed: ``sys.modules[name] = None`` (an import
raises ModuleNotFoundError, ``importlib.util.find_spec`` answers None). In this process with ``monkeypatch``; for
whole commands through a ``sitecustomize`` on ``PYTHONPATH``, which the command's Ray workers inherit too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from smhsearch._extras import EXTRAS, MissingExtra, require

from .conftest import ROOT

pytestmark = pytest.mark.xdist_group("core_install")  # the commands share one run made without the extras

OPTIONAL = ("onnx", "onnxscript", "onnxruntime", "psycopg", "tensorboardX")
BLOCKER = """import os, sys
for _name in filter(None, os.environ.get("SMHSEARCH_TEST_MISSING", "").split(",")):
    sys.modules[_name] = None  # as if not installed
"""
TINY_SPACE = """name: core
dataset: {name: fashion-mnist-small}
train: {epochs: 1, batch_size: 512, lr: 0.05}
space: {arch: [mlp], budget: ["30%"], method: [dense, smh]}
search: {sampler: grid}
scheduler: {kind: none}
resources: {cpus_per_trial: 1}
"""


def test_the_extras_table_is_pyprojects():
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(declared["dependencies"]).lower()
    extras = declared["optional-dependencies"]
    for extra, modules in EXTRAS.items():
        assert {m.lower() for m in modules} <= {r.split("[")[0].split(">")[0].split("=")[0].lower() for r in extras[extra]}, extra
        assert not any(m.lower() in core for m in modules), f"{extra}'s modules are core dependencies"
    assert extras["all"] == [f"smhsearch[{','.join(EXTRAS)}]"] and "smhsearch[all]" in extras["dev"]
    assert "pip install -e '.[dev]'" in (ROOT / "Makefile").read_text()  # make test and make demo install every extra


@pytest.mark.parametrize("module, extra", [(m, e) for e, ms in EXTRAS.items() for m in ms])
def test_require_names_the_extra(monkeypatch, module, extra):
    monkeypatch.setitem(sys.modules, module, None)
    want = rf"^--flag needs {module}, which is not installed: pip install 'smhsearch\[{extra}\]'$"
    with pytest.raises(MissingExtra, match=want):
        require(module, extra, "--flag")


def test_a_broken_install_is_not_called_missing(monkeypatch, tmp_path):
    (tmp_path / "brokenpkg").mkdir()
    (tmp_path / "brokenpkg" / "__init__.py").write_text("import no_such_dependency_of_it\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_of_it") as e:
        require("brokenpkg", "onnx", "--flag")
    assert not isinstance(e.value, MissingExtra)


@pytest.mark.parametrize("formats", [None, "onnx", "safetensors,onnx-int8"])
def test_export_without_onnx_names_the_extra_and_writes_nothing(monkeypatch, tmp_path, formats):
    from .conftest import cli_in_process

    monkeypatch.setitem(sys.modules, "onnxscript", None)
    out = tmp_path / "model"
    # refused before the run is read: the folder need not even exist
    r = cli_in_process("export", tmp_path / "no-run", "--trial", "0", "--out", out, *(["--format", formats] if formats else []))
    assert r.returncode == 2, r.stderr
    fmt = "onnx" if formats is None else formats.split(",")[-1]
    assert f"--format {fmt}" in r.stderr and "needs onnxscript" in r.stderr and "pip install 'smhsearch[onnx]'" in r.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_export_model_without_onnxruntime_writes_nothing(monkeypatch, tmp_path):
    from smhsearch.export import export_model
    from smhsearch.models import create_model

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingExtra, match=r"format 'onnx' needs onnxruntime.*smhsearch\[onnx\]"):
        export_model(create_model("mlp", image_size=8, hidden=[8]), tmp_path / "out", (1, 8, 8), ("safetensors", "onnx"))
    assert not (tmp_path / "out").exists()


def test_postgres_without_psycopg_names_the_extra(monkeypatch, tmp_path):
    from smhsearch._storage import StorageError, open_storage

    from .conftest import cli_in_process

    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(StorageError, match=r"psycopg is not installed: pip install 'smhsearch\[postgres\]'"):
        open_storage("postgresql://smh@127.0.0.1:9/study")
    space = tmp_path / "pg.yaml"
    space.write_text(TINY_SPACE.replace("name: core", "name: pg\nstorage: postgresql://smh@127.0.0.1:9/study"))
    for command in ("check", "run"):
        r = cli_in_process(command, space, *(["--out", tmp_path / "run"] if command == "run" else []))
        assert r.returncode == 2 and "pip install 'smhsearch[postgres]'" in r.stderr, (command, r.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pg.yaml"]


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    """``core(*args)``: ``python ARGS`` in a Python where none of the extras' modules can be imported."""
    blocker = tmp_path_factory.mktemp("core-install")
    (blocker / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1", "SMHSEARCH_TEST_MISSING": ",".join(OPTIONAL),
           "PYTHONPATH": os.pathsep.join([str(blocker), str(ROOT), os.environ.get("PYTHONPATH", "")])}

    def run(*args, timeout: int = 600) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)

    return run


@pytest.fixture(scope="module")
def smhsearch(core):
    """``smhsearch(*args)``: the command, without the extras."""
    return lambda *args: core("-m", "smhsearch", *args)


@pytest.fixture(scope="module")
def core_run(smhsearch, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """A search of a tiny space (two trials of one epoch on the embedded data) run without any extra."""
    base = tmp_path_factory.mktemp("core")
    (base / "core.yaml").write_text(TINY_SPACE)
    return base / "run", smhsearch("run", base / "core.yaml", "--out", base / "run")


def test_the_blocker_hides_every_optional_module(core):
    r = core("-c", "import importlib.util as u, smhsearch; print([m for m in %r if u.find_spec(m) is not None])" % (OPTIONAL,))
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr


def test_a_search_runs_without_the_extras_and_says_once_that_curves_are_not_written(core_run, smhsearch):
    run, r = core_run
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert json.loads(r.stdout[r.stdout.index("{"):])["complete"] == 2
    said = [line for line in (r.stdout + r.stderr).splitlines() if "tensorboard" in line.lower()]
    assert len(said) == 1 and "pip install 'smhsearch[tensorboard]'" in said[0], said
    assert list(run.glob("ray/**/progress.csv")) and not list(run.glob("ray/**/events.out.tfevents.*"))


def test_report_and_pick_run_without_the_extras(core_run, smhsearch, tmp_path):
    run, _ = core_run
    r = smhsearch("report", run, "--out", tmp_path / "r.html")
    assert r.returncode == 0 and (tmp_path / "r.html").stat().st_size > 0, r.stderr
    r = smhsearch("pick", run, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["chosen"]["config"]["method"] in ("dense", "smh"), r.stderr


def test_compress_and_train_run_without_the_extras(smhsearch, tmp_path):
    r = smhsearch("compress", "mlp", "--budget", "25%", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["stored_parameters"] > 0, r.stderr
    r = smhsearch("train", "mlp", "--method", "smh", "--budget", "30%", "--epochs", "1", "--batch-size", "512",
                  "--out", tmp_path / "t")
    assert r.returncode == 0 and (tmp_path / "t" / "model.safetensors").is_file(), r.stderr[-3000:]


def test_what_needs_onnx_says_so_and_the_rest_exports(core_run, smhsearch, monkeypatch, tmp_path):
    from .conftest import cli_in_process

    run, _ = core_run
    trial = next(p for p in sorted((run / "trials").iterdir()) if (p / "model.safetensors").is_file()).name
    r = smhsearch("export", run, "--trial", int(trial), "--out", tmp_path / "m", "--format", "safetensors")
    assert r.returncode == 0 and (tmp_path / "m" / "model.safetensors").is_file(), r.stderr
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # in this process: the refusal comes before anything heavy
    r = cli_in_process("bench", run, "--runtime", "onnxruntime", "--name", "ort")
    assert r.returncode == 2 and "--runtime onnxruntime needs onnxruntime" in r.stderr, r.stderr
    assert "pip install 'smhsearch[onnx]'" in r.stderr and not (run / "bench").exists()


def test_compress_imports_no_search_export_storage_or_plotting():
    from .test_light_commands import imported

    r, modules = imported("compress", "mlp", "--budget", "25%")
    assert r.returncode == 0 and "smhsearch.methods" in modules, r.stderr[-2000:]
    heavy = {"ray", "onnx", "onnxruntime", "onnxscript", "psycopg", "tensorboardX", "plotly"}
    assert not heavy & modules, sorted(heavy & modules)
