"""Trained weights into an architecture: every format a user holds, and every way a file can be wrong."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from smhsearch.models import WeightsError, create_model, file_sha256, load_weights, weights_of


def trained_mlp(seed: int = 1, **kw):
    torch.manual_seed(seed)
    m = create_model("mlp", hidden=(16,), **kw)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p))  # weights that are not any initialisation's
    return m


def same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("form", ["state_dict", "state_dict_key", "model_key", "module_prefix", "compiled_prefix", "safetensors"])
def test_every_file_form_loads_the_same_weights(tmp_path, form):
    trained = trained_mlp()
    state = trained.state_dict()
    path = tmp_path / ("w.safetensors" if form == "safetensors" else "w.pt")
    if form == "safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        obj = {"state_dict": state, "epoch": 3} if form == "state_dict_key" else {"model": state, "optimizer": {}} \
            if form == "model_key" else {f"module.{k}": v for k, v in state.items()} if form == "module_prefix" \
            else {f"_orig_mod.{k}": v for k, v in state.items()} if form == "compiled_prefix" else state
        torch.save(obj, path)
    m = create_model("mlp", hidden=(16,), weights=path)
    assert same(m, trained)
    info = weights_of(m)
    assert info.sha256 == file_sha256(path) and info.path == str(path) and info.reinitialised == ()


def test_a_fresh_model_has_no_weights_and_differs_from_the_trained_one(tmp_path):
    trained = trained_mlp()
    fresh = create_model("mlp", hidden=(16,))
    assert weights_of(fresh) is None and not same(fresh, trained)


def test_the_projects_own_dense_export_loads(tmp_path):
    from smhsearch.export import save_dense

    trained = trained_mlp()
    path = save_dense(trained, tmp_path / "dense.safetensors")
    assert same(create_model("mlp", hidden=(16,), weights=path), trained)


def test_a_compact_file_is_refused_with_the_way_to_its_dense_weights(tmp_path):
    import smhsearch
    from smhsearch.export import save_compact, save_dense

    compressed = smhsearch.compress(trained_mlp(), smhsearch.SMH(budget="50%"))
    path = save_compact(compressed, tmp_path / "smh.safetensors")
    with pytest.raises(WeightsError, match=r"smh\.safetensors: a compressed model's file .*save_dense"):
        create_model("mlp", hidden=(16,), weights=path)
    dense = save_dense(smhsearch.load_compact(path), tmp_path / "dense.safetensors")  # as the message says
    m = create_model("mlp", hidden=(16,), weights=dense)
    x = torch.randn(5, 1, 28, 28)
    torch.testing.assert_close(m.eval()(x), compressed.eval()(x))


def test_a_file_that_needs_code_is_refused_not_run(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "ran"),))

    path = tmp_path / "evil.pt"
    torch.save({"state_dict": Evil()}, path)  # as a checkpoint holding code would be saved
    with pytest.raises(WeightsError, match=r"evil\.pt: refused: loading it needs code to run \(\S*system"):
        create_model("mlp", hidden=(16,), weights=path)
    assert not (tmp_path / "ran").exists()


def test_missing_and_foreign_files_name_the_file(tmp_path):
    with pytest.raises(WeightsError, match=r"nope\.pt: no such weights file"):
        create_model("mlp", hidden=(16,), weights=tmp_path / "nope.pt")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(WeightsError, match=r"junk\.bin: not a safetensors file or a PyTorch checkpoint"):
        create_model("mlp", hidden=(16,), weights=junk)
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "nostate.pt")
    with pytest.raises(WeightsError, match=r"nostate\.pt: holds no state dict"):
        create_model("mlp", hidden=(16,), weights=tmp_path / "nostate.pt")


def test_a_file_of_another_architecture_names_keys_and_shapes(tmp_path):
    path = tmp_path / "resnet.pt"
    torch.save(create_model("resnet8", widths=(4, 8, 8)).state_dict(), path)
    with pytest.raises(WeightsError, match=r"resnet\.pt: does not fit the architecture: keys \d+ missing \(\S+ \[\d+") as e:
        create_model("mlp", hidden=(16,), weights=path)
    assert "unexpected (" in str(e.value) and "\n" not in str(e.value)


def test_a_head_of_another_class_count_needs_reinit_and_only_it_is_reinitialised(tmp_path):
    trained = trained_mlp(num_classes=100)
    path = tmp_path / "w100.pt"
    torch.save(trained.state_dict(), path)
    with pytest.raises(
        WeightsError, match=r"w100\.pt: 2 tensor\(s\) of other shapes: .*\[100, 16\] \(the model's \[10, 16\]\).*head: reinit"
    ):
        create_model("mlp", hidden=(16,), num_classes=10, weights=path)
    torch.manual_seed(0)
    fresh = create_model("mlp", hidden=(16,), num_classes=10)
    torch.manual_seed(0)
    m = create_model("mlp", hidden=(16,), num_classes=10, weights=path, head="reinit")
    info = weights_of(m)
    head = set(info.reinitialised)
    assert len(head) == 2 and all(k.endswith(("weight", "bias")) for k in head)
    for k, v in m.state_dict().items():  # the head keeps its fresh values, every other tensor the file's
        assert torch.equal(v, fresh.state_dict()[k] if k in head else trained.state_dict()[k]), k


def test_head_without_weights_and_an_unknown_head_are_errors(tmp_path):
    with pytest.raises(WeightsError, match="applies only with weights=FILE"):
        create_model("mlp", hidden=(16,), head="reinit")
    torch.save(trained_mlp().state_dict(), tmp_path / "w.pt")
    with pytest.raises(WeightsError, match="head must be one of keep | reinit"):
        load_weights(create_model("mlp", hidden=(16,)), tmp_path / "w.pt", head="fresh")


def test_a_changed_file_has_another_sha256(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(trained_mlp(1).state_dict(), path)
    first = weights_of(create_model("mlp", hidden=(16,), weights=path)).sha256
    torch.save(trained_mlp(2).state_dict(), path)
    assert weights_of(create_model("mlp", hidden=(16,), weights=path)).sha256 != first


# -- every method's start from the weights the model holds (init="fit") ------------------------------------------

import smhsearch  # noqa: E402


def fit_error_of(c) -> float:
    return c.fit_error["overall"]


def test_lowrank_fit_is_the_truncated_svd_at_each_rank():
    trained = trained_mlp()
    c = smhsearch.compress(trained, smhsearch.LowRank(budget="40%", init="fit"))
    assert c.init == "fit"
    for t, r in zip(c.targets, c.ranks):  # Eckart-Young: the discarded singular values are the error
        w = trained.get_parameter(t.name).detach().double().reshape(t.shape[0], -1)
        sv = torch.linalg.svdvals(w)
        expected = float(sv[r:].pow(2).sum().sqrt() / sv.pow(2).sum().sqrt())
        assert c.fit_error["layers"][t.name] == pytest.approx(expected, rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("kw", [{}, {"hashes": 2}, {"per_layer": True}, {"sign": False}])
def test_hashednets_fit_is_the_least_squares_pool(kw):
    trained = trained_mlp()
    c = smhsearch.compress(trained, smhsearch.HashedNets(budget="30%", init="fit", **kw))
    c.zero_grad()
    loss = sum(((w - trained.get_parameter(t.name).detach()) ** 2).sum() for w, t in zip(c.dense_weights(), c.targets))
    loss.backward()
    g = c.pool.grad
    assert float(g.abs().max()) < 1e-3 * float(loss.detach()) / c.pool.numel() ** 0.5 + 1e-5
    scratch = smhsearch.compress(trained, smhsearch.HashedNets(budget="30%", init="scratch", **kw))
    assert scratch.fit_error is None and scratch.init == "scratch"
    assert fit_error_of(c) < 1.0


@pytest.mark.parametrize("scale", ["fixed", "learnable"])
def test_smh_fit_is_the_best_rank_m_product_with_unbiased_scales(scale):
    trained = trained_mlp()
    c = smhsearch.compress(trained, smhsearch.SMH(budget="30%", scale=scale, init="fit"))
    assert c.describe()["init"] == "fit" and c.describe()["fit_error"] == pytest.approx(fit_error_of(c), abs=1e-6)
    chunks = [w / s for w, s in zip(c.dense_weights(), c.scales())]
    for chunk, t, s in zip(chunks, c.targets, c.scales()):  # each scale is the least-squares one along its chunk
        w = trained.get_parameter(t.name).detach()
        best = float((w * chunk).sum() / chunk.pow(2).sum())
        assert float(s) == pytest.approx(best, rel=1e-4)
    # U @ V is the rank-M truncation of the RMS-normalised virtual matrix: no rank-M product is closer
    sh = c.shape
    rms = torch.stack([trained.get_parameter(t.name).detach().pow(2).mean().sqrt() for t in c.targets])
    flat = torch.cat([trained.get_parameter(t.name).detach().reshape(-1) / r for t, r in zip(c.targets, rms)])
    virtual = torch.cat([flat, flat.new_zeros(sh.n * sh.n - sh.N)]).view(sh.n, sh.n).double()
    sv = torch.linalg.svdvals(virtual)
    assert float((c.U @ c.V).double().sub(virtual).norm()) == pytest.approx(float(sv[sh.M:].pow(2).sum().sqrt()), rel=1e-4)


@pytest.mark.parametrize(
    "config", [smhsearch.SMH(budget="30%"), smhsearch.HashedNets(budget="30%"), smhsearch.LowRank(budget="40%")]
)
def test_a_fit_starts_closer_to_the_trained_model_than_scratch(config):
    import dataclasses

    trained = trained_mlp()
    x = torch.randn(32, 1, 28, 28)
    ref = trained.eval()(x)
    dist = {}
    for init in ("fit", "scratch"):
        c = smhsearch.compress(trained, dataclasses.replace(config, init=init)).eval()
        dist[init] = float((c(x) - ref).norm() / ref.norm())
    assert dist["fit"] < dist["scratch"]


def test_init_defaults_to_fit_for_a_model_built_from_weights(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(trained_mlp().state_dict(), path)
    from_file = create_model("mlp", hidden=(16,), weights=path)
    assert smhsearch.compress(from_file, smhsearch.SMH(budget="30%")).init == "fit"
    assert smhsearch.compress(create_model("mlp", hidden=(16,)), smhsearch.SMH(budget="30%")).init == "scratch"
    assert smhsearch.compress(from_file, smhsearch.SMH(budget="30%", init="scratch")).fit_error is None


def test_init_is_recorded_only_when_set_and_round_trips():
    from smhsearch.methods import config_from_dict

    assert "init" not in smhsearch.SMH(budget="30%").to_dict()
    d = smhsearch.SMH(budget="30%", init="fit").to_dict()
    assert d["init"] == "fit" and config_from_dict(d) == smhsearch.SMH(budget="30%", init="fit")
    with pytest.raises(ValueError, match="init must be one of scratch | fit"):
        smhsearch.compress(trained_mlp(), smhsearch.SMH(budget="30%", init="closest"))


def test_pruning_fits_by_keeping_the_trained_weights_and_width_refuses_a_fit(tmp_path):
    trained = trained_mlp()
    pruned = smhsearch.compress(trained, smhsearch.Prune(budget="30%", init="fit"))
    assert pruned.init == "fit" and pruned.fit_error is not None
    for w, t in zip(pruned.weights, pruned.targets):  # the variables are the trained weights
        assert torch.equal(w.detach(), trained.get_parameter(t.name).detach())
    with pytest.raises(ValueError, match="init must be scratch for width: it builds its network afresh .*, but got 'fit'"):
        smhsearch.compress(trained, smhsearch.WidthMultiplier(alpha=0.5, init="fit"))
    path = tmp_path / "w.pt"
    torch.save(trained.state_dict(), path)
    narrow = smhsearch.compress(create_model("mlp", hidden=(16,), weights=path), smhsearch.WidthMultiplier(alpha=0.5))
    assert narrow.init == "scratch"  # left open, a method that cannot fit starts afresh


def test_a_plugin_method_without_a_fit_starts_afresh_from_a_weights_file(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "plugins"))
    import toy_method

    path = tmp_path / "w.pt"
    torch.save(trained_mlp().state_dict(), path)
    base = create_model("mlp", hidden=(16,), weights=path)
    assert smhsearch.compress(base, toy_method.ToyShare(budget="50%")).init == "scratch"  # left open: no fit to run
    with pytest.raises(ValueError, match="init must be scratch for toyshare: it has no fit to trained weights"):
        smhsearch.compress(base, toy_method.ToyShare(budget="50%", init="fit"))
