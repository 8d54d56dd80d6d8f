"""Make `make gpu-check` runnable on a bare GPU machine that reaches no package registry.

Such a machine has torch, torchvision, timm, numpy, scipy, safetensors, onnx, onnxruntime and PyYAML,
and at most 64 MiB travel to it with the repository. This script, run where a registry is reachable,
puts beside the checkout (both folders are git-ignored):

- ``.whl/``: the few wheels the GPU tests and the two GPU benchmarks import beyond that base (pydantic and
  its core, fvcore and its helpers, onnxscript for torch's ONNX exporter, pytest and its plugins), for the
  machine's Python (``--python-version``, 3.12 by default; pydantic-core is compiled, so its wheel is that
  version's manylinux one), at the versions installed here when they are (those the project is tested with);
- ``.data/cifar10_subset.npz``: a CIFAR-10 subset (the first ``--train`` training and ``--test`` test images,
  uint8, CHW) from ``../shared/data/cifar10`` (or ``$SMHSEARCH_DATA/cifar10``), for the short ResNet-32 run.

It ends by printing what would travel (tracked files + .whl + .data) and exits 1 if that is over 64 MiB.

    python scripts/gpu_check_prepare.py                 # then copy the checkout over and run `make gpu-check` there
    python scripts/gpu_check_prepare.py --python-version 3.11 --train 2000 --test 500
"""

from __future__ import annotations

import argparse
import importlib.metadata
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from _harness import data_dir, need_dir  # type: ignore[import-not-found]  # noqa: E402

LIMIT = 64 * 2**20
# beyond the machine's base: pydantic (model files, configs), fvcore (FLOP counts), onnxscript (torch's ONNX exporter),
# pytest (the gpu tests)
BINARY = ["pydantic", "pydantic-core", "annotated-types", "typing-inspection", "typing-extensions", "yacs", "portalocker",
          "tabulate", "termcolor", "tqdm", "onnxscript", "onnx-ir", "pytest", "pluggy", "iniconfig", "packaging", "pygments",
          "pytest-timeout"]
SOURCE_ONLY = ["fvcore", "iopath"]  # published as source only (pure Python): built into wheels here


def pinned(name: str) -> str:
    """``name==<the version installed here>``, or ``name`` where it is not installed."""
    try:
        return f"{name}=={importlib.metadata.version(name)}"
    except importlib.metadata.PackageNotFoundError:
        return name


def fetch_wheels(dest: Path, python_version: str) -> None:
    dest.mkdir(exist_ok=True)
    pip = [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "download", "--no-deps", "--only-binary=:all:", "--python-version", python_version,
                    "--platform", "manylinux2014_x86_64", "--implementation", "cp", "-d", str(dest),
                    *map(pinned, BINARY)], check=True)
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(dest), *map(pinned, SOURCE_ONLY)], check=True)


def pack_cifar(dest: Path, n_train: int, n_test: int) -> Path:
    """The first ``n_train`` training and ``n_test`` test images of CIFAR-10 (torchvision's layout) as one .npz."""
    root = need_dir("CIFAR-10", data_dir("cifar10")) / "cifar-10-batches-py"

    def batches(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for name in names:
            with open(root / name, "rb") as f:
                b = pickle.load(f, encoding="latin1")
            xs.append(np.asarray(b["data"], np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(b["labels"], np.int64))
        return np.concatenate(xs), np.concatenate(ys)

    x, y = batches([f"data_batch_{i}" for i in range(1, 6)])
    xt, yt = batches(["test_batch"])
    dest.mkdir(exist_ok=True)
    out = dest / "cifar10_subset.npz"
    np.savez_compressed(out, x_train=x[:n_train], y_train=y[:n_train], x_test=xt[:n_test], y_test=yt[:n_test])
    return out


def size(paths: list[Path]) -> int:
    return sum(p.stat().st_size for p in paths if p.is_file())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--python-version", default="3.12", help="the GPU machine's Python (default 3.12)")
    p.add_argument("--train", type=int, default=10_000, help="CIFAR-10 training images packed (default 10,000)")
    p.add_argument("--test", type=int, default=2_000, help="CIFAR-10 test images packed (default 2,000)")
    a = p.parse_args()
    if not (0 < a.train <= 50_000 and 0 < a.test <= 10_000):
        p.error(f"--train must be in 1..50000 and --test in 1..10000, but got {a.train} and {a.test}")
    whl, data = REPO / ".whl", REPO / ".data"
    for old in whl.glob("*.whl"):  # a folder of one Python version only
        old.unlink()
    fetch_wheels(whl, a.python_version)
    npz = pack_cifar(data, a.train, a.test)
    listed = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    parts = {"repository (tracked files)": size([REPO / f for f in listed]), ".whl/": size(list(whl.glob("*.whl"))),
             str(npz.relative_to(REPO)): size([npz])}
    for name, n in parts.items():
        print(f"{n / 2**20:7.1f} MiB  {name}")
    total = sum(parts.values())
    print(f"{total / 2**20:7.1f} MiB  in all (limit {LIMIT / 2**20:.0f} MiB)")
    if total > LIMIT:
        print("error: over the limit; pack fewer images (--train, --test)", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
