"""Deployable files: the dense materialised model and the compact file of stored variables.

The compact file is a safetensors file (no pickle, so loading never runs code) holding
the compressed model's state as the method packs it (``compact_state_dict``): the
method's variables (for SMH: U, V, the per-layer scales; for pruning: the nonzero
values and a bitmask), every unhashed parameter, and the buffers the base keeps
(batch-norm running statistics), which eval outputs need. Its header metadata records, as JSON, the method
config and the architecture's registry name and arguments, so
:func:`load_compact` can rebuild the module; a file made from a user ``nn.Module``
needs that module passed back in. A model built from a user factory
(``package.module:factory``) records that spec, and loading it imports the module only
when the caller names it (``allow_import=["package.module"]``): a header is data, and
importing what it names would run that module's code. Both the compact and the dense file also record the
state dict's ``_metadata`` (each module's version), which loading hands back to
``load_state_dict``: a module whose ``_load_from_state_dict`` reads its version
(torchvision's MNASNet) could not be rebuilt without it.
"""

from __future__ import annotations

import copy
import math
import json
import os
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from ._modelfile import ModelFileError, check_arch, check_layout, check_size, check_state_metadata, check_upsample, method_config
from ._modelfile import entry as header_entry
from ._version import __version__
from .methods import _entropy, _precision
from .methods import as_compressed
from .methods._base import CompressedModel, compress, state_metadata, with_metadata
from .methods._targets import state_to_be_loaded

COMPACT_FORMAT = "smhsearch.compact"
DENSE_FORMAT = "smhsearch.dense"  # a materialised model's weights (save_dense)
COMPACT_VERSION = "1"


def materialize(model: nn.Module) -> nn.Module:
    """A plain dense copy of the base architecture whose eval outputs equal ``model``'s.

    Its state dict loads into ``create_model(name)`` of the same architecture, and its
    inference costs exactly what the base architecture costs. A model that is not
    compressed comes back as a copy.
    """
    return as_compressed(model).materialize()


def readable_mode(bits: int) -> int:
    """``bits`` (0o666 for a file, 0o777 for a folder) less the process umask: what an ordinary new file or folder gets."""
    umask = os.umask(0)
    os.umask(umask)
    return bits & ~umask


def _write_safetensors(state: dict[str, torch.Tensor], path: str | os.PathLike, fmt: str, meta: dict[str, str]) -> Path:
    """Write ``state`` with smhsearch's header (``fmt``, version) plus ``meta``, atomically and as readable as the
    umask allows."""
    from safetensors.torch import save_file

    path = Path(path)
    from ._atomic import atomic_path

    header = {"format": fmt, "format_version": COMPACT_VERSION, "smhsearch_version": __version__, **meta}
    with atomic_path(path) as tmp:  # a crash mid-write never leaves a half file under the real name, nor a stray .tmp
        save_file(state, str(tmp), metadata=header)
        os.chmod(tmp, readable_mode(0o666))  # safetensors writes 0600
    return path


