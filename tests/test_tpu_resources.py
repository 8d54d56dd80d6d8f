"""resources.tpus_per_trial: a space asks Ray for TPU chips, and a request no TPU can meet is refused, not waited on.

These run in the default environment (no torch_xla needed); tests/test_xla.py runs trials on XLA devices."""

from __future__ import annotations

import importlib.util

import pytest
import torch

SPACE = """name: tpu
dataset: {{name: fashion-mnist-small}}
train: {{epochs: 1, batch_size: 512}}
space: {{arch: [mlp], method: [dense]}}
search: {{sampler: grid}}
scheduler: {{kind: none}}
resources: {{{resources}}}
"""


def _space(tmp_path, resources: str):
    path = tmp_path / "tpu.yaml"
    path.write_text(SPACE.format(resources=resources))
    return path


def test_gpus_and_tpus_together_are_refused(tmp_path, cli):
    rc, out, err = cli("check", _space(tmp_path, "gpus_per_trial: 1, tpus_per_trial: 1"))
    assert rc == 2 and out == ""
    assert "resources" in err and "GPUs or on TPUs, not both" in err and "tpus_per_trial=1" in err, err
    assert len(err.strip().splitlines()) == 1, err


def test_tpus_per_trial_is_a_whole_number_of_chips(tmp_path, cli):
    rc, _, err = cli("check", _space(tmp_path, "tpus_per_trial: 0.5"))
    assert rc == 2 and "tpus_per_trial" in err, err


def test_local_run_asking_for_tpus_this_machine_lacks_is_refused_and_writes_nothing(tmp_path, cli):
    from smhsearch.search._plan import local_tpus

    if local_tpus() > 0:  # pragma: no cover - a TPU host
        pytest.skip("this machine has TPUs")
    run = tmp_path / "run"
    rc, _, err = cli("run", _space(tmp_path, "tpus_per_trial: 1"), "--out", run)
    assert rc == 2, err
    assert "resources.tpus_per_trial=1 but this machine has 0" in err, err
    assert not run.exists()
    rc, _, err = cli("check", _space(tmp_path, "tpus_per_trial: 1"))  # check only warns: a cluster may have them
    assert rc == 0 and "resources.tpus_per_trial=1 but this machine has 0" in err, err


@pytest.mark.cluster
def test_cluster_without_tpus_is_refused_before_anything_is_written(tmp_path, local_ray):
    import ray

    from smhsearch.search import plan_run, run_search
    from smhsearch.space import load_space

    path = _space(tmp_path, "tpus_per_trial: 2")
    plan = plan_run(load_space(path), path, tmp_path / "run")
    address = ray.get_runtime_context().gcs_address  # the Ray of local_ray: CPUs only
    with pytest.raises(ValueError, match=r"resources.tpus_per_trial=2 but the cluster at .* has 0; no trial could ever start"):
        run_search(plan, address=address)
    assert not (tmp_path / "run").exists()


def test_trial_asking_for_tpus_never_falls_back_to_the_cpu():
    from smhsearch.device import trial_device

    assert trial_device(0, 0) == torch.device("cpu")
    if importlib.util.find_spec("torch_xla") is not None:  # pragma: no cover - .venv-xla: test_xla.py covers it
        pytest.skip("torch_xla is installed")
    with pytest.raises(ValueError, match=r"resources.tpus_per_trial=1 asks for TPUs, but this worker cannot use them: .*"
                                         r"needs PyTorch/XLA"):
        trial_device(0, 1)


@pytest.mark.cluster
def test_check_against_a_cluster_refuses_missing_tpus_and_warns_of_missing_cpus(tmp_path, local_ray, cli):
    import ray

    address = ray.get_runtime_context().gcs_address  # the Ray of local_ray: 2 CPUs, no TPU
    rc, out, err = cli("check", _space(tmp_path, "tpus_per_trial: 1"), "--address", address)
    assert rc == 2 and out == "" and f"resources.tpus_per_trial=1 but the cluster at {address} has 0" in err, err
    rc, out, err = cli("check", _space(tmp_path, "cpus_per_trial: 64"), "--address", address)
    assert rc == 0 and "valid" in out, err
    assert f"resources.cpus_per_trial=64 but the cluster at {address} now has 2: trials wait" in err, err


def test_local_tpus_counts_the_visible_chips(monkeypatch):
    from smhsearch.search._plan import local_tpus

    monkeypatch.setenv("TPU_VISIBLE_CHIPS", "0,1,2,3")
    assert local_tpus() == 4
    monkeypatch.setenv("TPU_VISIBLE_CHIPS", "2")
    assert local_tpus() == 1
