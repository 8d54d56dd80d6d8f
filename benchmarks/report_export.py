"""The report, pick and export on a finished run (``spaces/quick.yaml`` by default), timed and checked.

Measures the report's size and build time, and exports the best compressed trial to every
format, recording each file's bytes, its largest difference from the trained model and
the time taken. With no ``--run`` it makes ``runs/quick`` first (about two minutes on 2 cores).

    python benchmarks/report_export.py [--run runs/quick] [--device cpu]

Writes benchmarks/results/report_export-cpu.json.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from smhsearch import pareto
from smhsearch.export import FORMATS, export_model, load_trained
from smhsearch.report import report_data, render
from smhsearch.runs import load_run
from smhsearch.space import dataset_shape

from _common import parse_device, write_result  # type: ignore[import-not-found]

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, default=ROOT / "runs" / "quick")
    p.add_argument("--device", default="cpu", choices=["cpu"], help="the report and export run on the CPU only")
    a = p.parse_args()
    device = parse_device(a.device)
    if not (a.run / "space.yaml").is_file():
        subprocess.run(
            [sys.executable, "-m", "smhsearch.cli", "run", str(ROOT / "spaces" / "quick.yaml"), "--out", str(a.run)], check=True
        )

    t0 = time.perf_counter()
    run = load_run(a.run)
    page = render(report_data(run))
    report_seconds = time.perf_counter() - t0

    compressed = [t for t in run.trials if t.method != "dense"]
    chosen = pareto.pick(compressed, pareto.Constraints()).chosen
    model = load_trained(chosen.model_file)
    _, channels, side = dataset_shape(run.space)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        files = export_model(model, tmp, (channels, side, side), FORMATS)
        export_seconds = time.perf_counter() - t0
    for f in files:
        f["path"] = Path(f["path"]).name
    assert all(f["ok"] for f in files), files
    result = {"run": str(a.run), "trials": len(run.trials), "finished": len(run.complete()),
              "report": {"bytes": len(page.encode()), "seconds_in_process": report_seconds},
              "export": {"trial": chosen.number, "label": chosen.label, "seconds_all_formats": export_seconds, "files": files}}
    path = write_result("report_export", device, result)
    print(f"report {result['report']['bytes'] / 1e6:.1f} MB in {report_seconds:.1f}s; export of #{chosen.number} "
          f"{chosen.label} to {len(files)} formats in {export_seconds:.1f}s")
    for f in files:
        print(f"  {f['format']:<12} {f['bytes']:>10,} bytes  max |diff| {f['max_abs_diff']:.2e}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
