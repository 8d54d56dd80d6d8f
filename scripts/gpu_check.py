"""`make gpu-check`: the GPU checks in one command, in under 8 minutes, on a machine that may reach no registry.

Three parts, each under its own time limit, run by this Python (the machine's, not a virtual environment):
1. the tests marked ``gpu`` (pytest -m gpu, on the test files that carry the mark);
2. SMH's overhead against the dense model (benchmarks/smh_overhead.py --device cuda: EfficientNet-B2 at 224 px
   and ResNet-32, bf16 autocast);
3. a short ResNet-32 CIFAR-10 run, dense and SMH at 46K (benchmarks/resnet32_cifar10.py on the packed subset).
The benchmarks write their results under benchmarks/results/, named after the GPU, and this script writes
benchmarks/results/gpu_check-<gpu>.json: each part's outcome, wall time and test counts.

The packages the parts need beyond torch, torchvision, timm, numpy, scipy, safetensors, onnx, onnxruntime and
PyYAML come as wheels in .whl/ and the CIFAR-10 subset as .data/cifar10_subset.npz, both made by
scripts/gpu_check_prepare.py where a registry is reachable; the wheels are installed with
``pip install --no-index --no-deps --target`` into a folder put first on PYTHONPATH. The test that runs a search
with half a GPU per trial needs Ray and Optuna: it runs only where both are importable, and the check says so
otherwise.

Exit status: 0 when every part passed; 1 when a part failed or ran past its limit; 2, at once, when no CUDA
device is visible (nothing is run or written) or the wheels or data are missing.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WHEELS, NPZ = REPO / ".whl", REPO / ".data" / "cifar10_subset.npz"
NEEDS = ("pydantic", "fvcore", "onnxscript", "pytest", "pytest_timeout")  # beyond the machine's base: what the parts import
RAY_TEST = "tests/test_gpu.py::test_run_with_half_a_gpu_per_trial"


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def cuda_device() -> str:
    """The visible GPU's name; exit 2 where torch is missing or sees no CUDA device."""
    try:
        import torch
    except ImportError:
        fail(f"make gpu-check needs torch in {sys.executable}; none is importable")
    if not torch.cuda.is_available():
        fail("no CUDA device is visible (torch.cuda.is_available() is False): make gpu-check runs on a GPU machine; "
             "nothing was run or written")
    return torch.cuda.get_device_name()


def install(site: Path) -> None:
    """The wheels of .whl/ into ``site`` (pip without an index; where this Python has no pip, unpacked as they are)."""
    wheels = sorted(WHEELS.glob("*.whl"))
    if not wheels:
        return
    site.mkdir(parents=True, exist_ok=True)
    if importlib.util.find_spec("pip") is not None:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--upgrade",
                        "--disable-pip-version-check", "--target", str(site), *map(str, wheels)], check=True)
    else:  # a wheel is a zip of the installed files
        for w in wheels:
            with zipfile.ZipFile(w) as z:
                z.extractall(site)
    print(f"installed {len(wheels)} wheels from {WHEELS} into {site}", flush=True)


def importable(names: tuple[str, ...], env: dict[str, str]) -> list[str]:
    """Those of ``names`` this Python cannot import under ``env``."""
    code = "import importlib.util, sys; print(' '.join(n for n in sys.argv[1:] if importlib.util.find_spec(n) is None))"
    out = subprocess.run([sys.executable, "-c", code, *names], env=env, capture_output=True, text=True, check=True)
    return out.stdout.split()