def _read_header(path: str | os.PathLike, formats: tuple[str, ...], what: str) -> dict[str, str]:
    """The header metadata of a safetensors file smhsearch wrote in one of ``formats`` (no tensors are read)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            meta["__tensors__"] = str(len(f.keys()))  # what the file can account for (modelfile.check_size)
    except Exception as e:  # safetensors raises its own error types for a bad header (truncated, too large, not JSON)
        raise ModelFileError(
            f"{path} is not a safetensors file: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        ) from None
    if meta.get("format") not in formats:
        raise ModelFileError(
            f"{path} is not an smhsearch {what} (format={meta.get('format')!r}, expected {' or '.join(map(repr, formats))})"
        )
    if meta.get("format_version") != COMPACT_VERSION:
        raise ModelFileError(
            f"{path}: format version {meta.get('format_version')!r} is not supported (this smhsearch reads {COMPACT_VERSION!r})"
        )
    return meta


def _metadata_json(module: nn.Module) -> str:
    """The state dict's module versions as JSON; an entry JSON cannot write (a hook's object) is left out."""
    out = {}
    for prefix, entry in state_metadata(module).items():
        try:
            json.dumps(entry)
        except (TypeError, ValueError):
            entry = {k: v for k, v in entry.items() if k == "version"}
        out[prefix] = entry
    return json.dumps(out)


def save_compact(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``model``'s stored variables and what rebuilds it to ``path`` (safetensors); a plain module is written
    as the dense model (``Dense()``) around it.

    Below 32 bits the quantised tensors are stored as packed codes and scales (or codebook and
    indices; ``methods/_precision.py``), so the model must have been quantised
    (:func:`smhsearch.quantize`; the trainer does it at the end of training).
    """
    model = as_compressed(model)
    tensors, precision = _precision.encode_state(model, model.compact_state_dict())
    coded = {}
    if model.config.entropy:
        tensors, coded = _entropy.encode(tensors, _precision.scheme_of(model.config.bits).code_bits)
    return _write_safetensors(tensors, path, COMPACT_FORMAT, {
        "method": json.dumps(model.config.to_dict()),
        "arch": json.dumps(model.arch),
        "layout": json.dumps(model.layout()),
        "state_metadata": _metadata_json(model),
        **({"precision": json.dumps(precision)} if precision else {}),
        **({"entropy": json.dumps(coded)} if coded else {}),
    })


def quantize(model: nn.Module) -> nn.Module:
    """Put a compressed model's quantised tensors on their grid now (post-training quantisation, or the end of
    QAT), as its config's ``bits`` says; the model then computes with what its compact file stores. Idempotent.

    >>> import smhsearch
    >>> m = smhsearch.compress(smhsearch.create_model("mlp", hidden=[32]), smhsearch.SMH(budget="20%", bits=8))
    >>> row = smhsearch.quantize(m).U.detach()[0]  # one row of U: at most 255 distinct values, one scale apart
    >>> len(torch.unique(row)) <= 255
    True
    """
    _precision.finalize(as_compressed(model))
    return model


def compact_bytes(model: CompressedModel) -> int:
    """Bytes of ``model``'s compact file (written to a temporary folder and measured); a model not yet quantised
    is measured as a quantised copy would be written."""
    import tempfile

    if not _precision.is_final(model):
        model = _precision.finalize(copy.deepcopy(model))
    with tempfile.TemporaryDirectory() as d:
        return save_compact(model, Path(d) / "model.safetensors").stat().st_size


def read_compact_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The method config and architecture a compact file records (no tensors are read), each entry checked for its
    kind (:class:`smhsearch._modelfile.ModelFileError` names a bad one); ``tensors``: how many the file holds."""
    meta = _read_header(path, (COMPACT_FORMAT,), "compact file")
    path = Path(path)
    return {
        "method": header_entry(path, meta, "method", dict),
        "arch": header_entry(path, meta, "arch", (dict, type(None))),
        "layout": check_layout(path, header_entry(path, meta, "layout", list, [])),
        "smhsearch_version": meta.get("smhsearch_version"),
        "state_metadata": check_state_metadata(path, header_entry(path, meta, "state_metadata", (dict, type(None)), None)),
        "tensors": int(meta["__tensors__"]),
        "precision": header_entry(path, meta, "precision", dict, {}),
        "entropy": header_entry(path, meta, "entropy", dict, {}),
    }


def _rebuild(path: Path, arch: dict[str, Any] | None, allow_import: Iterable[str], loader: str, tensors: int,
             config=None) -> nn.Module:
    """The architecture a file's header records, built once its header passed every check: a user factory's module only
    if ``allow_import`` names it (before anything is imported), the arguments against the builder's schema, the size
    against the file's (:mod:`smhsearch._modelfile`)."""
    from .models import create_model
    from .models._external import check_import_allowed

    if arch is None:
        raise ModelFileError(f"{path} was saved from a user nn.Module: pass that module as {loader}(path, model=...)")
    if not (isinstance(arch, dict) and isinstance(arch.get("name"), str)):
        check_arch(path, arch)  # raises, naming the entry
    check_import_allowed(arch, allow_import, str(path))
    name, kwargs = check_arch(path, arch)
    check_size(path, name, kwargs, tensors, config)
    return create_model(name, **kwargs)


