"""A corpus of malformed and crafted model files, each with a piece of the one-line error it must give.

Each writer makes one file at ``path`` from a real compact (or dense) file of a tiny MLP, cut or with its
header changed; the loaders must refuse it before they build anything large.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Callable

import torch
from safetensors import safe_open
from safetensors.torch import save_file


def _real(path: Path, dense: bool = False) -> Path:
    from smhsearch import SMH, compress, create_model
    from smhsearch.export import save_compact, save_dense

    torch.manual_seed(0)
    model = compress(create_model("mlp", image_size=8, hidden=[32, 16]), SMH(budget="50%"))
    return save_dense(model, path) if dense else save_compact(model, path)


def _crafted(path: Path, dense: bool = False, drop: tuple[str, ...] = (), **entries) -> Path:
    """The tiny MLP's file with header ``entries`` replaced (values JSON-encoded unless already strings)."""
    _real(path, dense)
    with safe_open(str(path), framework="pt") as f:
        meta, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    arch = json.loads(meta["arch"])
    for k, v in entries.items():
        if k == "kwargs":
            arch["kwargs"].update(v)
            meta["arch"] = json.dumps(arch)
        else:
            meta[k] = v if isinstance(v, str) else json.dumps(v)
    for k in drop:
        meta.pop(k)
    save_file(tensors, str(path), metadata=meta)
    return path


def _truncated(path: Path) -> Path:
    data = _real(path).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _header(path: Path, length: int, body: bytes) -> Path:
    path.write_bytes(struct.pack("<Q", length) + body)
    return path


def _method(path: Path, **changes) -> Path:
    method = {"method": "smh", "budget": "50%", "scope": "all", "scale": "learnable", "seed": 0}
    return _crafted(path, method={**method, **changes})


CORPUS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "truncated": (_truncated, "is not a safetensors file"),
    "wrong magic": (lambda p: (p.write_bytes(b"PK\x03\x04 this is a zip, not a model" * 4), p)[1], "is not a safetensors file"),
    "empty": (lambda p: (p.write_bytes(b""), p)[1], "is not a safetensors file"),
    "huge header": (lambda p: _header(p, 10**15, b"{}"), "is not a safetensors file"),
    "header not JSON": (lambda p: _header(p, 12, b"{not json!! "), "is not a safetensors file"),
    "another format": (lambda p: _crafted(p, format="pickle"), "is not an smhsearch"),
    "bad JSON entry": (lambda p: _crafted(p, arch="{oops"), "header entry 'arch' is not valid JSON"),
    "no method entry": (lambda p: _crafted(p, drop=("method",)), "the header has no 'method' entry"),
    "arch not a mapping": (lambda p: _crafted(p, arch=[1, 2]), "header entry 'arch' must be"),
    "unknown arch": (lambda p: _crafted(p, arch={"name": "resnet9000", "kwargs": {}}), "resnet9000"),
    "unknown arch argument": (lambda p: _crafted(p, kwargs={"depth": 5}), "does not take these arguments"),
    "argument of the wrong type": (lambda p: _crafted(p, kwargs={"hidden": "wide"}), "hidden must be"),
    "1e8 hidden units": (lambda p: _crafted(p, kwargs={"hidden": [100_000_000]}), "more than a"),
    "num_classes 1e11": (lambda p: _crafted(p, kwargs={"num_classes": 10**11}), "more than a"),
    "1M tiny layers": (lambda p: _crafted(p, kwargs={"hidden": [1] * 1_000_000}), "parameter tensors, more than a"),
    "100000 hashes": (lambda p: _crafted(p, method={"method": "hashednets", "budget": "50%", "hashes": 100_000}),
                      "rebuilding it needs about"),
    "unknown method": (lambda p: _crafted(p, method={"method": "zip9"}), "unknown compression method 'zip9'"),
    "bad method option": (lambda p: _method(p, scale="huge"), "header entry 'method'"),
    "budget 1e12": (lambda p: _method(p, budget=10**12), "header entry 'method': SMH: budget must be below"),
    "layout not a list": (lambda p: _crafted(p, layout={"a": 1}), "header entry 'layout' must be a JSON list"),
    "state_metadata wrong kind": (lambda p: _crafted(p, state_metadata=[1]), "header entry 'state_metadata' must be"),
    "tensors of another model": (lambda p: _crafted(p, kwargs={"hidden": [16, 32]}), "does not fit the rebuilt model"),
    "dense: upsample 1e9": (lambda p: _crafted(p, dense=True, upsample=10**9), "header entry 'upsample' must be"),
    "dense: 1e8 hidden units": (lambda p: _crafted(p, dense=True, kwargs={"hidden": [100_000_000]}), "more than a"),
}
