"""A user's trained model into the commands and the job: ``--weights``/``--reinit-head`` on compress, train and check,
the method's start (``init``) and fit error shown and recorded, the file's sha256 in the job's key, and the trained
model as distillation's teacher."""

from __future__ import annotations

import json

import pytest
import torch

from smhsearch.models import create_model, file_sha256

ARCH = "smhsearch.models._mlp:MLP(in_features=784, hidden=[16])"
"""A 784-16-10 MLP (fashion-mnist-small's shape), named as a user's factory so the command line can build it."""
SHAPE = ("--in-channels", "1", "--input-size", "28")


def trained(num_classes: int = 10, seed: int = 1):
    torch.manual_seed(seed)
    m = create_model(ARCH, num_classes=num_classes)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p))  # weights no initialisation gives
    return m


@pytest.fixture
def weights(tmp_path):
    path = tmp_path / "trained.pt"
    torch.save(trained().state_dict(), path)
    return path


@pytest.fixture
def five_class_weights(tmp_path):
    path = tmp_path / "five.pt"
    torch.save(trained(num_classes=5).state_dict(), path)
    return path


def one_line_error(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


# --- compress ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["smh", "lowrank", "hashednets", "prune"])
def test_compress_with_weights_starts_from_a_fit_and_says_its_error(cli, weights, method):
    rc, out, _ = cli("compress", ARCH, "--method", method, "--budget", "25%", *SHAPE, "--weights", weights, "--json")
    facts = json.loads(out)
    assert rc == 0 and facts["init"] == "fit"
    assert 0.0 <= facts["fit_error"] <= facts["fit_error_max"] and isinstance(facts["fit_error"], float)
    if method != "prune":  # pruning's start is the trained weights themselves: no error before its mask tightens
        assert facts["fit_error"] > 0.0
    assert facts["weights"] == {"path": str(weights), "sha256": file_sha256(weights), "head": "keep", "reinitialised": []}


def test_compress_without_weights_starts_from_scratch_and_shows_no_fit(cli, weights):
    rc, out, _ = cli("compress", ARCH, "--budget", "25%", *SHAPE, "--json")
    facts = json.loads(out)
    assert rc == 0 and facts["init"] == "scratch" and "fit_error" not in facts and "weights" not in facts
    rc, out, _ = cli("compress", ARCH, "--budget", "25%", *SHAPE, "--weights", weights, "--init", "scratch", "--json")
    facts = json.loads(out)
    assert rc == 0 and facts["init"] == "scratch" and "fit_error" not in facts
    assert facts["weights"]["sha256"] == file_sha256(weights)


def test_compress_dry_run_shows_the_start(cli, weights):
    rc, out, _ = cli("compress", ARCH, "--budget", "25%", *SHAPE, "--weights", weights, "--dry-run", "--json")
    shown = json.loads(out)
    assert rc == 0 and shown["init"] == "fit" and shown["weights"]["sha256"] == file_sha256(weights)
    rc, out, _ = cli("compress", ARCH, "--budget", "25%", *SHAPE, "--dry-run")
    assert rc == 0 and "init: scratch" in out


def test_a_head_that_does_not_fit_is_refused_naming_the_file_and_reinit_head(cli, five_class_weights, tmp_path):
    out_file = tmp_path / "m.safetensors"
    rc, out, err = cli("compress", ARCH, "--budget", "25%", *SHAPE, "--weights", five_class_weights, "--out", out_file)
    line = one_line_error(err)
    assert rc == 2 and out == "" and not out_file.exists()
    assert line.startswith("smhsearch compress: error: --weights: ")
    assert str(five_class_weights) in line and "--reinit-head" in line
    assert "net.3.weight" in line  # the tensor that does not fit, with its shapes


def test_reinit_head_names_the_reinitialised_tensors(cli, five_class_weights):
    rc, out, _ = cli("compress", ARCH, "--budget", "25%", *SHAPE, "--weights", five_class_weights, "--reinit-head", "--json")
    facts = json.loads(out)
    assert rc == 0 and facts["weights"]["head"] == "reinit"
    assert facts["weights"]["reinitialised"] == ["net.3.weight", "net.3.bias"]
    rc, out, _ = cli("compress", ARCH, "--budget", "25%", *SHAPE, "--weights", five_class_weights, "--reinit-head", "--dry-run")
    assert rc == 0 and "re-initialised (--reinit-head): net.3.weight, net.3.bias" in out


@pytest.mark.parametrize("command", ["compress", "train"])
def test_init_fit_without_weights_is_refused(cli, command, tmp_path):
    out_path = tmp_path / "out"
    extra = ["--budget", "25%", *SHAPE, "--out", out_path / "m.safetensors"] if command == "compress" \
        else ["--epochs", "1", "--out", out_path]
    rc, out, err = cli(command, ARCH, "--init", "fit", *extra)
    line = one_line_error(err)
    assert rc == 2 and out == "" and not out_path.exists()
    assert f"smhsearch {command}: error: --init: " in line and "--weights" in line


def test_reinit_head_without_weights_is_refused(cli):
    rc, _, err = cli("compress", ARCH, "--budget", "25%", *SHAPE, "--reinit-head")
    assert rc == 2 and "--reinit-head: applies only with --weights" in one_line_error(err)


def test_unusable_files_are_one_line_naming_file_and_flag(cli, tmp_path):
    code = tmp_path / "code.pt"
    torch.save({"weights": torch.zeros(2), "callable": torch.nn.Linear(2, 2)}, code)  # a pickle that needs code
    other = tmp_path / "other.pt"
    torch.save(create_model(ARCH.replace("[16]", "[16, 16]")).state_dict(), other)  # another architecture: other keys
    for path, words in ((tmp_path / "missing.pt", "no such weights file"), (code, "refused"), (other, "does not fit")):
        rc, out, err = cli("compress", ARCH, "--budget", "25%", *SHAPE, "--weights", path)
        line = one_line_error(err)
        assert rc == 2 and out == "" and "--weights: " in line and str(path) in line and words in line


# --- the job -------------------------------------------------------------------------------------------

def test_train_records_the_file_its_sha256_and_the_start(cli, weights, tmp_path):
    out = tmp_path / "run"
    rc, _, _ = cli("train", ARCH, "--weights", weights, "--method", "smh", "--budget", "25%", "--epochs", "1", "--device", "cpu",
                   "--out", out)
    rec = json.loads((out / "result.json").read_text())
    sha = file_sha256(weights)
    assert rc == 0 and rec["status"] == "complete"
    assert rec["weights"] == {"path": str(weights.resolve()), "sha256": sha, "head": "keep", "reinitialised": []}
    assert rec["spec"]["weights"] == {"path": str(weights.resolve()), "sha256": sha, "head": "keep"}
    assert rec["init"]["init"] == "fit" and 0.0 < rec["init"]["fit_error"] <= rec["init"]["fit_error_max"]
    layers = rec["init"]["fit_error_layers"]
    assert layers and set(layers) <= {"net.1.weight", "net.1.bias", "net.3.weight", "net.3.bias"}
    assert max(layers.values()) == pytest.approx(rec["init"]["fit_error_max"])


def test_train_with_weights_starts_from_them(weights):
    """The dense job's model, as built before any training, is the file's model."""
    from smhsearch.job import JobSpec, build
    from smhsearch.data import load_dataset

    data = load_dataset("fashion-mnist-small")
    base, model = build(JobSpec(ARCH, weights=str(weights)), data)
    x, _ = next(iter(data.val.batches(8)))
    with torch.no_grad():
        assert torch.equal(model.eval()(x), trained().eval()(x)) and model.init == "fit"


def test_the_key_holds_the_files_sha256_and_is_unchanged_without_weights(weights):
    from smhsearch._keys import json_key
    from smhsearch.distill import DistillConfig
    from smhsearch.job import JobSpec
    from smhsearch.methods import SMH
    from smhsearch.train import TrainConfig

    cfg = TrainConfig(epochs=2, distill=DistillConfig())
    plain = JobSpec("mlp", SMH(budget="25%"), model_kwargs={"hidden": [16]}, train=cfg)
    assert json_key(plain.to_dict()) == "28cbe3b3e5a8baa9" and "weights" not in plain.to_dict()  # the key stored runs hold
    spec = JobSpec("mlp", SMH(budget="25%"), model_kwargs={"hidden": [16]}, train=cfg, weights=str(weights))
    first = json_key(spec.to_dict())
    assert first != json_key(plain.to_dict()) and spec.to_dict()["weights"]["sha256"] == file_sha256(weights)
    torch.save(trained(seed=2).state_dict(), weights)  # the same path, other weights: another job
    changed = JobSpec("mlp", SMH(budget="25%"), model_kwargs={"hidden": [16]}, train=cfg, weights=str(weights))
    assert json_key(changed.to_dict()) != first


def test_distilling_with_weights_teaches_with_the_trained_model(cli, weights, tmp_path, monkeypatch):
    import smhsearch.job
    from smhsearch.data import load_dataset
    from smhsearch.train import evaluate

    def no_training(*a, **k):
        raise AssertionError("a teacher was trained")

    monkeypatch.setattr(smhsearch.job, "_dense_teacher", no_training)
    out = tmp_path / "run"
    rc, _, err = cli("train", ARCH, "--weights", weights, "--method", "smh", "--budget", "25%", "--epochs", "1",
                     "--device", "cpu", "--distill", "--out", out)
    assert rc == 0, err
    rec = json.loads((out / "result.json").read_text())
    data = load_dataset("fashion-mnist-small")
    t = rec["teacher"]
    assert t["source"] == "weights" and t["sha256"] == file_sha256(weights) and t["trained_here"] is False
    assert t["val_acc"] == evaluate(trained(), data.val)[0] and t["test_acc"] == evaluate(trained(), data.test)[0]
    assert rec["metrics"]["teacher_train_seconds"] == 0.0 and not (out / "teachers").exists()


def test_teacher_epochs_with_weights_is_refused(cli, weights, tmp_path):
    rc, out, err = cli("train", ARCH, "--weights", weights, "--epochs", "1", "--distill", "--distill-teacher-epochs", "2",
                       "--out", tmp_path / "run")
    line = one_line_error(err)
    assert rc == 2 and "--distill-teacher-epochs: " in line and not (tmp_path / "run").exists()


def test_a_reinitialised_head_cannot_teach(cli, five_class_weights, tmp_path):
    rc, _, err = cli("train", ARCH, "--weights", five_class_weights, "--reinit-head", "--epochs", "1", "--distill",
                     "--out", tmp_path / "run")
    line = one_line_error(err)
    assert rc == 2 and "--distill-teacher: " in line and "net.3.weight" in line
    assert not (tmp_path / "run" / "result.json").exists()


# --- check -----------------------------------------------------------------------------------------------

def space_file(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("name: s\ntrain: {epochs: 1, batch_size: 256, lr: 0.05}\nspace:\n"
                 "  arch: [{import: 'smhsearch.models._mlp:MLP', kwargs: {in_features: 784, hidden: [16]}}]\n"
                 "  budget: ['25%']\n  method: [dense, smh]\nsearch: {sampler: grid}\nscheduler: {kind: none}\n")
    return p


def test_check_reads_and_checks_the_file_against_the_spaces_architectures(cli, weights, five_class_weights, tmp_path):
    space = space_file(tmp_path)
    rc, out, err = cli("check", space, "--weights", weights, "--json")
    assert rc == 0, err
    checked = json.loads(out)["weights"]
    assert checked["sha256"] == file_sha256(weights) and checked["reinitialised"] == [] and len(checked["architectures"]) == 1
    rc, out, err = cli("check", space, "--weights", five_class_weights)
    line = one_line_error(err)
    assert rc == 2 and out == "" and "--weights: " in line and str(five_class_weights) in line and "--reinit-head" in line
    rc, out, err = cli("check", space, "--weights", five_class_weights, "--reinit-head")
    assert rc == 0, err
    assert f"{five_class_weights}: fits" in out and "re-initialised: net.3.weight, net.3.bias" in out
