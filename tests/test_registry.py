"""The registry is the schema: a method added in one file works from YAML, the CLI and the contract suite.

``tests/plugins/toy_method.py`` is a method smhsearch's code knows nothing of. Nothing
outside the plugins folder names it: spaces find it through ``plugins:``, the command line
through ``$SMHSEARCH_PLUGINS``, and its own test file of a few lines runs the contract suite
(``smhsearch.testing``). Also here: every key or flag that does not apply is an error, never silence.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from smhsearch.methods import METHODS
from smhsearch.space import SpaceError, load_space

from .conftest import TINY, cli_in_process

PLUGINS = Path(__file__).resolve().parent / "plugins"
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")]),
    "RAY_USAGE_STATS_ENABLED": "0",
}


def cli(*args: str, env=None, timeout: int = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "smhsearch", *args], capture_output=True, text=True, timeout=timeout,
                          env=env or ENV, **kw)


@pytest.fixture
def toy():
    """The toy plugin registered in this process, and unregistered afterwards."""
    sys.path.insert(0, str(PLUGINS))
    import toy_method

    yield toy_method
    METHODS._items.pop("toyshare", None)
    sys.modules.pop("toy_method", None)
    sys.path.remove(str(PLUGINS))


TOY_SPACE = """name: toy
plugins: [toy_method]
train: {epochs: 1, batch_size: 256, lr: 0.05}
space:
  arch: [mlp]
  budget: ["20%"]
  method: [toyshare, {name: toyshare, stride: [2, 5]}]
search: {sampler: grid}
scheduler: {kind: none}
resources: {cpus_per_trial: 1}
"""


def test_plugin_method_is_checked_and_run_from_yaml(tmp_path):
    space = tmp_path / "toy.yaml"
    space.write_text(TOY_SPACE)
    r = cli("check", str(space), "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)["prescreen"]
    assert [row["candidate"] for row in rows] == ["mlp toyshare@20% (all)", "mlp toyshare@20% (all/stride=2)",
                                                  "mlp toyshare@20% (all/stride=5)"]
    assert all(row["stored_params"] <= 0.2 * 795_010 for row in rows)
    r = cli("run", str(space), "--out", str(tmp_path / "run"), "--max-trials", "2", cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "run" / "trials").glob("*/trial.json"))]
    assert [rec["status"] for rec in records] == ["complete", "complete"]
    assert [rec["spec"]["method"]["stride"] for rec in records] == [1, 2]  # the option reached the config the trial built
    assert all(
        rec["metrics"]["stored_params"] <= 0.2 * 795_010 and 0 <= rec["metrics"]["val_acc"] <= 1 and len(rec["history"]) == 1
        for rec in records
    )  # it trained one epoch (a modulo-shared toy need not beat chance in one)


def test_plugin_method_on_the_command_line(tmp_path):
    env = {**ENV, "SMHSEARCH_PLUGINS": "toy_method"}
    r = cli("compress", "resnet8", "--method", "toyshare", "--budget", "20%", "--stride", "3", "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["method"] == {"method": "toyshare", "bits": 32, "quant": None, "entropy": False, "budget": "20%",
                                              "scope": "all", "stride": 3,
                                              "seed": 0}  # every method records its precision (32 bits: float32)
    r = cli("compress", "resnet8", "--method", "toyshare3", "--budget", "20%", "--stride", "2", env=env)
    assert r.returncode == 2 and "--stride: method 'toyshare3' fixes stride=3 (use 'toyshare' to set it), but got 2" in r.stderr
    r = cli("compress", "resnet8", "--method", "smh", "--budget", "20%", "--stride", "2", env=env)
    assert r.returncode == 2 and "--stride: does not apply to method 'smh' (it applies to: toyshare)" in r.stderr
    r = cli("compress", "resnet8", "--method", "toyshare", "--budget", "20%", env={**ENV, "SMHSEARCH_PLUGINS": "no_such_plugin"})
    assert r.returncode == 2 and "cannot import plugin module 'no_such_plugin'" in r.stderr


def test_the_plugins_own_test_file_runs_the_whole_contract(tmp_path):
    """``tests/plugins/test_toy_method.py`` is what a plugin author writes (the suite imported, one config named); run
    as the author would, outside this project's tests (no conftest, no options), every check runs on every tiny model."""
    from smhsearch.testing import MethodContract

    r = subprocess.run([sys.executable, "-m", "pytest", str(PLUGINS / "test_toy_method.py"), "-q", "-rs",
                        "-p", "no:cacheprovider", "-o", "addopts=", "--rootdir", str(tmp_path)],
                       capture_output=True, text=True, timeout=600, env=ENV, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:]
    checks = [name for name in dir(MethodContract) if name.startswith("test_")]
    passed = int(re.search(r"(\d+) passed", r.stdout).group(1))
    skipped = re.findall(r"SKIPPED \[(\d+)\]", r.stdout)
    assert passed + sum(map(int, skipped)) == len(checks) * len(TINY), r.stdout[-2000:]
    assert passed >= (len(checks) - 1) * len(TINY), r.stdout[-2000:]  # only channels_last skips, on the MLP (no conv)


