"""Build smhsearch's embedded default dataset, ``fashion-mnist-small``, from the original files.

    apt-get install dataset-fashion-mnist          # Debian: the four original idx files
    python scripts/make_embedded_dataset.py [--src /usr/share/datasets/fashion-mnist]

Selection (deterministic, no randomness): the first 800 images of each class in the
official training file (8,000) and the first 200 of each class in the official test
file (2,000), kept in file order. Writes smhsearch/data/_embedded/fashion_mnist_small.npz
and PROVENANCE.json (source md5s of the decompressed files, the rule, counts).
Fashion-MNIST is MIT-licensed (Zalando SE, 2017); its notice ships beside the data.
"""

from __future__ import annotations

import argparse
import hashlib
import gzip
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from smhsearch.data._idx import find_idx, read_idx  # noqa: E402

OUT = ROOT / "smhsearch" / "data" / "_embedded"
PER_CLASS = {"train": 800, "test": 200}
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def first_per_class(y: np.ndarray, k: int) -> np.ndarray:
    idx = np.concatenate([np.flatnonzero(y == c)[:k] for c in range(10)])
    return np.sort(idx)  # file order


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    a = p.parse_args()
    arrays, sources = {}, {}
    for split, (img_stem, lbl_stem) in FILES.items():
        paths = [find_idx(a.src, img_stem), find_idx(a.src, lbl_stem)]
        if None in paths:
            sys.exit(f"Fashion-MNIST files not found under {a.src}: apt-get install dataset-fashion-mnist, or pass --src")
        x, y = read_idx(paths[0]), read_idx(paths[1])
        for path in paths:
            raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
            sources[path.name] = hashlib.md5(raw).hexdigest()
        keep = first_per_class(y, PER_CLASS[split])
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x[keep][:, None], y[keep].astype(np.int64)  # (N, 1, 28, 28)
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT / "fashion_mnist_small.npz", **arrays)
    provenance = {
        "dataset": "Fashion-MNIST (Xiao, Rasul, Vollgraf 2017), MIT licence, Zalando SE",
        "rule": "first 800 images per class of the training file, first 200 per class of the test file, in file order",
        "counts": {k: int(v.shape[0]) for k, v in arrays.items() if k.startswith("x_")},
        "source_md5_decompressed": sources,
        "npz_md5": hashlib.md5((OUT / "fashion_mnist_small.npz").read_bytes()).hexdigest(),
    }
    (OUT / "PROVENANCE.json").write_text(json.dumps(provenance, indent=2) + "\n")
    print(json.dumps(provenance, indent=2))


if __name__ == "__main__":
    main()
