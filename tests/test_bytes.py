"""Size in bytes beyond uniform codes: binarisation, entropy coding, the Deep Compression and BinaryConnect presets."""

from __future__ import annotations

import json

import pytest
import torch

import smhsearch
from smhsearch.export import load_compact, save_compact
from smhsearch.methods import _entropy
from smhsearch.methods import _precision as P

from .conftest import cli_in_process

X = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def lenet():
    torch.manual_seed(0)
    return smhsearch.create_model("mlp", hidden=[300, 100])  # LeNet-300-100


def pruned(bits, entropy: bool, budget: str = "8%"):
    m = smhsearch.compress(lenet(), smhsearch.Prune(budget=budget, bits=bits, entropy=entropy))
    m.set_progress(1.0)
    return smhsearch.quantize(m).eval()


def test_binary_weights_are_plus_minus_their_rows_mean_magnitude():
    w = torch.randn(5, 40, generator=torch.Generator().manual_seed(1))
    alpha = P.binary_scales(w)
    assert torch.equal(alpha, w.abs().mean(dim=1).to(torch.bfloat16).float())  # XNOR-Net's scale, as a bfloat16
    q = P.binary_values(P.binary_codes(w), alpha, w.shape)
    assert torch.equal(q.sign(), w.sign()) and torch.equal(q.abs(), alpha[:, None].expand_as(w))
    # the least-squares scale for fixed signs: any other alpha is farther from w
    for other in (0.9 * alpha, 1.1 * alpha):
        assert (P.binary_values(P.binary_codes(w), other, w.shape) - w).square().sum() > (q - w).square().sum()


def test_binaryconnect_trains_through_the_signs_and_stores_a_bit_a_weight(tmp_path):
    m = smhsearch.compress(lenet(), smhsearch.Dense(bits=1, quant="qat"))
    m.train()
    loss = m(X).logsumexp(1).mean()
    loss.backward()
    w = m.get_parameter(m.precision.names[0])
    assert w.grad is not None and w.grad.abs().sum() > 0  # straight through to the float weights
    smhsearch.quantize(m).eval()
    path = save_compact(m, tmp_path / "b.safetensors")
    weights = sum(m.get_parameter(n).numel() for n in m.precision.names)
    dense_bytes = smhsearch.measure.stored_bytes(lenet())
    assert path.stat().st_size < weights / 8 + 0.01 * dense_bytes  # one bit a weight, the biases, scales and header beside
    with torch.no_grad():
        assert torch.equal(load_compact(path)(X), m(X))


def test_entropy_coding_shrinks_deep_compression_s_file_and_reloads_bit_for_bit(tmp_path):
    plain, coded = pruned("kmeans:32", False), pruned("kmeans:32", True)
    a = save_compact(plain, tmp_path / "plain.safetensors").stat().st_size
    b = save_compact(coded, tmp_path / "coded.safetensors").stat().st_size
    assert b < 0.7 * a, (a, b)  # the sparse mask and the uneven codes cost far less than their packed bits
    dense = smhsearch.measure.stored_bytes(lenet())
    assert dense / b > 30  # Deep Compression's LeNet-300-100 scale of saving (its paper: 40x) from the file alone
    again = load_compact(tmp_path / "coded.safetensors")
    with torch.no_grad():
        assert torch.equal(again(X), coded(X)) and torch.equal(coded(X), plain(X))
    assert smhsearch.measure.stored_bytes(coded) == b  # the size axis is the coded file's


def test_entropy_coding_keeps_the_packed_codes_where_coding_would_not_shrink_them():
    tensors = {"w::codes": torch.from_numpy(P.pack(torch.randint(0, 16, (4000,)).numpy().astype("uint8"), 4))}
    out, header = _entropy.encode(tensors, 4)  # uniform random codes: nothing to gain
    assert header == {} and out is tensors


