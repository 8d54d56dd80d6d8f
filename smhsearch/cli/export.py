"""``smhsearch export``: a trial's model as deployable files, each reloaded and checked against the trained model."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ._common import BadInput, load_run


def add(sub) -> None:
    s = sub.add_parser("export", help="write a trial's model as deployable files, each checked against the trained model")
    s.add_argument("run", type=Path, metavar="RUN")
    s.add_argument("--trial", type=int, required=True, help="trial number (see the report or `smhsearch pick`)")
    s.add_argument("--out", type=Path, required=True, help="folder to create (must not exist, or be empty)")
    s.add_argument("--format", dest="formats", default=None,
                   help="comma-separated: safetensors (dense), torchscript, pt2 (torch.export), onnx, onnx-int8 (ONNX Runtime's "
                        "static int8 quantisation, calibrated on the run's training images; its test accuracy and speed are "
                        "recorded beside the float model's), compact (default: safetensors,onnx,compact; compact only for "
                        "compressed trials)")
    s.add_argument("--calibration-images", type=int, default=512, metavar="N",
                   help="onnx-int8: training images that calibrate the activation ranges (default 512)")
    s.add_argument("--allow-import", action="append", default=[], metavar="MODULE",
                   help="a module (or package) the trial's model may import to be rebuilt: needed for an architecture "
                        "from a user factory (package.module:factory); repeatable")
    s.add_argument("--json", dest="as_json", action="store_true")
    s.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    return cmd_export(args.run, args.trial, args.out, formats=args.formats, as_json=args.as_json, allow_import=args.allow_import,
                      calibration_images=args.calibration_images)


DEFAULT_EXPORT = ("safetensors", "onnx", "compact")


def trial_with_model(run, trial: int):
    """The run's trial ``trial``, which must have a trained model; BadInput saying why not, and which trials have one."""
    try:
        t = run.trial(trial)
    except ValueError as e:
        raise BadInput(f"--trial: {e}") from None
    if t.status != "complete" or t.model_file is None:
        with_models = ", ".join(str(x.number) for x in run.trials if x.status == "complete" and x.model_file) or "none"
        why = {"early_stopped": "was stopped early by the scheduler, so it has no trained model to export",
               "failed": f"failed ({t.error}), so it has no trained model to export",
               "interrupted": "was interrupted, so it has no trained model to export",
               "running": "is still running", "queued": "has not started"}.get(
            t.status, "has no model.safetensors in its folder (saved by smhsearch run for every finished trial)")
        raise BadInput(f"--trial: trial {trial} ({t.label}) {why}; trials with a model: {with_models}")
    return t