def load_compact(path: str | os.PathLike, model: nn.Module | None = None, device: str | torch.device = "cpu",
                 allow_import: Iterable[str] = ()) -> CompressedModel:
    """Rebuild the compressed module saved by :func:`save_compact`, in eval mode.

    ``model``: the base module, needed only when the file was made from a model that
    :func:`smhsearch.create_model` did not build (its shape must match).
    ``allow_import``: modules (or packages) a file made from a user factory may import to
    rebuild it; any other is refused with a :class:`PermissionError`.
    """
    from safetensors.torch import load_file

    meta = read_compact_metadata(path)  # every header entry checked (smhsearch._modelfile) before anything is built
    config = method_config(Path(path), meta["method"])
    if model is None:
        model = _rebuild(Path(path), meta["arch"], allow_import, "load_compact", meta["tensors"] + len(meta["layout"]), config)
    try:
        with state_to_be_loaded():  # the file's state replaces the init: skip its arithmetic
            compressed = compress(model, config)
    except ValueError as e:  # a config the method refuses for this model (a budget above its size)
        raise ModelFileError(f"{path}: header entry 'method': {str(e).splitlines()[0]}") from None
    layout = compressed.layout()
    if layout != meta["layout"]:
        first = next(
            (f"{a} != {b}" for a, b in zip(layout, meta["layout"]) if a != b), f"{len(layout)} != {len(meta['layout'])} entries"
        )
        raise ModelFileError(
            f"{path} does not fit the rebuilt model (was `model` the same architecture?): hashed layout differs, {first}"
        )
    try:
        tensors = _entropy.decode(load_file(str(path)), meta["entropy"], limit=2 * compressed.virtual_count() + 2**20)
        tensors, frozen = _precision.decode_state({k: v.to(device) for k, v in tensors.items()}, meta["precision"])
        compressed.load_compact_state_dict(tensors, meta["state_metadata"])
    except (RuntimeError, KeyError, ValueError, TypeError) as e:  # a missing, extra or misshapen tensor, a bad precision entry
        raise ModelFileError(f"{path} does not fit the rebuilt model (was `model` the same architecture?): "
                             f"{' '.join(str(e).split())[:300]}") from None
    compressed.mark_quantised(frozen)
    return compressed.to(device).eval()


# ----------------------------------------------------------------------------------------------
# Dense files: the materialised model as plain tensors, and the deployable formats built from it.

FORMATS = ("safetensors", "torchscript", "pt2", "onnx", "onnx-int8", "compact")


def _dense_arch(dense: nn.Module) -> tuple[dict[str, Any] | None, int | None]:
    """(registry name and kwargs, input up-sampling side) of a materialised model."""
    from .models import arch_of
    from .models._wrappers import Upsampled

    if isinstance(dense, Upsampled):
        return arch_of(dense.model), dense.size
    return arch_of(dense), None


