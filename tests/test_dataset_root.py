"""``dataset.root`` is taken from where the user stands; ``dataset.download`` reaches the loader (no network here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from smhsearch.data import DatasetNotFound, register_dataset
from smhsearch.search import trial_spec
from smhsearch.space import SpaceError, load_space

CALLS: list[dict] = []


@register_dataset("download-probe")
def _probe(root: Path | None = None, download: bool = False):
    """A loader that records what it was asked and finds no files (so nothing is fetched)."""
    CALLS.append({"root": root, "download": download})
    raise DatasetNotFound(f"download-probe: nothing under {root}")


def _space(folder: Path, dataset: str, arch: str = "resnet8") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "s.yaml"
    path.write_text(f"name: s\ndataset: {dataset}\nspace: {{arch: [{arch}], method: [dense]}}\n")
    return path


def test_a_relative_root_is_taken_from_the_current_directory_not_the_space_file(tmp_path, monkeypatch):
    space_file = _space(tmp_path / "spaces", "{name: cifar10, root: data/cifar10}")
    (tmp_path / "spaces" / "data" / "cifar10").mkdir(parents=True)  # the old rule's folder: must not be used
    here = tmp_path / "work"
    here.mkdir()
    monkeypatch.chdir(here)
    with pytest.raises(SpaceError, match="dataset.root") as e:
        load_space(space_file)
    assert str(here / "data" / "cifar10" / "cifar-10-batches-py") in str(e.value)
    space = load_space(space_file, check_data=False)
    assert space.dataset.root == str(here / "data" / "cifar10")
    assert str(here / "data" / "cifar10") in space.as_written()  # so the run's space.yaml records it


def test_trials_get_the_root_resolved_where_the_driver_stood(tmp_path, monkeypatch):
    space_file = _space(tmp_path, "{name: cifar10, root: data}")
    monkeypatch.chdir(tmp_path)
    space = load_space(space_file, check_data=False)
    cand = space.candidates()[0]
    monkeypatch.chdir(tmp_path.parent)  # a trial runs in a folder of its own
    assert trial_spec(space, space_file, cand).root == tmp_path / "data"


def test_download_reaches_the_loader_once_with_the_absolute_root(tmp_path, monkeypatch):
    CALLS.clear()
    space_file = _space(tmp_path, "{name: download-probe, root: d, download: true}", arch="mlp")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpaceError, match="dataset.root: download-probe: nothing under"):
        load_space(space_file)
    assert CALLS == [{"root": tmp_path / "d", "download": True}]
    CALLS.clear()
    _space(tmp_path, "{name: download-probe, root: d}", arch="mlp")
    with pytest.raises(SpaceError):
        load_space(space_file)
    assert CALLS == [{"root": tmp_path / "d", "download": False}]


@pytest.mark.parametrize("dataset, message", [
    ("{name: synthetic, download: true}",
     r"dataset\.download: download applies to datasets whose loader can download: .*cifar10, cifar100.*, "
     r"but got \(download=True, name='synthetic'\)"),
    ("{name: fashion-mnist-small, download: true}",
     r"dataset\.download: download applies to .*, but got \(download=True, name='fashion-mnist-small'\)"),
    ("{name: cifar10, download: true}",
     r"dataset\.download: download needs dataset\.root, the folder to put cifar10's files in, but got \(download=True, "
     r"root=None\)"),
])
def test_download_where_it_cannot_apply_is_named(tmp_path, dataset, message):
    with pytest.raises(SpaceError, match=message):
        load_space(_space(tmp_path, dataset), check_data=False)