def cmd_export(run_path: Path, trial: int, out: Path, formats: str | None = None, as_json: bool = False,
               allow_import: list[str] | None = None, calibration_images: int = 512) -> int:
    """Write a trial's model as deployable files; each is reloaded and compared with the trained model first."""
    import shutil
    import tempfile

    from ..data import normalization
    from .._modelfile import ModelFileError
    from ..export import FORMATS, export_model, load_trained, readable_mode
    from ..methods import as_compressed

    wanted = DEFAULT_EXPORT if formats is None else tuple(f.strip() for f in formats.split(",") if f.strip())
    unknown = [f for f in wanted if f not in FORMATS]
    if not wanted or unknown:
        raise BadInput(f"--format: unknown format {(unknown or [formats])[0]!r}; allowed: {', '.join(FORMATS)} (comma-separated)")
    for fmt in ("onnx", "onnx-int8"):  # before the run is read or anything is written
        if fmt in wanted:
            from .._extras import require_extra

            require_extra("onnx", f"--format {fmt}" + (" (in the default safetensors,onnx,compact)" if formats is None else ""))
    if not 1 <= calibration_images <= 100_000:
        raise BadInput(f"--calibration-images: expected 1 to 100000 images, but got {calibration_images}")
    run = load_run(run_path)
    t = trial_with_model(run, trial)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BadInput(f"--out: {out} exists and is not an empty folder; nothing was written")
    try:
        model = load_trained(t.model_file, allow_import=allow_import or ())
    except PermissionError as e:
        raise BadInput(f"--allow-import: {e}") from None
    except (ModelFileError, OSError) as e:  # a malformed or crafted file: refused before anything is built
        raise BadInput(f"trial {trial}'s model file: {e}") from None
    if "compact" in wanted and as_compressed(model).config.uncompressed:
        if formats is not None:
            raise BadInput(f"--format: trial {trial} is a dense model, so it has no compact file; "
                           f"allowed for it: {', '.join(f for f in FORMATS if f != 'compact')}")
        wanted = tuple(f for f in wanted if f != "compact")  # the default list: compact applies to compressed trials only
    from ..space import dataset_shape

    side = int(t.get("input_size") or 0)
    _, channels, data_side = dataset_shape(run.space)
    shape = (channels, data_side, data_side)  # what the trained model takes (a width_res model up-samples inside)
    data = _run_data(run, t) if "onnx-int8" in wanted else None
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out.parent if out.parent.exists() else None))
    try:
        from ..int8 import calibration_images as calibrate

        calibration = calibrate(data.train, calibration_images) if data is not None else None
        records = export_model(model, staging, shape, wanted, calibration=calibration)
        bad = [r for r in records if not r["ok"]]
        if bad:
            for r in bad:
                print(f"smhsearch export: {r['format']}: outputs differ from the trained model by {r['max_abs_diff']:.3g} "
                      f"(tolerance {r['tolerance']:.3g}); nothing was written", file=sys.stderr)
            return 1
        int8 = _int8_report(model, staging, shape, records, data) if data is not None else None
        manifest = {"run": str(run_path), "trial": t.number, "label": t.label, "config": t.config, "metrics": t.metrics,
                    **({"int8": int8} if int8 else {}),
                    "input_shape": [None, *shape], "model_input_size": side or None, "preprocess": normalization(run.dataset),
                    "source_file": str(t.model_file),
                    "files": [{**r, "path": Path(r["path"]).name} for r in records]}
        (staging / "export.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        os.chmod(staging, readable_mode(0o777))  # mkdtemp makes it private; the export is an ordinary folder
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists():
            out.rmdir()
        shutil.move(str(staging), str(out))
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    if as_json:
        print(json.dumps(manifest, indent=2, default=str))
        return 0
    print(f"exported trial {t.number} ({t.label}) to {out}; input (N, {', '.join(map(str, shape))})")
    for r in manifest["files"]:
        print(f"  {r['format']:<12} {r['path']:<28} {r['bytes']:>12,} bytes  max |diff| {r['max_abs_diff']:.2e}"
              + (" (ok)" if r["tolerance"] is not None else " (int8: see its accuracy)"))
    if int8:
        f, q = int8["float"], int8["int8"]
        print(
            f"  int8 on the test split: {100 * q['test_acc']:.2f}% against float {100 * f['test_acc']:.2f}% "
            f"({100 * (q['test_acc'] - f['test_acc']):+.2f} points); latency {1e3 * q['latency_s']:.3f} ms against "
            f"{1e3 * f['latency_s']:.3f} ms, batch {int8['batch']} {q['throughput']:.0f} against {f['throughput']:.0f} samples/s "
            f"(onnxruntime, {int8['device']})"
        )
    return 0


def _run_data(run, t):
    """The trial's dataset, as the run loaded it: calibration images from its training split, accuracy on its test split."""
    from ..data import DatasetNotFound, load_dataset
    from ..space import dataset_root

    spec = run.space.dataset
    try:
        return load_dataset(spec.name, dataset_root(run.space), **({"size": spec.resolution} if spec.resolution else {}))
    except (DatasetNotFound, OSError, ValueError) as e:
        raise BadInput(f"--format onnx-int8: needs the run's dataset to calibrate and score it: {e}") from None


def _int8_report(model, staging: Path, shape, records: list[dict], data) -> dict:
    """The int8 file against the float one: test accuracy, batch-1 latency and batch throughput, both in ONNX Runtime here."""
    import tempfile

    import onnxruntime as ort

    from .. import int8
    from ..device import device_name
    from ..export import float_onnx

    quantised = staging / "model.int8.onnx"
    with tempfile.TemporaryDirectory() as d:
        floating = next((Path(r["path"]) for r in records if r["format"] == "onnx"), None) or float_onnx(
            model, shape, Path(d) / "f.onnx"
        )
        report = {name: {"test_acc": int8.accuracy(path, data.test), **int8.timing(path, shape)}
                  for name, path in (("float", floating), ("int8", quantised))}
    return {**report, "batch": int8.BATCH, "device": f"{device_name('cpu')}, onnxruntime {ort.__version__}",
            "test_images": len(data.test)}