def test_registering_a_taken_name_or_a_bad_declaration_raises(toy):
    from dataclasses import dataclass

    from smhsearch.methods import MethodConfig, register_method

    @dataclass(frozen=True)
    class Clash(MethodConfig):
        method = "clash"
        presets = {"hashed2": {}}
        budget: int = 1

    with pytest.raises(ValueError, match=r"\['hashed2'\] are already taken"):
        register_method(Clash)(lambda m, c: m)

    @dataclass(frozen=True)
    class BadAxis(MethodConfig):
        method = "badaxis"
        axes = ("budget", "scale")
        budget: int = 1

    with pytest.raises(ValueError, match=r"BadAxis.axes: \['scale'\] must be fields"):
        register_method(BadAxis)(lambda m, c: m)


SPACE = "name: x\n{extra}space: {{arch: [resnet8], budget: ['10%'], method: {methods}{axes}}}\n"
NOT_APPLYING = {
    "misspelt lr-mult method": (dict(extra="train: {variable_lr_mult: {smhh: 10}}\n", methods="[smh]"),
                                "train.variable_lr_mult: train.variable_lr_mult must name methods of this space: smh, but "
                                "got ['smhh'], which name no method of it"),
    "lr-mult for an absent method": (dict(extra="train: {variable_lr_mult: {hashed1: 10}}\n", methods="[smh]"),
                                     "train.variable_lr_mult must name methods of this space: smh, but got ['hashed1']"),
    "momentum with adamw": (dict(extra="train: {optimizer: adamw, momentum: 0.5}\n", methods="[smh]"),
                            "train.momentum: momentum applies to optimizer 'sgd' only, but got (momentum=0.5, "
                            "optimizer='adamw')"),
    "root of the embedded set": (dict(extra="dataset: {name: fashion-mnist-small, root: data}\n", methods="[smh]"),
                                 "dataset.root: root does not apply to fashion-mnist-small: it reads no files, but got 'data'"),
    "scale without smh": (dict(methods="[hashed2, width]", axes=", scale: [learnable]"),
                          "space.scale: scale applies to method(s) smh only, but got scale with no method of this space "
                          "that reads it"),
    "option of another method": (dict(methods="[{name: smh, hashes: 2}]"),
                                 "space.method: smh: option(s) ['hashes'] do not apply; allowed: none"),
    "option a preset fixes": (dict(methods="[{name: hashed2, hashes: 3}]"),
                              "space.method.hashed2.hashes: resnet8 hashed2@10% (all/hashes=3): method 'hashed2' fixes "
                              "hashes=2 (use 'hashednets' to set it), but got 3"),
    "option value out of range": (dict(methods="[{name: prune, end: 2.0}]"),
                                  "space.method.prune.end: resnet8 prune@10% (all/end=2.0): 0 <= start < end <= 1 must "
                                  "hold, but got (start=0.0, end=2.0)"),
    "asha settings with no scheduler": (dict(extra="scheduler: {kind: none, grace_period: 3}\n", methods="[smh]"),
                                        "scheduler.grace_period: grace_period applies to kinds pareto and asha only, but "
                                        "got (grace_period=3, kind='none')"),
    "warm-up past the end": (dict(extra="train: {epochs: 2, warmup_epochs: 2}\n", methods="[smh]"),
                             "train.warmup_epochs: 0 <= warmup_epochs < epochs must hold, but got (warmup_epochs=2.0, epochs=2)"),
    "zero lr multiplier": (dict(extra="train: {variable_lr_mult: 0}\n", methods="[smh]"),
                           "train.variable_lr_mult: variable_lr_mult > 0 must hold, but got (variable_lr_mult=0.0)"),
    "unknown method": (dict(methods="[smh, hashed3]"), "space.method: unknown method 'hashed3'; nearest: hashed2, hashed1"),
}


