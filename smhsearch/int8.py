"""The int8 deployment: the exported float ONNX quantised by ONNX Runtime, and measured beside the float one.

ONNX Runtime's static quantisation (``onnxruntime.quantization.quantize_static``) in QDQ
format: weights int8 per output channel, activations int8 with ranges calibrated (min/max)
on training images, preprocessed as the model was trained (the dataset's normalisation, no
augmentation). The graph is first run through ONNX Runtime's own pre-processing
(``quant_pre_process``: shape inference and graph optimisation), as its documentation
advises. Whether int8 pays is measured, not assumed: on a small CPU the quantise and
dequantise around each operator can cost more than the int8 arithmetic saves, so the float
and int8 files are both timed (batch 1 latency, batch ``BATCH`` throughput) by the protocol
of every speed figure (:mod:`smhsearch._timing`), and both scored on the test split.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ._timing import MAX_STEPS, onnx_timer, speed_figures

BATCH = 64
"""Throughput's batch, as the search's speed phase measures it."""


def _session(path: str | Path):
    from ._extras import require

    ort = require("onnxruntime", "onnx", "running an ONNX file")

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def calibration_images(split, count: int = 512, batch_size: int = 64) -> np.ndarray:
    """The first ``count`` images of ``split`` as the model takes them (normalised, not augmented), float32 (N, C, H, W)."""
    out, have = [], 0
    for x, _ in split.batches(batch_size, shuffle=False, augment=False):
        out.append(x.float().cpu().numpy())
        have += len(x)
        if have >= count:
            break
    if not out:
        raise ValueError("the calibration split holds no image")
    return np.concatenate(out)[:count]


def quantize_onnx(float_path: str | Path, out_path: str | Path, calibration: np.ndarray, input_name: str = "input") -> Path:
    """Write the int8 QDQ model of the float ONNX file ``float_path`` to ``out_path``, its activation ranges calibrated on
    ``calibration`` (float32 (N, C, H, W), already normalised)."""
    from ._extras import require_extra

    require_extra("onnx", "int8 quantisation of an ONNX file")
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(np.array_split(calibration, max(1, len(calibration) // 32)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {input_name: np.ascontiguousarray(batch, dtype=np.float32)}

    import logging

    logging.getLogger("onnxruntime.quantization.shape_inference").setLevel(logging.WARNING)  # it logs each step at INFO
    with tempfile.TemporaryDirectory() as d:
        prepared = Path(d) / "prepared.onnx"
        quant_pre_process(str(float_path), str(prepared))
        quantize_static(str(prepared), str(out_path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    return Path(out_path)


def outputs(path: str | Path, x: np.ndarray, input_name: str = "input") -> np.ndarray:
    return _session(path).run(None, {input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]


def accuracy(path: str | Path, split, batch_size: int = 256, input_name: str = "input") -> float:
    """Top-1 accuracy of the ONNX file at ``path`` on ``split`` (batches as the model was trained to take them)."""
    session, right, total = _session(path), 0, 0
    for x, y in split.batches(batch_size, shuffle=False, augment=False):
        logits = session.run(None, {input_name: x.float().cpu().numpy()})[0]
        right += int((logits.argmax(1) == y.cpu().numpy()).sum())
        total += len(y)
    return right / max(1, total)


def timing(path: str | Path, shape: Iterable[int], max_steps: int = MAX_STEPS, input_name: str = "input") -> dict[str, Any]:
    """ONNX Runtime on this CPU: the latency of one image and the throughput of a batch of :data:`BATCH`, timed as every
    speed figure is (:func:`smhsearch._timing.speed_figures`: medians, their spreads and the protocol)."""
    return speed_figures(onnx_timer(_session(path), tuple(shape), input_name), BATCH, max_steps=max_steps)