def run(name: str, cmd: list[str], limit: float, env: dict[str, str]) -> dict:
    """``cmd`` under ``limit`` seconds (its whole process group is stopped past it); its outcome and wall time."""
    print(f"\n== {name} (limit {limit:.0f} s): {' '.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, start_new_session=True)
    try:
        rc = proc.wait(timeout=limit)
        status = "passed" if rc == 0 else "failed"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        rc, status = None, f"stopped past its limit of {limit:.0f} s"
    wall = time.perf_counter() - t0
    print(f"== {name}: {status} ({wall:.0f} s)", flush=True)
    return {"part": name, "command": cmd, "status": status, "returncode": rc, "wall_s": round(wall, 1), "limit_s": limit}


def test_counts(junit: Path) -> dict[str, int]:
    if not junit.is_file():
        return {}
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    return {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")} if suite is not None else {}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--site", type=Path, default=Path(os.environ.get("GPU_CHECK_SITE", "/tmp/site")),
                   help="where the wheels are installed (default: $GPU_CHECK_SITE or /tmp/site)")
    p.add_argument("--tests-s", type=float, default=230, help="time limit of the gpu tests (default 230 s)")
    p.add_argument("--overhead-s", type=float, default=110, help="time limit of smh_overhead.py (default 110 s)")
    p.add_argument("--resnet-s", type=float, default=120, help="time limit of the ResNet-32 run (default 120 s)")
    p.add_argument("--epochs", type=int, default=10, help="epochs of the ResNet-32 run (default 10)")
    a = p.parse_args()
    for flag in ("tests_s", "overhead_s", "resnet_s", "epochs"):
        if getattr(a, flag) <= 0:
            p.error(f"--{flag.replace('_', '-')} must be > 0, but got {getattr(a, flag)}")
    gpu = cuda_device()
    print(f"GPU: {gpu}", flush=True)
    install(a.site)
    path = os.pathsep.join([str(a.site), str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env = {**os.environ, "PYTHONPATH": path,
           "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    missing = importable(NEEDS, env)
    if missing:
        fail(f"{', '.join(missing)} not importable and not among the wheels in {WHEELS}: run scripts/gpu_check_prepare.py "
             "where a package registry is reachable, then copy .whl/ and .data/ here")
    if not NPZ.is_file():
        fail(f"the CIFAR-10 subset is not at {NPZ}: run scripts/gpu_check_prepare.py beside ../shared/data, "
             "then copy .data/ here")

    files = sorted(str(f.relative_to(REPO)) for f in (REPO / "tests").glob("test_*.py")
                   if re.search(r"pytest\.mark\.gpu\b", f.read_text()))
    junit = Path(os.environ.get("TMPDIR", "/tmp")) / f"gpu_check_junit_{os.getpid()}.xml"
    tests = [sys.executable, "-m", "pytest", "-m", "gpu", "-p", "pytest_timeout", "-q", f"--junitxml={junit}", *files]
    without_ray = importable(("ray", "optuna"), env)
    if without_ray:
        tests += ["--deselect", RAY_TEST]
        print(f"not run: {RAY_TEST} (a search with half a GPU per trial) needs {' and '.join(without_ray)}, "
              "not importable here", flush=True)
    parts = [run("gpu tests", tests, a.tests_s, env)]
    parts[0] |= {"tests": test_counts(junit), "files": files, "not_run": [RAY_TEST] if without_ray else []}
    junit.unlink(missing_ok=True)
    parts.append(run("smh_overhead", [sys.executable, "benchmarks/smh_overhead.py", "--device", "cuda"], a.overhead_s, env))
    resnet = [sys.executable, "benchmarks/resnet32_cifar10.py", "--device", "cuda", "--npz", str(NPZ), "--epochs", str(a.epochs),
              "--models", "dense", "smh@46K", "--compile", "off"]
    parts.append(run("resnet32_cifar10 short", resnet, a.resnet_s, env))

    sys.path[:0] = [str(a.site), str(REPO), str(REPO / "benchmarks")]
    import torch

    from _common import write_result  # type: ignore[import-not-found]

    path = write_result("gpu_check", torch.device("cuda"), {"parts": parts, "wall_s": round(sum(q["wall_s"] for q in parts), 1)})
    print("\n" + "\n".join(f"{q['part']:24s} {q['status']} ({q['wall_s']:.0f} s)" for q in parts) + f"\nwrote {path}")
    raise SystemExit(0 if all(q["status"] == "passed" for q in parts) else 1)


if __name__ == "__main__":
    main()