def save_dense(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``model`` materialised (a plain dense module) as a safetensors state dict.

    The header records the architecture (registry name and arguments, e.g. a width
    multiplier's ``width``) so :func:`load_dense` rebuilds it without smhsearch's methods;
    the tensors load into ``create_model(name, **kwargs)`` directly.
    """
    dense = materialize(model).cpu().eval()
    arch, side = _dense_arch(dense)
    state = {k: v.detach().contiguous().clone() for k, v in dense.state_dict().items()}
    return _write_safetensors(state, path, DENSE_FORMAT, {"arch": json.dumps(arch), "upsample": json.dumps(side),
                                                          "state_metadata": _metadata_json(dense)})


def file_format(path: str | os.PathLike) -> str:
    """``smhsearch.compact`` or ``smhsearch.dense``: what a safetensors file written by smhsearch holds."""
    return _read_header(path, (COMPACT_FORMAT, DENSE_FORMAT), "model file")["format"]


def load_dense(path: str | os.PathLike, model: nn.Module | None = None, allow_import: Iterable[str] = ()) -> nn.Module:
    """Rebuild the dense module saved by :func:`save_dense`, in eval mode (``model``: for a user module;
    ``allow_import`` as :func:`load_compact` takes it)."""
    from safetensors.torch import load_file

    from .models._wrappers import Upsampled

    meta = _read_header(path, (DENSE_FORMAT, COMPACT_FORMAT), "model file")
    if meta["format"] != DENSE_FORMAT:
        raise ModelFileError(f"{path} is a compact file: load it with load_compact")
    path = Path(path)
    arch = header_entry(path, meta, "arch", (dict, type(None)))
    side = check_upsample(path, header_entry(path, meta, "upsample", (int, type(None)), None))
    metadata = check_state_metadata(path, header_entry(path, meta, "state_metadata", (dict, type(None)), None))
    if model is None:
        model = _rebuild(path, arch, allow_import, "load_dense", int(meta["__tensors__"]))  # each parameter is a tensor
    if side is not None:
        model = Upsampled(model, int(side))
    try:
        model.load_state_dict(with_metadata(load_file(str(path)), state_metadata(model) if metadata is None else metadata))
    except (RuntimeError, KeyError, ValueError) as e:
        raise ModelFileError(f"{path} does not fit the rebuilt model: {' '.join(str(e).split())[:300]}") from None
    return model.eval()


def save_trained(model: nn.Module, path: str | os.PathLike) -> Path:
    """A trained model's file: the compact file of a compressed model, the dense weights of a dense one at 32 bits."""
    return save_dense(model, path) if as_compressed(model).config.uncompressed else save_compact(model, path)


def load_trained(path: str | os.PathLike, allow_import: Iterable[str] = ()) -> nn.Module:
    """A model saved by :func:`save_trained` (compact or dense file), in eval mode (``allow_import``: see
    :func:`load_compact`)."""
    if file_format(path) == COMPACT_FORMAT:
        return load_compact(path, allow_import=allow_import)
    return load_dense(path, allow_import=allow_import)


class _Exportable(nn.Module):
    """One forward signature, ``forward(x)``, for every model: the exporters' dynamic batch dimension is named by it."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _outputs(fn, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return fn(x).float()


def _write_onnx(dense: nn.Module, x: torch.Tensor, path: Path) -> Path:
    """The float ONNX file of ``dense`` (input ``input``, a dynamic batch), written by torch's dynamo exporter."""
    import contextlib
    import io
    import logging
    import warnings

    for name in ("onnxscript", "onnx_ir"):  # their optimiser passes log every rewrite at INFO
        logging.getLogger(name).setLevel(logging.WARNING)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(dense, (x,), str(path), input_names=["input"], output_names=["logits"],
                          dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1)}}, dynamo=True, external_data=False)
    return path


def float_onnx(model: nn.Module, input_shape: tuple[int, ...], path: str | os.PathLike) -> Path:
    """``model`` materialised and written as a float ONNX file at ``path`` (input ``input``, any batch)."""
    return _write_onnx(_Exportable(materialize(model).cpu().eval()).eval(), torch.zeros((2, *input_shape)), Path(path))


