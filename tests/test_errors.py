"""A config error names its field; the command line names the flag for it and a space file the key, from the field alone."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest

import smhsearch
from smhsearch import ConfigError
from smhsearch.train import TrainConfig

from .conftest import cli_in_process

SPACE = "name: x\n{extra}space: {{arch: [resnet8], budget: {budget}, method: [smh]{axes}}}\n"


def raised(make) -> ConfigError:
    """The ConfigError a config raises for a value (what the CLI and the loader must show whole, under their own name)."""
    with pytest.raises(ConfigError) as e:
        make()
    return e.value


def test_the_message_is_built_from_field_rule_and_value():
    e = ConfigError("warmup_epochs", "0 <= warmup_epochs < epochs must hold", 5, epochs=3)
    assert str(e) == "0 <= warmup_epochs < epochs must hold, but got (warmup_epochs=5, epochs=3)"
    assert (e.field, e.rule, e.value, e.related) == ("warmup_epochs", "0 <= warmup_epochs < epochs must hold", 5, {"epochs": 3})
    assert isinstance(e, ValueError) and smhsearch.ConfigError is ConfigError and "ConfigError" in smhsearch.__all__
    nested = raised(lambda: TrainConfig(distill={"alpha": 2}))
    assert nested.field == "distill.alpha" and str(nested) == "0 <= alpha <= 1 must hold, but got (alpha=2)"
    back = pickle.loads(pickle.dumps(nested))  # a trial's error crosses a process whole
    assert (type(back), back.field, str(back)) == (ConfigError, nested.field, str(nested))


def test_each_rule_is_raised_by_its_config_naming_the_field():
    from smhsearch.methods._precision import parse_bits

    assert raised(lambda: smhsearch.SMH(budget="lots")).field == "budget"
    assert raised(lambda: parse_bits(3)).field == "bits"
    assert raised(lambda: smhsearch.SMH(budget="10%", bits=16, entropy=True)).field == "entropy"  # checked where it is made
    assert raised(lambda: smhsearch.SMH(budget="10%", quant="qat")).field == "quant"
    assert raised(lambda: TrainConfig(optimizer="adamw", momentum=0.5)).field == "momentum"  # a value SGD alone reads
    TrainConfig(optimizer="adamw").check_set(["optimizer", "lr"])
    assert raised(lambda: TrainConfig(optimizer="adamw").check_set(["nesterov"])).field == "nesterov"  # set, even at its default
    assert raised(lambda: smhsearch.Budget.parse("lots", field="max_params")).field == "max_params"


@pytest.mark.parametrize("args, flag, error", [
    (["compress", "resnet8", "--budget", "lots"], "--budget", lambda: smhsearch.SMH(budget="lots")),
    (["compress", "resnet8", "--budget", "10%", "--bits", "3"], "--bits", lambda: smhsearch.SMH(budget="10%", bits="3")),
    (["train", "mlp", "--optimizer", "adamw", "--momentum", "0.5"], "--momentum",
     lambda: TrainConfig(optimizer="adamw", momentum=0.5)),
    (["train", "mlp", "--distill", "--distill-alpha", "2"], "--distill-alpha", lambda: TrainConfig(distill={"alpha": 2.0})),
])
def test_the_cli_names_the_flag_of_the_field_exit_2_nothing_written(tmp_path, args, flag, error):
    out = tmp_path / "out"
    r = cli_in_process(*args, "--out", out)
    assert r.returncode == 2 and not out.exists(), r.stderr
    assert r.stderr.strip().splitlines() == [f"smhsearch {args[0]}: error: {flag}: {raised(error)}"]


def _space(tmp_path: Path, budget: str = "['10%']", extra: str = "", axes: str = "") -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(SPACE.format(budget=budget, extra=extra, axes=axes))
    return path


@pytest.mark.parametrize("parts, key, error", [
    (dict(budget="[lots]"), "space.budget", lambda: smhsearch.Budget.parse("lots")),
    (dict(axes=", bits: [3]"), "space.bits", lambda: smhsearch.SMH(budget="10%", bits=3)),
    (dict(extra="train: {optimizer: adamw, momentum: 0.9}\n"), "train.momentum",  # given, though at its default
     lambda: TrainConfig(optimizer="adamw").check_set(["momentum"])),
    (dict(extra="search: {max_params: lots}\n"), "search.max_params", lambda: smhsearch.Budget.parse("lots", field="max_params")),
])
def test_the_space_loader_names_the_key_of_the_field_exit_2(tmp_path, parts, key, error):
    path = _space(tmp_path, **parts)
    r = cli_in_process("check", path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [f"smhsearch check: error: {path}: {key}: {raised(error)}"]


def test_max_params_no_candidate_meets_is_its_key_and_run_writes_nothing(tmp_path):
    path = _space(tmp_path, extra="search: {max_params: 1000}\n")
    out = tmp_path / "run"
    r = cli_in_process("run", path, "--out", out)
    assert r.returncode == 2 and not out.exists(), r.stderr
    shown = "search.max_params: search.max_params must admit some candidate of the space, but got max_params=1000"
    assert f"{path}: {shown}" in r.stderr


@pytest.mark.parametrize("error, shown", [
    (ValueError("an architecture could not be built"), "an architecture could not be built"),
    (ConfigError("search.seed", "search.seed must be an int >= 0", -1),
     "search.seed: search.seed must be an int >= 0, but got -1"),
])
def test_a_planning_error_that_is_not_about_max_params_is_not_labelled_so(tmp_path, monkeypatch, error, shown):
    import smhsearch.search

    def refuse(*args, **kwargs):
        raise error

    monkeypatch.setattr(smhsearch.search, "plan_run", refuse)
    path = _space(tmp_path)
    r = cli_in_process("run", path, "--out", tmp_path / "run")
    assert r.returncode == 2 and not (tmp_path / "run").exists(), r.stderr
    assert r.stderr.strip().splitlines() == [f"smhsearch run: error: {path}: {shown}"]


# what reading a message back for its key looked like: the text split at ':' or tested for a prefix
TEXT_PARSING = re.compile(r"\bflag_for\b|str\((?:e|err|exc)\)\.(?:split|partition|rpartition|startswith|lstrip)\(\s*['\"]"
                          r"|\bmsg\.split\(\s*['\"]|\bhead in _allowed_keys\b")


def test_no_module_reads_a_field_back_from_an_error_message():
    package = Path(smhsearch.__file__).parent
    hits = [f"{p.relative_to(package)}:{i}: {line.strip()}" for p in sorted(package.rglob("*.py"))
            for i, line in enumerate(p.read_text().splitlines(), 1) if TEXT_PARSING.search(line)]
    assert hits == []
