"""Spaces: every shipped YAML validates and expands; bad spaces name file, key and allowed values."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from smhsearch.space import SpaceError, load_space

from .conftest import cli_in_process

SPACES = sorted((Path(__file__).resolve().parents[1] / "spaces").glob("*.yaml"))


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.name)
def test_shipped_space_validates_and_expands(path):
    space = load_space(path, check_data=False)
    cands = space.candidates()
    assert cands and len(cands) == len({c for c in cands})
    for c in cands:  # every candidate builds its method config
        cfg = c.method_config()
        assert (cfg.method == "dense") == (c.method == "dense")  # dense builds a Dense config, every other method its own
    try:  # with data checks: loads here, or names the dataset root it could not find
        load_space(path)
    except SpaceError as e:
        assert "dataset.root" in str(e) and str(path) in str(e)


def test_pairs_at_or_above_the_base_are_skipped_not_refused():
    from smhsearch.space import applicable_candidates

    space = load_space(Path(__file__).resolve().parents[1] / "spaces" / "efficientnet.yaml", check_data=False)
    kept, skipped = applicable_candidates(space)
    # B1 has 7,794,184 parameters: 7.8M and 9.1M are not compressions of it; B2 (9,109,994) to 9.1M still is
    assert {(c.arch, c.budget) for c in skipped} == {("efficientnet_b1", "7.8M"), ("efficientnet_b1", "9.1M")}
    assert len(kept) == 4 * 3 * 4 - 2 * 4  # 4 archs x 3 budgets x (2 scopes x 2 scales), less the skipped pairs


def test_quick_space_is_the_embedded_default():
    space = load_space(Path(__file__).resolve().parents[1] / "spaces" / "quick.yaml")
    assert space.dataset.name == "fashion-mnist-small"
    assert len({c.method for c in space.candidates()} - {"dense"}) >= 3


BAD = {
    "malformed": ("name: x\nspace: [arch: \n", "malformed YAML at line"),
    "unknown key": (
        "name: x\nspace: {arch: [resnet8], budget: ['10%'], method: [smh]}\ntrian: {epochs: 1}\n",
        "trian: unknown key; allowed keys: name, plugins, dataset, train, space, search, scheduler, resources, storage",
    ),
    "unknown nested key": (
        "name: x\nspace: {arch: [resnet8], budget: ['10%'], method: [smh]}\ntrain: {epoch: 1}\n",
        "train.epoch: unknown key; allowed keys under train: epochs,",
    ),
    "unknown arch": (
        "name: x\nspace: {arch: [resnet9], budget: ['10%'], method: [smh]}\n",
        "space.arch: unknown architecture 'resnet9'; nearest: resnet8",
    ),
    "unknown method": (
        "name: x\nspace: {arch: [resnet8], budget: ['10%'], method: [smh, hashed3]}\n",
        "space.method: unknown method 'hashed3'; nearest: hashed2, hashed1",
    ),
    "bad sampler": (
        "name: x\nspace: {arch: [resnet8], budget: ['10%'], method: [smh]}\nsearch: {sampler: bayes}\n",
        "search.sampler: Input should be 'grid', 'tpe', 'nsga2' or 'random'",
    ),
    "impossible budget": (
        "name: x\nspace: {arch: [resnet32], budget: [1000], method: [smh]}\n",
        "space.budget: resnet32 smh@1000 (all/fixed): SMH: budget is too small: the unhashed parameters (2272)",
    ),
    "budget above base": (
        "name: x\nspace: {arch: [resnet8], budget: [1M], method: [width]}\n",
        "space.budget: budget '1M' is not below any architecture's size (resnet8 75002)",
    ),
    "unknown dataset": (
        "name: x\ndataset: {name: cifar}\nspace: {arch: [resnet8], budget: ['10%'], method: [smh]}\n",
        "dataset.name: unknown dataset 'cifar'; nearest: cifar10",
    ),
    "resolution off imagenet": (
        "name: x\ndataset: {name: fashion-mnist-small, resolution: 64}\n"
        "space: {arch: [resnet8], budget: ['10%'], method: [smh]}\n",
        "dataset.resolution: resolution applies to imagenet (its training crop); fashion-mnist-small keeps its native size",
    ),
    "missing data": (
        "name: x\ndataset: {name: cifar10, root: /nonexistent}\nspace: {arch: [resnet8], budget: ['10%'], method: [smh]}\n",
        "dataset.root: cifar10: looked for /nonexistent/cifar-10-batches-py",
    ),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_space_exits_2_naming_file_key_and_allowed(case, tmp_path):
    text, message = BAD[case]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SpaceError) as e:
        load_space(path)
    assert message in str(e.value) and str(path) in str(e.value)
    for cmd in ("check", "run"):  # the command's own main, in this process (test_integrity runs real processes)
        r = cli_in_process(cmd, path, *(["--out", tmp_path / "run"] if cmd == "run" else []), cwd=tmp_path)
        assert r.returncode == 2, r.stderr
        assert message in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]  # nothing written


def test_check_prescreens_every_candidate(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "smhsearch.cli", "check", "spaces/quick.yaml", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert r.returncode == 0, r.stderr
    import json

    out = json.loads(r.stdout)
    assert out["candidates"] == len(out["prescreen"]) == out["trials"] == 7
    for row in out["prescreen"]:
        assert row["stored_params"] > 0 and row["flops"] > 0 and "infer_per_s" not in row  # speed is the run's, measured alone
    by = {row["candidate"]: row for row in out["prescreen"]}
    # dense, SMH and HashedNets deploy one ResNet-8 (FLOPs counted once); each width is its own network
    same = [by[k] for k in ("resnet8 dense", "resnet8 smh@10% (all/learnable)", "resnet8 hashed1@25% (all)")]
    assert len({(r["architecture"], r["flops"]) for r in same}) == 1 and by["resnet8 dense"]["stored_params"] == 75_002
    assert len({by["resnet8 width@10%"]["architecture"], by["resnet8 width@25%"]["architecture"], same[0]["architecture"]}) == 3
    from smhsearch.methods import SMH, compress
    from smhsearch.models import create_model
    from smhsearch.speed import signature

    # built on the meta device, the counts and the network are the real build's
    real = compress(create_model("resnet8", num_classes=10, in_channels=1), SMH(budget="10%", scale="learnable"))
    assert by["resnet8 smh@10% (all/learnable)"]["stored_params"] == real.stored_count()
    assert by["resnet8 smh@10% (all/learnable)"]["architecture"] == signature(real.materialize())
    # what is hashed and what stays dense: the method's own selection, as compress --dry-run shows it
    from smhsearch.methods import selection_summary

    base = create_model("resnet8", num_classes=10, in_channels=1)
    assert (
        by["resnet8 smh@10% (all/learnable)"]["compressed_share"] == selection_summary(base, SMH(budget="10%")).share_compressed
    )
    assert 0.9 < by["resnet8 hashed1@25% (all)"]["compressed_share"] < 1
    assert by["resnet8 dense"]["compressed_share"] is None and by["resnet8 width@10%"]["compressed_share"] is None


def test_check_counts_flops_of_a_meta_network_that_reads_an_index_buffer():
    """check counts a candidate's FLOPs on its meta build (count_flops gives a copy storage). Swin-T's forward
    indexes a table with its relative-position buffer: uninitialised storage there was an index out of bounds (a
    traceback from check on spaces/vit.yaml); the count must equal a real build's."""
    import smhsearch
    from smhsearch._fvcore import count_flops
    from smhsearch.models._meta import on_meta

    with on_meta():
        meta = smhsearch.create_model("swin_t")
    assert count_flops(meta, (3, 64, 64)) == count_flops(smhsearch.create_model("swin_t"), (3, 64, 64)) > 0
    assert all(t.is_meta for t in meta.parameters())  # counted on a copy: the meta base others are built from stays
