"""``smhsearch bench``: a run's finished models timed again on the machine the model will ship on.

The speed a search records is the speed on the device each trial trained on (a GPU of
the cluster). A model ships to a laptop, an edge box, a CPU server: ``bench`` loads each
finished trial's model where it runs, times it as deployed (the compressed model
materialised to its plain network), in PyTorch or in ONNX Runtime through the very ONNX
file ``export`` writes, and stores the figures in the run folder, one file per target:
``bench/<name>.json``. ``pick --speed NAME`` and ``report --speed NAME`` then read that
target's figures instead of the search's.

- **Once per network.** Trials that deploy the same architecture (a dense ResNet-8 and
  its SMH and HashedNets versions all deploy a ResNet-8) share one figure, as in the
  search's speed phase (:func:`smhsearch.speed.signature`).
- **Stable.** Steps are timed by the protocol of every speed figure (:mod:`smhsearch._timing`:
  rounds until their spread is small); the spread and the protocol are recorded beside each figure.
- **Incremental.** Trials already in the target's file are kept; only new ones are
  timed (a resumed run's later trials). ``force`` times them all again.
"""

from __future__ import annotations

import datetime
import json
import platform
import re
import socket
import tempfile
from pathlib import Path
from typing import Any, Callable

from .runs import Run

RUNTIMES = ("torch", "onnxruntime")


class BenchError(ValueError):
    """A bench request that cannot be met, with the option (``device``, ``runtime``, ``trials``, ...) it is about."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option


def default_name(device: str, runtime: str, batch_size: int) -> str:
    """``<host>-<device>-<runtime>-b<batch>``, made safe as a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{socket.gethostname()}-{device}-{runtime}-b{batch_size}").strip("-")


def _onnx_session(net, shape, device, workdir: Path):
    """An ONNX Runtime session of ``net`` exported to ONNX (the file ``export`` writes, checked against ``net``)."""
    from ._extras import require
    from .export import export_model

    ort = require("onnxruntime", "onnx", "--runtime onnxruntime")

    provider = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}.get(device.type)
    if provider is None or provider not in ort.get_available_providers():
        raise BenchError(
            "device", f"onnxruntime here runs on {', '.join(ort.get_available_providers())}; it has no provider for {device}"
        )
    (record,) = export_model(net, workdir, tuple(shape), ("onnx",))
    if not record["ok"]:
        raise RuntimeError(
            f"the ONNX file differs from the model by {record['max_abs_diff']:.2e} (tolerance {record['tolerance']:.2e})"
        )
    return ort.InferenceSession(record["path"], providers=[provider])


def measure_trial_model(model, shape, device, runtime: str, batch_size: int, max_steps: int, workdir: Path) -> dict[str, Any]:
    """Throughput at ``batch_size`` and latency at batch 1 of ``model`` as deployed, in ``runtime`` on ``device``."""
    from .device import device_name
    from ._timing import onnx_timer, speed_figures
    from .speed import deployed, measure_speed

    if runtime == "torch":
        return {**measure_speed(model, shape, device, batch_size, max_steps=max_steps), "runtime": "torch"}
    session = _onnx_session(deployed(model).cpu().eval(), shape, device, workdir)
    import onnxruntime as ort

    return {**speed_figures(onnx_timer(session, shape), batch_size, max_steps=max_steps), "device": device_name(device),
            "dtype": "torch.float32", "runtime": f"onnxruntime {ort.__version__}"}


def bench_run(run: Run, *, device: str = "auto", runtime: str = "torch", batch_size: int = 64, name: str | None = None,
              trials: list[int] | None = None, force: bool = False, max_steps: int = 100,
              log: Callable[[str], None] = print) -> tuple[Path, dict[str, Any], int]:
    """Time every finished trial of ``run`` that has a model (or those numbered ``trials``) here; returns the target's
    file, its record and how many networks were timed now. :class:`BenchError` for a request that cannot be met."""
    from ._atomic import write_record
    from .device import device_name, resolve_device
    from .export import load_trained
    from .space import dataset_shape
    from .speed import deployed, signature

    if runtime not in RUNTIMES:
        raise BenchError("runtime", f"unknown runtime {runtime!r}; allowed: {', '.join(RUNTIMES)}")
    if runtime == "onnxruntime":  # before anything is timed or written
        from ._extras import require_extra

        require_extra("onnx", "--runtime onnxruntime")
    if batch_size < 1:
        raise BenchError("batch_size", f"expected a positive integer, but got {batch_size}")
    try:
        dev = resolve_device(device, flag="--device")
    except ValueError as e:
        raise BenchError("device", str(e)) from None
    name = name or default_name(str(dev), runtime, batch_size)
    path = run.layout.bench_file(name)
    old = json.loads(path.read_text()) if path.is_file() else None
    target = {"device": device_name(dev), "runtime": runtime, "batch_size": batch_size}
    if old is not None and {k: old.get(k) for k in target} != target:
        raise BenchError(
            "name",
            f"{path} holds figures of {old.get('device')} in {old.get('runtime')} at batch {old.get('batch_size')}, not "
            f"{target['device']} in {runtime} at batch {batch_size}; give another --name",
        )
    with_model = [t for t in run.complete() if t.model_file is not None]
    if trials is not None:
        missing = sorted(set(trials) - {t.number for t in with_model})
        if missing:
            raise BenchError("trials", f"trial(s) {', '.join(map(str, missing))} have no trained model here; trials with one: "
                             f"{', '.join(str(t.number) for t in with_model) or 'none'}")
        with_model = [t for t in with_model if t.number in set(trials)]
    figures: dict[str, Any] = {} if force or old is None else dict(old["trials"])
    todo = [t for t in with_model if str(t.number) not in figures]
    _, channels, side = dataset_shape(run.space)
    shape = (channels, side, side)
    by_network: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="smhsearch-bench-") as tmp:
        for t in todo:
            model = load_trained(t.model_file)
            net = signature(deployed(model))
            if net not in by_network:
                log(f"timing trial {t.number} ({t.label}) on {target['device']} in {runtime}")
                by_network[net] = {**measure_trial_model(model, shape, dev, runtime, batch_size, max_steps, Path(tmp) / net),
                                   "architecture": net, "measured_by_trial": t.number,
                                   "measured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
            figures[str(t.number)] = by_network[net]
    record = {**target, "name": name, "host": socket.gethostname(), "platform": platform.platform(),
              "processor": platform.processor() or platform.machine(), "input_shape": list(shape),
              "trials": dict(sorted(figures.items(), key=lambda kv: int(kv[0])))}
    write_record(path, record)
    return path, record, len(by_network)