@pytest.mark.parametrize("case", list(NOT_APPLYING), ids=list(NOT_APPLYING))
def test_a_key_that_does_not_apply_is_an_error(case, tmp_path):
    parts, message = NOT_APPLYING[case]
    path = tmp_path / "s.yaml"
    path.write_text(SPACE.format(extra=parts.get("extra", ""), methods=parts["methods"], axes=parts.get("axes", "")))
    with pytest.raises(SpaceError) as e:
        load_space(path)
    assert message in str(e.value) and str(path) in str(e.value)


def test_the_same_setting_in_its_right_place_is_accepted(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        SPACE.format(
            extra="train: {optimizer: sgd, momentum: 0.5, variable_lr_mult: {hashednets: 10}}\n",
            methods="[smh, {name: hashednets, per_layer: true, hashes: [1, 2]}, width_res]",
            axes=", scale: [learnable]",
        )
    )
    space = load_space(path)
    labels = [c.label() for c in space.candidates()]
    assert labels == ["resnet8 smh@10% (all/learnable)", "resnet8 hashednets@10% (all/hashes=1/per_layer=True)",
                      "resnet8 hashednets@10% (all/hashes=2/per_layer=True)", "resnet8 width_res@10%"]
    configs = [c.method_config(seed=7) for c in space.candidates()]
    assert [type(c).__name__ for c in configs] == ["SMH", "HashedNets", "HashedNets", "WidthMultiplier"]
    assert configs[2].hashes == 2 and configs[2].per_layer and configs[2].seed == 7 and configs[3].resolution
    assert space.lr_mult("hashednets") == 10 and space.lr_mult("smh") == 1 and space.train_config("hashednets").momentum == 0.5


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["compress", "resnet8", "--budget", "10%", "--hashes", "10"],
            "--hashes: does not apply to method 'smh' (it applies to: hashednets)",
        ),
        (
            ["compress", "resnet8", "--method", "width", "--budget", "10%", "--scale", "learnable"],
            "--scale: does not apply to method 'width'",
        ),
        (["train", "resnet8", "--budget", "10%"], "--budget: does not apply to method 'dense'"),
        (
            ["train", "resnet8", "--optimizer", "adamw", "--nesterov"],
            "--nesterov: nesterov applies to optimizer 'sgd' only, but got (nesterov=True, optimizer='adamw')",
        ),
        (["train", "resnet8", "--root", "/tmp"], "--root: root does not apply to fashion-mnist-small"),
        (["train", "resnet8", "--device", "cuda:7"], "--device='cuda:7'"),
        (["train", "resnet8", "--method", "smh", "--budget", "10%", "--epochs", "0"], "--epochs: epochs >= 1 must hold"),
    ],
)
def test_a_flag_that_does_not_apply_is_an_error(args, message, tmp_path):
    r = cli_in_process(*args, "--out", str(tmp_path / "out"))  # refused before anything heavy: no new Python needed
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


def test_compress_dry_run_says_what_is_hashed_and_writes_nothing(tmp_path):
    r = cli("compress", "vit_b_32", "--budget", "10%", "--dry-run", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["method"] == "smh" and out["share_compressed"] > 0.97  # attention's in_proj weights included
    assert sum(t["numel"] for t in out["tensors"]) == out["total"] == 88_224_232 and list(tmp_path.iterdir()) == []
