"""The precision stage (methods/_precision.py): packing, bit-exact files, bytes, QAT's gradient, PTQ's accuracy, the keys."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

import smhsearch
from smhsearch import measure
from smhsearch.export import load_compact, save_compact
from smhsearch.methods import _precision as P

X = torch.randn(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def base():
    torch.manual_seed(0)
    return smhsearch.create_model("resnet8", widths=(8, 16, 16))


CONFIGS = {  # every registered method, each at a scheme of its own (every scheme is met at least once)
    "smh-8": lambda **k: smhsearch.SMH(budget="30%", **k),
    "hashednets": lambda **k: smhsearch.HashedNets(budget="30%", hashes=2, **k),
    "prune": lambda **k: smhsearch.Prune(budget="30%", **k),
    "lowrank": lambda **k: smhsearch.LowRank(budget="30%", **k),
    "width": lambda **k: smhsearch.WidthMultiplier(alpha=0.5, **k),
}
SCHEMES = [dict(bits=8), dict(bits=4, quant="qat"), dict(bits=16), dict(bits="kmeans:16"), dict(bits="kmeans:4", quant="qat"),
           dict(bits=1, quant="qat"), dict(bits=4, entropy=True), dict(bits="kmeans:32", entropy=True)]


@pytest.mark.parametrize("bits", range(1, 9))
def test_pack_round_trip_at_every_code_width(bits):
    rng = np.random.default_rng(bits)
    for n in (1, 7, 8, 1001):
        codes = rng.integers(0, 2 ** bits, n).astype(np.uint8)
        packed = P.pack(codes, bits)
        assert packed.nbytes == -(-n * bits // 8)  # ceil(n * bits / 8): nothing wasted but the last byte's tail
        assert np.array_equal(P.unpack(packed, bits, n), codes)


def _trained_step(m):
    m.train()
    m(X).square().mean().backward()
    with torch.no_grad():
        for p in m.parameters():
            if p.grad is not None:
                p.sub_(0.05 * p.grad)


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: "-".join(map(str, s.values())))
@pytest.mark.parametrize("method", list(CONFIGS))
def test_every_method_at_every_scheme_reloads_bit_for_bit(method, scheme, tmp_path):
    m = smhsearch.compress(base(), CONFIGS[method](**scheme))
    assert m.precision.names, "a method with no quantised tensor"
    _trained_step(m)
    m.set_progress(1.0)
    smhsearch.quantize(m).eval()
    path = save_compact(m, tmp_path / "m.safetensors")
    again = load_compact(path)
    with torch.no_grad():
        assert torch.equal(m(X), again(X))
    for name in m.precision.names:  # the values are on their grid: at most K distinct values (k-means), one scale a row apart
        w = m.get_parameter(name).detach()
        assert torch.equal(w, again.get_parameter(name).detach())
        if str(scheme["bits"]).startswith("kmeans"):  # at most K values a part: the tensor, or each layer of a pool
            seg = m.precision.frozen[name].get("segments")
            parts = torch.split(w.reshape(-1), seg.tolist()) if seg is not None else [w]
            assert all(len(torch.unique(part)) <= int(str(scheme["bits"]).split(":")[1]) for part in parts)
        elif scheme["bits"] == 1:  # each row +-alpha, alpha its mean absolute value (XNOR-Net's scale) as a bfloat16
            grid = m.precision.frozen[name]
            rows, _ = P.row_index(w.shape, grid.get("segments"))
            assert torch.equal(w.reshape(-1).abs(), grid["scale"][rows])
        elif scheme["bits"] in (8, 4):
            grid = m.precision.frozen[name]
            rows, _ = P.row_index(w.shape, grid.get("segments"))  # dim 0's rows; a per-layer pool's parts
            qmax = 2 ** (scheme["bits"] - 1) - 1
            steps = w.reshape(-1) / grid["scale"][rows]
            assert torch.equal(steps, steps.round()) and steps.abs().max() <= qmax
    # the stored file re-saved from the loaded model holds the same tensors
    again_path = save_compact(again, tmp_path / "again.safetensors")
    from safetensors.torch import load_file

    a, b = load_file(str(path)), load_file(str(again_path))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_eight_bits_cost_at_most_1_1_bytes_per_quantised_parameter(tmp_path):
    # The same model stored at 32 and at 8 bits: the file shrinks by what 8-bit codes plus their scales and key names
    # save. What is not quantised (batch-norm, biases, the header) is the fixed part, the same in both files.
    for cfg in (lambda **k: smhsearch.SMH(budget="46K", **k), lambda **k: smhsearch.HashedNets(budget="46K", **k)):
        torch.manual_seed(0)
        net = smhsearch.create_model("resnet32")
        f32, f8 = (smhsearch.quantize(smhsearch.compress(net, cfg(bits=b))) for b in (32, 8))
        quantised = sum(f8.get_parameter(n).numel() for n in f8.precision.names)
        fixed = measure.stored_bytes(f32) - 4 * quantised
        per_param = (measure.stored_bytes(f8) - fixed) / quantised
        assert per_param <= 1.1, (f8.config.method, per_param)
        assert measure.stored_bytes(f8) == save_compact(f8, tmp_path / "m.safetensors").stat().st_size  # the file's real size


def test_qat_trains_through_the_quantiser_with_a_straight_through_gradient():
    torch.manual_seed(0)
    m = smhsearch.compress(base(), smhsearch.SMH(budget="30%", bits=4, quant="qat"))
    # a float model whose U and V hold the 4-bit values, and one that keeps the float values, from the same state
    ref, float_model = (smhsearch.compress(base(), smhsearch.SMH(budget="30%")) for _ in range(2))
    ref.load_state_dict(m.state_dict()), float_model.load_state_dict(m.state_dict())
    with torch.no_grad():
        for name in ("U", "V"):
            ref.get_parameter(name).copy_(P.fake_quantize(m.get_parameter(name), P.scheme_of(4)))
    for model in (m, ref):
        model.train()
        model(X).square().mean().backward()
    # QAT's gradient on the float variables is the quantised model's gradient (straight through)
    for name in ("U", "V"):
        g, want = m.get_parameter(name).grad, ref.get_parameter(name).grad
        assert g is not None and g.abs().sum() > 0
        torch.testing.assert_close(g, want)
    # and its forward computes with the 4-bit values, far from what the float values give
    float_model.train()
    float_model(X)  # the same batch-norm statistics update as the others had
    m.eval(), float_model.eval(), ref.eval()
    with torch.no_grad():
        torch.testing.assert_close(m(X), ref(X))
        assert not torch.allclose(m(X), float_model(X), atol=1e-3)


@pytest.mark.parametrize("method", ["smh-8", "prune", "width"])
def test_precision_state_is_declared_on_the_model_not_patched_onto_modules(method, tmp_path):
    """Through QAT training, an eval, quantisation, saving and loading, no module gains an attribute or a hook beyond
    what its method's builder gave it: the stage keeps its state in the model's declared ``precision``."""
    from smhsearch.methods import METHODS

    config = CONFIGS[method](bits=4, quant="qat")
    built = METHODS.get(config.method).builder(base(), config)  # the method's own model, before the precision stage
    own = {name: set(vars(mod)) for name, mod in built.named_modules()}
    assert isinstance(built.precision, P.PrecisionState) and not built.precision.names  # declared, with its defaults
    m = smhsearch.compress(base(), config)
    assert m.precision.names and m.precision.qat
    _trained_step(m)
    m.eval()
    with torch.no_grad():
        m(X)
    smhsearch.quantize(m)
    loaded = load_compact(save_compact(m, tmp_path / "m.safetensors"))
    for model in (m, loaded):
        for name, mod in model.named_modules():
            assert set(vars(mod)) == own[name], (name, set(vars(mod)) ^ own[name])
            assert not (mod._forward_pre_hooks or mod._forward_hooks), name


def test_qat_eval_cache_follows_the_weights():
    m = smhsearch.compress(base(), smhsearch.SMH(budget="30%", bits=4, quant="qat")).eval()
    with torch.no_grad():
        before = m(X).clone()
        m.U.mul_(0.5)
        after = m(X)
    assert not torch.allclose(before, after)


def test_ptq_accuracy_of_a_trained_model_stays_close_to_float():
    from smhsearch.data import load_dataset
    from smhsearch.train import TrainConfig, train

    data = load_dataset("fashion-mnist-small")
    accs = {}
    for bits in (32, 8):
        torch.manual_seed(0)
        net = smhsearch.create_model("mlp", hidden=[64], num_classes=data.num_classes, in_channels=1)
        m = smhsearch.compress(net, smhsearch.SMH(budget="20%", bits=bits))
        accs[bits] = train(m, data, TrainConfig(epochs=2, batch_size=128, lr=0.05), progress=False).test_acc
        if bits == 8:
            assert P.is_final(m)  # the trainer quantised before its last evaluations
    assert accs[32] > 0.5 and abs(accs[8] - accs[32]) <= 0.01, accs


def test_a_model_not_quantised_or_trained_off_its_grid_is_not_saved(tmp_path):
    m = smhsearch.compress(base(), smhsearch.SMH(budget="30%", bits=8))
    with pytest.raises(ValueError, match="not quantised yet"):
        save_compact(m, tmp_path / "a.safetensors")
    smhsearch.quantize(m)
    with torch.no_grad():
        m.U.add_(1e-3)
    with pytest.raises(ValueError, match="left its 8-bit grid"):
        save_compact(m, tmp_path / "b.safetensors")
    assert not list(tmp_path.iterdir())


def test_what_is_quantised_and_what_stays_float():
    m = smhsearch.compress(base(), smhsearch.SMH(budget="30%", bits=8, scale="learnable", scope="conv"))
    names = set(m.precision.names)
    assert {"U", "V"} <= names  # the method's variables
    assert "base.fc.weight" in names  # an unhashed matrix
    float_left = {n for n, p in m.named_parameters()} - names
    assert float_left and all(m.get_parameter(n).ndim == 1 for n in float_left)  # biases, batch-norm, per-layer scales
    hashed = smhsearch.compress(base(), smhsearch.HashedNets(budget="30%", bits=8))
    assert "pool" in hashed.precision.names  # a 1-D variable is quantised too (one scale)


@pytest.mark.parametrize("bits, quant, message", [
    (5, None, "bits must be 32, 16, 8, 4, 1 (binary) or kmeans:K with 2 <= K <= 256, but got 5"),
    ("kmeans:1", None, "bits must be 32, 16, 8, 4, 1 (binary) or kmeans:K with 2 <= K <= 256, but got 'kmeans:1'"),
    (32, "qat", "quant applies to bits below 32 (16, 8, 4, 1, kmeans:K) only, but got (quant='qat', bits=32)"),
    (8, "fp8", "quant must be one of ptq, qat (or unset: ptq below 32 bits), but got 'fp8'"),
])
def test_bad_precision_is_refused_naming_the_key(bits, quant, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        smhsearch.compress(base(), smhsearch.SMH(budget="30%", bits=bits, quant=quant))


def test_kmeans_refines_its_linear_start():
    w = torch.randn(5000, generator=torch.Generator().manual_seed(0)) ** 3
    linear = torch.linspace(float(w.min()), float(w.max()), 16)
    fitted = P.kmeans_fit(w, 16)[0]  # one part: the whole tensor

    def err(book):
        return float((book[P.kmeans_codes(w, book)] - w).square().mean())

    assert err(fitted) < 0.5 * err(linear)


# --- the command line and spaces ------------------------------------------------------------------

def test_compress_bits_flag_writes_the_quantised_file(cli, tmp_path):
    out8, out32 = tmp_path / "m8.safetensors", tmp_path / "m32.safetensors"
    rc, stdout, err = cli("compress", "resnet8", "--budget", "30%", "--bits", "8", "--out", out8, "--json")
    assert rc == 0, err
    facts = json.loads(stdout)
    assert facts["method"]["bits"] == 8 and facts["compact_bytes"] == out8.stat().st_size
    rc, stdout, _ = cli("compress", "resnet8", "--budget", "30%", "--out", out32, "--json")
    assert rc == 0 and out8.stat().st_size < 0.4 * out32.stat().st_size
    assert load_compact(out8).config.bits == 8


@pytest.mark.parametrize("args, message", [
    (["compress", "resnet8", "--budget", "30%", "--quant", "qat"], "--quant: quant applies to bits below 32 (16, 8, 4, 1, "
                                                                   "kmeans:K) only, but got (quant='qat', bits=32)"),
    (["compress", "resnet8", "--budget", "30%", "--bits", "3"], "--bits: bits must be 32, 16, 8, 4, 1 (binary) or kmeans:K "
                                                                "with 2 <= K <= 256, but got '3'"),
    (["compress", "resnet8", "--budget", "30%", "--bits", "16", "--entropy"],
     "--entropy: entropy applies to integer codes (bits 8, 4, 1 or kmeans:K) only, but got (entropy=True, bits=16)"),
    (["compress", "mlp", "--method", "deep_compression", "--budget", "8%", "--bits", "8"],
     "--bits: method 'deep_compression' fixes bits='kmeans:32' (use 'prune' to set it), but got 8"),
    (["train", "mlp", "--method", "binaryconnect", "--bits", "8"], "--bits: method 'binaryconnect' fixes bits=1 (use "
                                                                   "'dense' to set it), but got 8"),
    (["compress", "resnet8", "--budget", "30%", "--bits", "8", "--quant", "int"], "--quant: quant must be one of ptq, qat, "
                                                                                  "but got 'int'"),
    (["train", "mlp", "--quant", "qat"], "--quant: quant applies to bits below 32 (16, 8, 4, 1, kmeans:K) only, but got "
                                         "(quant='qat', bits=32)"),
    (["train", "mlp", "--bits", "8", "--budget", "10%"], "--budget: does not apply to method 'dense'"),
])
def test_bad_precision_flags_exit_2_writing_nothing(cli, tmp_path, args, message):
    rc, _, err = cli(*args, "--out", tmp_path / "out")
    assert rc == 2 and message in err, err
    assert not (tmp_path / "out").exists()


def test_train_bits_4_qat_records_the_file_it_wrote(cli, tmp_path):
    rc, stdout, err = cli("train", "mlp", "--method", "smh", "--budget", "20%", "--bits", "4", "--quant", "qat", "--epochs", "1",
                          "--out", tmp_path / "r", "--json")
    assert rc == 0, err
    record = json.loads((tmp_path / "r" / "result.json").read_text())
    assert record["spec"]["method"]["bits"] == 4 and record["spec"]["method"]["quant"] == "qat"
    assert record["metrics"]["stored_bytes"] == (tmp_path / "r" / "model.safetensors").stat().st_size
    model = load_compact(tmp_path / "r" / "model.safetensors")
    assert len(torch.unique(model.U.detach()[0])) <= 15


def test_a_dense_model_at_8_bits_trains_and_ships_its_codes(cli, tmp_path):
    rc, _, err = cli("train", "mlp", "--bits", "8", "--epochs", "1", "--out", tmp_path / "r")
    assert rc == 0, err
    record = json.loads((tmp_path / "r" / "result.json").read_text())
    assert record["spec"]["method"] == {"method": "dense", "bits": 8, "quant": None, "entropy": False}
    dense32 = smhsearch.create_model("mlp", num_classes=10, in_channels=1)
    assert record["metrics"]["stored_bytes"] < 0.3 * measure.stored_bytes(dense32)
    model = smhsearch.export.load_trained(tmp_path / "r" / "model.safetensors")
    assert isinstance(model, smhsearch.methods.DenseModel) and model.config.bits == 8


def _space(tmp_path, **space):
    import yaml

    from smhsearch.space import load_space

    doc = {"name": "s", "space": {"arch": ["resnet8"], "budget": ["25%"], "method": ["dense", "smh"], **space}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    return load_space(tmp_path / "s.yaml")


def test_space_bits_and_quant_make_candidates_for_every_method_and_dense(tmp_path):
    s = _space(tmp_path, bits=[32, 8, 4], quant=["ptq", "qat"])
    configs = [(c.method, c.bits, c.quant) for c in s.candidates()]
    assert configs == [
        ("dense", None, None),
        ("dense", 8, "ptq"),
        ("dense", 8, "qat"),
        ("dense", 4, "ptq"),
        ("dense", 4, "qat"),
        ("smh", None, None),
        ("smh", 8, "ptq"),
        ("smh", 8, "qat"),
        ("smh", 4, "ptq"),
        ("smh", 4, "qat"),
    ]
    smh8 = next(c for c in s.candidates() if c.method == "smh" and c.bits == 8 and c.quant == "qat")
    assert smh8.method_config().to_dict() | {"seed": 0} == smhsearch.SMH(budget="25%", bits=8, quant="qat").to_dict()
    dense4 = next(c for c in s.candidates() if c.method == "dense" and c.bits == 4)
    assert dense4.method_config() == smhsearch.Dense(bits=4, quant="ptq")
    from smhsearch.search._params import StructuredSpace

    ss = StructuredSpace(s, {"resnet8": 10 ** 6}, {"resnet8": None})
    assert all(ss.candidate_of(ss.params_of(c)) == c for c in s.candidates())  # what the grid enqueues names the candidate
    assert "bits=4/quant=qat" in s.candidates()[-1].label()


@pytest.mark.parametrize("space, message", [
    (dict(bits=[5]), re.escape("space.bits: bits must be 32, 16, 8, 4, 1 (binary) or kmeans:K with 2 <= K <= 256, but got 5")),
    (dict(bits=[32], quant=["qat"]), re.escape("space.quant: quant applies to bits below 32 (16, 8, 4, 1, kmeans:K) only, "
                                               "but got "
                                               "(quant=['qat'], bits=[32])")),
    (dict(quant=["int8"]), "quant"),
])
def test_bad_space_precision_names_the_key(tmp_path, space, message):
    from smhsearch.space import SpaceError

    with pytest.raises(SpaceError, match=message):
        _space(tmp_path, **space)


def test_pick_max_bytes_chooses_under_the_file_size():
    from smhsearch import pareto
    from smhsearch.runs import TrialRecord

    trials = [
        TrialRecord(
            i, "complete", {"arch": "resnet8", "method": "smh"}, {"val_acc": acc, "stored_params": 1000, "stored_bytes": b}
        )
        for i, (acc, b) in enumerate([(0.9, 400_000), (0.8, 90_000), (0.7, 20_000)])
    ]
    from smhsearch._budget import parse_bytes

    assert pareto.pick(trials, pareto.Constraints(max_bytes=parse_bytes("100KB"))).chosen.number == 1
    miss = pareto.pick(trials, pareto.Constraints(max_bytes=parse_bytes("10KB")))
    assert miss.chosen is None and miss.nearest[0][0].number == 2 and miss.nearest[0][1]["max_bytes"] == pytest.approx(1.0)


def test_pick_bad_max_bytes_exits_2(cli, tmp_path):
    rc, _, err = cli("pick", tmp_path, "--max-bytes", "lots")
    assert rc == 2 and "--max-bytes: expected a size such as 100000, 100KB, 1.5MB or 2MiB, but got 'lots'" in err


@pytest.mark.parametrize("bits", [8, "kmeans:4"])
def test_pruned_files_pack_only_the_nonzeros_as_codes(tmp_path, bits):
    # a light pruning (90% kept): the zeros are no cluster of their own, so k-means' nearest value to 0 is not 0
    m = smhsearch.compress(base(), smhsearch.Prune(budget="90%", bits=bits))
    _trained_step(m)
    m.set_progress(1.0)
    smhsearch.quantize(m).eval()
    f32 = smhsearch.compress(base(), smhsearch.Prune(budget="90%"))
    f32.set_progress(1.0)
    path = save_compact(m, tmp_path / "m.safetensors")
    with torch.no_grad():
        assert torch.equal(load_compact(path)(X), m(X))
    # the nonzeros of the quantised weights cost their codes (plus scales a row), not 4 bytes: the rest is the same in both files
    masks = torch.split(m.mask, m.sizes)
    coded = sum(int(mk.sum()) for i, mk in enumerate(masks) if f"weights.{i}" in m.precision.names)
    grids = [m.precision.frozen[n] for n in m.precision.names]
    grid_bytes = sum(
        2 * len(g["scale"]) if "scale" in g else 4 * len(g["codebook"]) for g in grids
    )  # bfloat16 scales, float32 codebooks
    extra = path.stat().st_size - (measure.stored_bytes(f32) - 4 * coded)
    assert extra <= coded * (8 if bits == 8 else 2) / 8 + grid_bytes + 100 * len(grids), (
        extra,
        coded,
    )  # + each key's header entry


def test_per_layer_pools_take_a_scale_each(tmp_path):
    # HashedNets' per-layer pools carry their layer's scale: one quantisation scale a (layer, hash) sub-pool
    m = smhsearch.compress(base(), smhsearch.HashedNets(budget="30%", hashes=2, bits=4))
    smhsearch.quantize(m)
    assert len(m.precision.frozen["pool"]["scale"]) == len(m.sub_pools) > 1
    parts = torch.split(m.pool.detach(), m.sub_pools)
    for part, s in zip(parts, m.precision.frozen["pool"]["scale"]):
        steps = part / s
        assert torch.equal(steps, steps.round()) and steps.abs().max() <= 7
    with torch.no_grad():
        assert torch.equal(load_compact(save_compact(m.eval(), tmp_path / "m.safetensors"))(X), m(X))


@pytest.mark.slow
def test_a_search_over_bits_ranks_on_stored_bytes_and_picks_under_max_bytes(tmp_path):
    """A real run (Ray + Optuna) with space.bits and the stored_bytes objective; pick --max-bytes through the CLI."""
    from smhsearch.runs import load_run

    from .conftest import smhsearch_cli

    (tmp_path / "s.yaml").write_text("""\
name: bytes
dataset: {name: fashion-mnist-small}
train: {epochs: 1, batch_size: 128}
space: {arch: [resnet8], budget: ["25%"], method: [smh], bits: [32, 4], quant: [qat]}
search: {sampler: grid, objectives: [accuracy, stored_bytes]}
scheduler: {kind: none}
resources: {cpus_per_trial: 1}
""")
    r = smhsearch_cli("run", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "run"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    trials = {t.config.get("bits", 32): t for t in load_run(tmp_path / "run").complete()}
    assert set(trials) == {32, 4}
    for t in trials.values():
        assert t.get("stored_bytes") == t.model_file.stat().st_size
    small = trials[4].get("stored_bytes")
    assert small < 0.5 * trials[32].get("stored_bytes")
    r = smhsearch_cli("pick", str(tmp_path / "run"), "--max-bytes", str(small), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["chosen"]["number"] == trials[4].number
