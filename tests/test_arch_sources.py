"""Architectures from anywhere (issue 18): ``timm/<name>`` and a user's own factory, in a space and on the command line.

``tests/plugins/user_models.py`` is a module smhsearch knows nothing of. timm's
``test_*`` models are its own tiny test networks (100-400K parameters). Nothing is
downloaded: every model is built from its random initialisation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from smhsearch.space import SpaceError, load_space

timm = pytest.importorskip("timm", reason="timm is the optional extra smhsearch[timm] (installed by the dev extra)")

PLUGINS = Path(__file__).resolve().parent / "plugins"
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join([str(PLUGINS), str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]),
    "RAY_USAGE_STATS_ENABLED": "0",
}
USER = "user_models:tiny_cnn(channels=8)"


def cli(*args: str, timeout: int = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "smhsearch", *args], capture_output=True, text=True, timeout=timeout, env=ENV, **kw
    )


def python(code: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=ENV, **kw)


@pytest.fixture
def on_path():
    sys.path.insert(0, str(PLUGINS))
    yield
    sys.path.remove(str(PLUGINS))


def space_file(tmp_path: Path, arch: str, method: str = "[dense, smh]", extra: str = "") -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(f"name: s\ntrain: {{epochs: 1, batch_size: 256, lr: 0.05}}\nspace:\n  arch: {arch}\n  budget: ['25%']\n"
                 f"  method: {method}\nsearch: {{sampler: grid}}\nscheduler: {{kind: none}}\n{extra}")
    return p


def test_timm_is_imported_only_when_a_timm_arch_is_named():
    r = python("import sys\nfrom smhsearch.models import MODELS, create_model, list_models\n"
               "create_model('resnet8'); list_models(); 'resnet9' in MODELS\n"
               "assert 'timm' not in sys.modules, 'timm imported for a registry name'\n"
               "m = create_model('timm/test_efficientnet', num_classes=7, in_channels=1)\n"
               "assert 'timm' in sys.modules\n"
               "print(sum(p.numel() for p in m.parameters()), tuple(m(__import__('torch').zeros(2, 1, 28, 28)).shape))")
    assert r.returncode == 0, r.stderr[-2000:]
    own = sum(p.numel() for p in timm.create_model("test_efficientnet", pretrained=False, num_classes=7, in_chans=1).parameters())
    assert r.stdout.split() == [str(own), "(2,", "7)"]  # timm's own model, with the classes and channels asked for


def test_a_timm_model_built_for_one_size_takes_the_dataset_side(tmp_path):
    vit = "timm/test_vit(patch_size=4)"  # its own patch of 16 does not divide 28 (refused below)
    space = load_space(space_file(tmp_path, f"['{vit}']", "[smh]"))  # fashion-mnist-small: 28 px, 1 channel
    from smhsearch.space import dataset_model_kwargs

    kw = dataset_model_kwargs(space)(vit)
    assert kw == {"num_classes": 10, "in_channels": 1, "image_size": 28}
    from smhsearch.models import create_model

    m = create_model(vit, **kw)
    assert m.patch_embed.img_size == (28, 28) and tuple(m(torch.zeros(2, 1, 28, 28)).shape) == (2, 10)
    from smhsearch.models import model_info

    assert model_info("timm/test_efficientnet").takes_image_size is False  # a CNN takes any side: none is passed


def test_user_factory_from_a_space_mapping_is_built_with_the_datasets_shape(tmp_path, on_path):
    space = load_space(space_file(tmp_path, '[{import: "user_models:tiny_cnn", kwargs: {channels: 8}}]'))
    assert space.space.arch == [USER]  # the mapping becomes the string every record carries
    from smhsearch.job import JobSpec, build
    from smhsearch.data import load_dataset

    base, model = build(JobSpec(USER), load_dataset("fashion-mnist-small"))
    assert base.conv1.in_channels == 1 and base.conv1.out_channels == 8 and base.head.out_features == 10
    again = load_space(space_file(tmp_path, f'["{USER}"]'))  # the string form validates to the same space
    assert again.space.arch == space.space.arch
    from smhsearch.methods import WidthMultiplier, compress
    from smhsearch.models import create_model

    narrow = compress(create_model(USER, num_classes=10, in_channels=1), WidthMultiplier(budget="50%"))  # it takes width=
    assert narrow.stored_count() <= 0.5 * sum(p.numel() for p in base.parameters())


@pytest.mark.parametrize(
    "arch, message",
    [
        ('[{import: "no_such_module:f"}]', "cannot import no_such_module"),
        ('[{import: "user_models:NOT_A_FACTORY"}]', "is a int, not a callable"),
        ('[{import: "user_models:missing"}]', "has no attribute 'missing'"),
        ('[{import: "user_models:returns_a_dict"}]', "returned a dict, not an nn.Module"),
        ('[{import: "user_models:tiny_cnn", kwargs: {chanels: 8}}]', "kwargs do not fit user_models:tiny_cnn"),
        ('[{import: "user_models:tiny_cnn", kwargs: {num_classes: 3}}]', "num_classes is set from the dataset"),
        ('[{import: "user_models:three_classes"}]', "gives (2, 3) for a batch of 2 fashion-mnist-small images, not (2, 10)"),
        ('[{import: "user_models:tiny_cnn", kwrgs: {channels: 8}}]', "has keys import (required) and kwargs"),
        ('[{import: "user_models"}]', "is not 'package.module:factory'"),
        ("['timm/test_vit(pretrained=True)']", "downloads nothing"),
        ("[timm/test_efficientnt]", "nearest: timm/test_efficientnet"),
        (
            "[timm/test_vit]",
            "cannot take fashion-mnist-small's 1x28x28 images: Input height (28) should be divisible by patch size (16)",
        ),
        ('[{import: "user_models:tiny_cnn", kwargs: {channels: 8, width: 0.5}}]', None),
    ],
)
def test_a_bad_architecture_names_the_key(tmp_path, on_path, arch, message):
    if message is None:  # the same file with a good architecture is accepted: the refusals above are the arch's
        assert load_space(space_file(tmp_path, arch)).space.arch
        return
    with pytest.raises(SpaceError) as e:
        load_space(space_file(tmp_path, arch))
    assert "space.arch" in str(e.value) and message in str(e.value), str(e.value)


def test_bad_architecture_on_the_command_line_is_exit_2_and_writes_nothing(tmp_path):
    r = cli("check", str(space_file(tmp_path, '[{import: "user_models:returns_a_dict"}]')), cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "space.arch" in r.stderr, r.stderr
    r = cli("compress", "user_models:tiny_cnn(chanels=8)", "--budget", "25%", "--out", str(tmp_path / "m.safetensors"))
    assert r.returncode == 2 and "ARCH: " in r.stderr and "kwargs do not fit" in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]


def test_compress_and_check_a_user_module_then_loading_it_imports_only_what_is_named(tmp_path, on_path):
    from smhsearch import load_compact
    from smhsearch.export import read_compact_metadata

    r = cli("check", str(space_file(tmp_path, f'["{USER}"]')), "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = {row["candidate"]: row for row in json.loads(r.stdout)["prescreen"]}
    assert rows[f"{USER} dense"]["stored_params"] == 8 * 9 + 2 * 8 + (16 * 8 * 9 + 16) + (
        16 * 10 + 10
    )  # 1 input channel, 10 classes
    assert rows[f"{USER} smh@25% (all/fixed)"]["stored_params"] <= 0.25 * rows[f"{USER} dense"]["stored_params"]

    path = tmp_path / "m.safetensors"
    r = cli("compress", USER, "--budget", "25%", "--in-channels", "1", "--input-size", "28", "--out", str(path), "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    assert read_compact_metadata(path)["arch"] == {
        "name": USER,
        "kwargs": {"num_classes": 10, "in_channels": 1},
    }  # how to rebuild it
    refused = python(
        f"import sys\nfrom smhsearch import load_compact\n"  # a fresh process, where user_models was never imported
        f"for allow in ([], ['user'], ['other_pkg']):\n    try:\n        load_compact({str(path)!r}, allow_import=allow)\n"
        "    except PermissionError as e:\n        print(e)\n"
        "assert 'user_models' not in sys.modules, 'imported before refusing'\n"
    )
    assert refused.returncode == 0, refused.stderr[-2000:]
    lines = refused.stdout.strip().splitlines()  # all three refused ('user' is a prefix of the name, not its package)
    assert len(lines) == 3 and all("importing user_models" in x and "allow_import=['user_models']" in x for x in lines), lines
    loaded = load_compact(path, allow_import=["user_models"])
    assert loaded.stored_count() == json.loads(r.stdout)["stored_parameters"]
    assert tuple(loaded(torch.zeros(2, 1, 28, 28)).shape) == (2, 10)


def test_pretrained_weights_are_refused_on_the_command_line():
    r = cli("compress", "timm/test_efficientnet(pretrained=True)", "--budget", "25%")
    assert r.returncode == 2 and "downloads nothing" in r.stderr and "weights FILE" in r.stderr, r.stderr


def scalars(path: Path) -> dict[str, list[tuple[int, float]]]:
    """The scalar curves of a TensorBoard event file: TFRecord frames (length, its CRC, an Event, its CRC)."""
    import struct

    from tensorboardX.proto import event_pb2

    data, i, out = path.read_bytes(), 0, {}
    while i < len(data):
        (n,) = struct.unpack("<Q", data[i:i + 8])
        event = event_pb2.Event.FromString(data[i + 12:i + 12 + n])
        i += 12 + n + 4
        for v in event.summary.value:
            out.setdefault(v.tag, []).append((event.step, v.simple_value))
    return out


@pytest.mark.slow
@pytest.mark.timeout(900)  # a search of two architectures: over the suite's 300 s on two busy cores
def test_timm_and_user_models_are_searched_end_to_end(tmp_path):
    space = space_file(tmp_path, f'["{USER}", timm/test_efficientnet]', "[smh]")
    r = cli("run", str(space), "--out", str(tmp_path / "run"), cwd=tmp_path, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "run" / "trials").glob("*/trial.json"))]
    assert sorted(rec["spec"]["arch"] for rec in records) == sorted([USER, "timm/test_efficientnet"])
    for rec in records:
        assert rec["status"] == "complete" and len(rec["history"]) == 1 and 0 <= rec["metrics"]["val_acc"] <= 1
        assert rec["metrics"]["stored_params"] <= 0.25 * rec["metrics"]["base_params"]
    assert json.loads((tmp_path / "run" / "run.json").read_text())["families"] == {USER: "user", "timm/test_efficientnet": "timm"}
    for rec in records:  # each trial's training curve, in TensorBoard's format (Ray Tune's TBX logger), under the run folder
        events = list((tmp_path / "run" / "ray").glob(f"*/run_trial_*,number={rec['number']},*/events.out.tfevents.*"))
        assert len(events) == 1, events
        curve = scalars(events[0])["ray/tune/val_acc"]
        assert [step for step, _ in curve] == [h["epoch"] for h in rec["history"]]
        assert [v for _, v in curve] == pytest.approx([h["val_acc"] for h in rec["history"]], rel=1e-6)  # float32 in the file
    user = next(rec["number"] for rec in records if rec["spec"]["arch"] == USER)
    r = cli("export", str(tmp_path / "run"), "--trial", str(user), "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "--allow-import user_models" in r.stderr and not (tmp_path / "x").exists()
    r = cli("export", str(tmp_path / "run"), "--trial", str(user), "--out", str(tmp_path / "x"), "--allow-import", "user_models",
            "--format", "safetensors,compact")
    assert r.returncode == 0, r.stderr[-2000:]
    assert {f.name for f in (tmp_path / "x").iterdir()} == {"model.safetensors", "model.compact.safetensors", "export.json"}
