"""State dicts keep their ``_metadata`` (module versions) wherever a model is rebuilt: the
compact file, the dense file, materialise, and the trainer's checkpoints."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import nn

import smhsearch
from smhsearch import SMH, HashedNets, Prune
from smhsearch.export import load_dense, save_dense
from smhsearch._checkpoint import load_checkpoint, save_checkpoint
from smhsearch.device import backend


class Versioned(nn.Module):
    """A module that refuses a state dict without its version, as MNASNet does, and records what it saw."""

    _version = 3
    seen: list = []

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args, **kwargs) -> None:
        version = local_metadata.get("version")
        if version is None:
            raise ValueError(f"version should be set instead of {version}")
        Versioned.seen.append(version)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args, **kwargs)


def _trained(model: nn.Module, shape=(3, 8, 8)) -> nn.Module:
    model.train()
    with torch.no_grad():
        model(torch.randn(4, *shape))  # batch-norm statistics off their init
    return model.eval()


@pytest.mark.parametrize("config", [SMH(budget=0.6), HashedNets(budget=0.6), Prune(budget=0.6)], ids=lambda c: c.method)
def test_compact_file_keeps_module_versions(config, tmp_path, monkeypatch):
    torch.manual_seed(0)
    m = _trained(smhsearch.compress(Versioned(), config))
    m.set_progress(1.0)
    path = smhsearch.save_compact(m, tmp_path / "v.safetensors")
    assert smhsearch.read_compact_metadata(path)["state_metadata"]["base"] == {"version": 3}
    # a newer class version must still see the version the file was written with
    monkeypatch.setattr(Versioned, "_version", 4)
    Versioned.seen = []
    loaded = smhsearch.load_compact(path, model=Versioned())
    assert Versioned.seen == [3]
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), m(x))


def test_dense_file_and_materialised_state_dict_keep_module_versions(tmp_path, monkeypatch):
    torch.manual_seed(0)
    m = _trained(smhsearch.compress(Versioned(), SMH(budget=0.6)))
    dense = smhsearch.materialize(m)
    Versioned.seen = []
    copy.deepcopy(Versioned()).load_state_dict(dense.state_dict())
    path = save_dense(m, tmp_path / "d.safetensors")
    monkeypatch.setattr(Versioned, "_version", 4)
    loaded = load_dense(path, model=Versioned())
    assert Versioned.seen == [3, 3]  # the file's version, not the class's new one
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), m(x))


def test_checkpoint_keeps_module_versions(tmp_path):
    """The trainer's checkpoint (torch.save of the state dict) resumes a module that reads its version."""

    def parts(model):
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0), torch.Generator().manual_seed(0)

    m = smhsearch.compress(Versioned(), SMH(budget=0.6))
    save_checkpoint(tmp_path / "c.pt", m, *parts(m), backend("cpu"), 0, [])
    Versioned.seen = []
    again = smhsearch.compress(Versioned(), SMH(budget=0.6))
    assert load_checkpoint(tmp_path / "c.pt", backend("cpu"), again, *parts(again))[0] == 1
    assert Versioned.seen == [3]


@pytest.mark.parametrize("config", [SMH(budget=0.1), HashedNets(budget=0.1)], ids=lambda c: c.method)
def test_mnasnet_round_trips(config, tmp_path):
    """The issue's failure: MNASNet's loader refuses a state dict without its version."""
    torch.manual_seed(0)
    base = torchvision.models.mnasnet0_5(weights=None, num_classes=10)
    m = _trained(smhsearch.compress(base, config), (3, 32, 32))
    x = torch.randn(2, 3, 32, 32)
    loaded = smhsearch.load_compact(smhsearch.save_compact(m, tmp_path / "m.safetensors"), model=base)
    dense = load_dense(
        save_dense(m, tmp_path / "d.safetensors"), model=torchvision.models.mnasnet0_5(weights=None, num_classes=10)
    )
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), m(x))
        torch.testing.assert_close(dense(x), m(x))
