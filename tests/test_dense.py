"""The dense model is a registered method: named by the registry, compressed through it, and measured, saved and
recorded as before Dense was one (a dense model at 32 bits ships as its dense file, with today's sizes and record)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import smhsearch
from smhsearch import measure
from smhsearch.methods import CompressedModel, Dense, DenseModel, as_compressed, config_from_dict, list_methods
from smhsearch.methods._schema import method_names

from .conftest import tiny

PKG = Path(smhsearch.__file__).resolve().parent


def test_the_registry_names_dense_and_its_preset():
    assert "dense" in list_methods()
    names = method_names()
    assert names[:2] == ["dense", "binaryconnect"]  # the order `smhsearch methods` and --method's help list them in
    assert smhsearch.methods.METHODS.get("dense").config_cls is Dense


@pytest.mark.parametrize("name", ["resnet8", "mlp", "user"])
def test_compress_dense_is_a_compressed_model_with_the_base_outputs(name):
    base, shape = tiny(name)
    m = smhsearch.compress(base, Dense())
    assert isinstance(m, CompressedModel) and isinstance(m, DenseModel)
    x = torch.randn(3, *shape)
    base.eval(), m.eval()
    with torch.no_grad():
        assert torch.equal(m(x), base(x))
    assert m.stored_count() == sum(p.numel() for p in base.parameters() if p.requires_grad)
    assert m.virtual_count() == sum(p.numel() for p in base.parameters())
    with torch.no_grad():  # the base is copied: training the compressed model leaves it alone
        next(m.parameters()).add_(1.0)
        assert not torch.equal(m(x), base(x))


def test_the_dense_config_reads_as_it_always_did():
    assert Dense().to_dict() == {"method": "dense"}  # specs, records and teacher keys hold this text
    assert config_from_dict({"method": "dense"}) == Dense()
    assert Dense(bits=8).to_dict() == {"method": "dense", "bits": 8, "quant": None, "entropy": False}
    assert config_from_dict(Dense(bits=8).to_dict()) == Dense(bits=8)
    assert Dense().uncompressed and not Dense(bits=8).uncompressed and not smhsearch.SMH(budget=0.5).uncompressed
    from smhsearch.job import JobSpec

    assert JobSpec("mlp").method == Dense()
    with pytest.raises(TypeError, match=r"method must be a method config \(Dense\(\) for the dense model\)"):
        JobSpec("mlp", method=None)


def test_as_compressed_shares_a_plain_module_and_measures_it_as_before():
    base, shape = tiny("resnet8")
    wrapped = as_compressed(base)
    assert wrapped.config == Dense() and wrapped.base is base  # no copy
    compressed = smhsearch.compress(base, smhsearch.SMH(budget=0.5))
    assert as_compressed(compressed) is compressed
    dense = smhsearch.compress(base, Dense())
    independent = sum(p.numel() for p in base.parameters())
    for m in (base, dense):  # a plain module and the dense model at 32 bits: the same figures
        assert measure.stored_parameters(m) == measure.virtual_parameters(m) == independent
        assert measure.flops(m, shape) == measure.flops(base, shape) > 0
    assert measure.stored_bytes(dense) == measure.stored_bytes(base)  # both ship as the same dense file
    assert measure.stored_bytes(smhsearch.compress(base, Dense(bits=8))) < measure.stored_bytes(base) / 2


def test_a_dense_job_writes_the_dense_file_and_the_record_it_always_did(tmp_path):
    from smhsearch.export import COMPACT_FORMAT, DENSE_FORMAT, file_format
    from smhsearch.job import JobSpec, run_job
    from smhsearch.train import TrainConfig

    data = {"dataset": "synthetic", "dataset_kwargs": {"n": 64, "size": 8, "in_channels": 1}, "model_kwargs": {"hidden": [16]}}
    spec = JobSpec("mlp", train=TrainConfig(epochs=1, batch_size=32), **data)
    r = run_job(spec, record_path=tmp_path / "a" / "trial.json")
    assert isinstance(r.model, DenseModel)
    assert r.record["spec"]["method"] == {"method": "dense"}
    assert file_format(r.model_file) == DENSE_FORMAT and r.metrics["stored_bytes"] == r.model_file.stat().st_size
    assert "compact_bytes" not in r.metrics and "method_details" not in r.record  # as before Dense was a method
    assert r.metrics["stored_params"] == r.metrics["virtual_params"] == r.metrics["base_params"] == 16 * 64 + 16 + 16 * 10 + 10
    r8 = run_job(JobSpec("mlp", method=Dense(bits=8), train=TrainConfig(epochs=1, batch_size=32), **data),
                 record_path=tmp_path / "b" / "trial.json")
    assert file_format(r8.model_file) == COMPACT_FORMAT and r8.metrics["compact_bytes"] == r8.model_file.stat().st_size


ISINSTANCE_COMPRESSED = re.compile(r"isinstance\([^)]*CompressedModel")


def _sources(outside: set[str]) -> dict[str, str]:
    out = {}
    for p in PKG.rglob("*.py"):
        rel = p.relative_to(PKG).as_posix()
        if not any(rel == o or rel.startswith(o + "/") for o in outside):
            out[rel] = p.read_text()
    return out


def test_no_type_checks_for_compressed_models_outside_the_method_layer():
    # the method layer may check types, and the contract suite (smhsearch.testing) asserts them as promises
    found = [f"{rel}:{i}" for rel, text in _sources({"methods", "testing"}).items()
             for i, line in enumerate(text.splitlines(), 1) if ISINSTANCE_COMPRESSED.search(line)]
    assert not found, f"call the CompressedModel's methods (methods.as_compressed for a plain module) instead: {found}"


def test_no_dense_special_cases():
    found = [f"{rel}:{i}" for rel, text in _sources(set()).items()
             for i, line in enumerate(text.splitlines(), 1) if re.search(r"\bis_dense\b|\bDENSE_PRESETS\b|\bDENSE\b", line)]
    assert not found, f"the dense model is the registered method 'dense': {found}"