def export_model(
    model: nn.Module,
    out_dir: str | os.PathLike,
    input_shape: tuple[int, ...],
    formats: tuple[str, ...] = ("safetensors", "onnx"),
    batch: int = 4,
    seed: int = 0,
    calibration=None,
) -> list[dict[str, Any]]:
    """Write ``model`` in each of ``formats`` under ``out_dir``, reload each and compare its outputs with ``model``'s.

    Returns one record per file: format, path, bytes, the largest absolute difference
    from the trained model's outputs on a fixed random batch, and whether it is within
    tolerance (1e-4 absolute plus 1e-4 of the largest output). ``compact`` needs a
    compressed model. ``pt2`` is ``torch.export``'s program, TorchScript's successor.
    ``onnx-int8`` (:mod:`smhsearch.int8`) needs ``calibration`` (normalised training images, float32
    (N, C, H, W)); its outputs are compared on the first of them and recorded, not held to a tolerance:
    int8 is not float, and its test accuracy is what says whether it may ship.
    """
    import warnings

    from .models._external import imported_module

    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown format {unknown[0]!r}; allowed: {', '.join(FORMATS)}")
    if "onnx-int8" in formats and calibration is None:
        raise ValueError("format 'onnx-int8' needs calibration images (the run's training images)")
    for fmt in ("onnx", "onnx-int8"):  # before any file is written
        if fmt in formats:
            from ._extras import require_extra

            require_extra("onnx", f"format {fmt!r}")
    if "compact" in formats and as_compressed(model).config.uncompressed:
        raise ValueError("format 'compact' needs a compressed model; this one is dense (allowed: "
                         + ", ".join(f for f in FORMATS if f != "compact") + ")")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((batch, *input_shape), generator=gen)
    reference = _outputs(model, x)
    real = torch.as_tensor(calibration[:batch]) if calibration is not None else None
    tol = 1e-4 + 1e-4 * float(reference.abs().max())
    dense = _Exportable(materialize(model).cpu().eval()).eval()
    own = [m for m in [imported_module(as_compressed(model).arch)] if m]  # already imported
    records = []
    for fmt in formats:
        if fmt == "safetensors":
            path = save_dense(model, out_dir / "model.safetensors")
            got = _outputs(load_dense(path, allow_import=own), x)
        elif fmt == "compact":
            path = save_compact(model, out_dir / "model.compact.safetensors")
            got = _outputs(load_compact(path, allow_import=own), x)
        elif fmt == "torchscript":
            path = out_dir / "model.torchscript.pt"
            with warnings.catch_warnings():  # torch marks TorchScript deprecated; it is still what many runtimes load
                warnings.simplefilter("ignore")
                torch.jit.trace(dense, x, check_trace=False).save(str(path))
                got = _outputs(torch.jit.load(str(path)), x)
        elif fmt == "pt2":
            path = out_dir / "model.pt2"
            program = torch.export.export(dense, (x,), dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1)}})
            torch.export.save(program, str(path))
            got = _outputs(torch.export.load(str(path)).module(), x)
        elif fmt == "onnx-int8":
            import tempfile

            from . import int8

            path = out_dir / "model.int8.onnx"
            with tempfile.TemporaryDirectory() as d:
                int8.quantize_onnx(_write_onnx(dense, x, Path(d) / "float.onnx"), path, calibration)
            got, want = torch.from_numpy(int8.outputs(path, real.numpy())).float(), _outputs(model, real)
            records.append(
                {
                    "format": fmt,
                    "path": str(path),
                    "bytes": path.stat().st_size,
                    "max_abs_diff": float((got - want).abs().max()),
                    "tolerance": None,
                    "ok": True,
                    "calibration_images": len(calibration),
                }
            )
            continue
        else:  # onnx, checked with onnxruntime
            from . import int8

            path = _write_onnx(dense, x, out_dir / "model.onnx")
            got = torch.from_numpy(int8.outputs(path, x.numpy())).float()
        diff = float((got - reference).abs().max()) if got.shape == reference.shape else math.inf
        records.append({"format": fmt, "path": str(path), "bytes": path.stat().st_size, "max_abs_diff": diff, "tolerance": tol,
                        "ok": diff <= tol})
    return records
