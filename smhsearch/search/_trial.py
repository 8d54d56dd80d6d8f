"""One trial inside a Ray worker: the job of its candidate (``smhsearch.job``), reported to Ray Tune."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .._layout import RunLayout
from .._record import Status, TrialRecord
from ..space import Candidate, Space, dataset_root

def trial_spec(space: Space, space_path: Path, cand: Candidate):
    """The job a candidate of ``space`` runs: its model and method, the space's data and training."""
    from ..job import JobSpec

    return JobSpec(arch=cand.arch, method=cand.method_config(space.train.seed), dataset=space.dataset.name,
                   root=dataset_root(space),
                   dataset_kwargs={"size": space.dataset.resolution} if space.dataset.resolution else {},
                   train=space.train_config(cand.method, cand.distill))


TRANSIENT = (OSError, MemoryError)
"""Errors a trial may not raise again when run again (a full disk, a dropped file system, memory a neighbour held);
any other exception a trial raises is its answer (a retry, same seed, same data, would raise it again)."""


class TrialFailed(RuntimeError):
    """A trial's earlier attempt raised an error a retry would raise again: the error stands."""


def run_trial(config: dict, space_json: str, run_dir: str, space_path: str, study: dict | None = None) -> None:
    """One trial, inside a Ray worker: the job of its candidate, reporting every epoch to Ray Tune.

    Run again after its worker died (``search.retries``), it goes on from the last epoch's checkpoint; a record that
    says it finished is reported as it is (the acknowledgement was what got lost), and an error the trial itself
    raised before stands (see :data:`TRANSIENT`)."""
    import torch
    from ray import tune

    from ..device import share_gpu, trial_device
    from ..job import run_job
    from ..plugins import load_plugins

    number, layout = int(config["_number"]), RunLayout(Path(run_dir))
    record_path = layout.trial_record(number)
    before = TrialRecord.load(record_path, (study or {}).get("uid"))  # an earlier attempt's (None: none, or another study's)
    if before is not None and before.status == Status.COMPLETE:
        tune.report(before.metrics)
        return
    if before is not None and not before.may_run_again():
        raise TrialFailed(f"{before.error} (raised by an earlier attempt; a retry would raise it again)")
    # the study stamp binds the record to its study: a resume never adopts another study's record
    record = TrialRecord.begin(record_path, before, number=number, study=study, config=config.get("_candidate"),
                               attempt=int((before.attempt if before is not None else 0) or 0) + 1)
    try:
        raw = json.loads(space_json)
        load_plugins(raw.get("plugins") or [])  # a worker is a fresh process: user methods register here too
        space = Space.model_validate(raw)
        cand = Candidate.from_params(config["_candidate"])
        record.label = cand.label()
        spec = trial_spec(space, Path(space_path), cand)
    except Exception as e:  # before the job could start: still leave a record saying why
        record.fail(f"{type(e).__name__}: {e}")
        raise
    torch.set_num_threads(max(1, int(space.resources.cpus_per_trial)))
    if space.resources.tpus_per_trial > 0:  # the chips Ray gave this trial (one XLA device per trial process)
        record.set("tpu_visible_chips", os.environ.get("TPU_VISIBLE_CHIPS"))
    try:  # GPUs or TPUs asked for must be there: never a silent fall-back to the CPU
        device = trial_device(space.resources.gpus_per_trial, space.resources.tpus_per_trial)
        share_gpu(device, space.resources.gpus_per_trial)  # trials sharing a GPU each keep to their share of its memory
    except Exception as e:
        record.fail(f"{type(e).__name__}: {e}")
        raise
    epochs, floor = space.train.epochs, space.search.min_throughput

    def on_start(static: dict) -> None:
        if floor is not None and static["throughput"] < floor:
            raise ValueError(f"inference throughput {static['throughput']:.1f}/s is below search.min_throughput {floor}")

    def on_epoch(m, static: dict) -> None:
        if m.epoch < epochs:  # the last epoch is reported once, with the test accuracy
            tune.report({**static, "val_acc": m.val_acc, "epoch": m.epoch, "train_loss": m.train_loss})

    from ..speed import SpeedPhase

    try:  # speed is measured once per deployed architecture, alone on the device (smhsearch.speed); one teacher per
        # key for the whole run, trained by the first trial needing it
        result = run_job(spec, device=device, record_path=record_path, record=record, on_start=on_start, on_epoch=on_epoch,
                         speed_phase=SpeedPhase(run_dir, device, number), teachers=layout.teachers,
                         checkpoint=layout.checkpoint(number))
    except Exception as e:
        if record.status == Status.RUNNING:  # refused before the job recorded an outcome
            record.fail(f"{type(e).__name__}: {e}")
        record.mark_transient(isinstance(e, TRANSIENT))
        raise
    tune.report(result.metrics)