@pytest.mark.parametrize("bits", [1, 3, 4, 5, 8])
def test_entropy_round_trip_of_codes_of_any_width_and_a_mask(bits):
    g = torch.Generator().manual_seed(bits)
    codes = (torch.rand(3001, generator=g) ** 4 * 2 ** bits).long().clamp(max=2 ** bits - 1).numpy().astype("uint8")  # skewed
    mask = (torch.rand(20001, generator=g) < 0.05).numpy()
    import numpy as np

    tensors = {"a::codes": torch.from_numpy(P.pack(codes, bits)), "mask_bits": torch.from_numpy(np.packbits(mask)),
               "b": torch.randn(7)}
    out, header = _entropy.encode(tensors, bits)
    assert header and set(out) == {"b", _entropy.STREAM}
    back = _entropy.decode(out, json.loads(json.dumps(header)), limit=10 ** 6)
    assert back.keys() == tensors.keys() and all(torch.equal(back[k], tensors[k]) for k in tensors)


def test_a_crafted_entropy_header_is_refused_before_it_takes_memory(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    from smhsearch._modelfile import ModelFileError

    path = save_compact(pruned("kmeans:32", True), tmp_path / "m.safetensors")
    with safe_open(str(path), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    header = json.loads(meta["entropy"])
    for bad, message in (
        ({**header, "parts": [[n, k, s, d * 10**6] for n, k, s, d in header["parts"]]}, "more than this model"),
        ({**header, "codec": "zip"}, "entropy codec 'zip' is not supported"),
    ):
        save_file(tensors, str(tmp_path / "bad.safetensors"), metadata={**meta, "entropy": json.dumps(bad)})
        with pytest.raises(ModelFileError, match=message):
            load_compact(tmp_path / "bad.safetensors")
    cut = {**tensors, _entropy.STREAM: tensors[_entropy.STREAM][:-40].clone()}  # a truncated stream
    save_file(cut, str(tmp_path / "cut.safetensors"), metadata=meta)
    with pytest.raises(ModelFileError, match="decodes to other than"):
        load_compact(tmp_path / "cut.safetensors")


def test_presets_fix_their_precision_in_a_space(tmp_path):
    import yaml

    from smhsearch.search._params import StructuredSpace
    from smhsearch.space import load_space

    doc = {"name": "s", "dataset": {"name": "fashion-mnist-small"},
           "space": {"arch": ["mlp"], "budget": ["8%"], "method": ["dense", "binaryconnect", "deep_compression"], "bits": [32, 8],
                     "entropy": [False, True]}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    space = load_space(tmp_path / "s.yaml")
    labels = [c.label() for c in space.candidates()]
    assert labels == ["mlp dense", "mlp dense (bits=8/quant=ptq)", "mlp dense (bits=8/entropy=True/quant=ptq)",
                      "mlp binaryconnect (bits=1/quant=qat)", "mlp binaryconnect (bits=1/entropy=True/quant=qat)",
                      "mlp deep_compression@8% (all/bits=kmeans:32/entropy=True/quant=qat)"]
    configs = {c.label(): c.method_config() for c in space.candidates()}
    assert configs["mlp binaryconnect (bits=1/quant=qat)"] == smhsearch.Dense(bits=1, quant="qat")
    assert configs[labels[-1]].to_dict() == smhsearch.Prune(budget="8%", bits="kmeans:32", quant="qat", entropy=True).to_dict()
    ss = StructuredSpace(space, {"mlp": 795_010}, {"mlp": None})
    assert all(ss.candidate_of(ss.params_of(c)) == c for c in space.candidates())  # what the grid enqueues names the candidate


def test_check_prescreens_dense_beside_a_method_built_from_the_same_base(tmp_path):
    # the dense candidate's FLOPs were counted on the shared meta base turned into CPU storage in place, which broke the
    # next candidate built from that base (pruning: "Tensor on device meta is not on the expected device cpu")
    (tmp_path / "s.yaml").write_text("name: s\nspace: {arch: [mlp], budget: ['8%'], method: [dense, prune, binaryconnect]}\n")
    r = cli_in_process("check", tmp_path / "s.yaml", "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["candidate"]: row for row in json.loads(r.stdout)["prescreen"]}
    assert rows["mlp prune@8% (all)"]["stored_params"] == int(0.08 * 795_010) and rows["mlp dense"]["flops"] > 0
