"""k-means weight sharing (Gong et al. 2014; Deep Compression): the codebooks and the codes of a tensor's values.

Scalar k-means in one dimension: a codebook of K values a part, the nearest value's index
for each entry. A part is the whole tensor, or one of its ``segments`` (a vector variable
that holds several layers, as HashedNets' pools: Deep Compression shares weights within a
layer, and one codebook across layers of different scales would spend its values on the
widest layer and round the narrow ones to a few values near zero).
"""

from __future__ import annotations

import torch


def _parts(w: torch.Tensor, segments: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    """``w`` flat, cut into the parts that share a codebook: its ``segments`` (a method's layers), or whole."""
    x = w.detach().float().reshape(-1)
    return (x,) if segments is None else torch.split(x, [int(n) for n in segments])


def kmeans_fit(w: torch.Tensor, clusters: int, init: torch.Tensor | None = None, max_iter: int = 300,
               segments: torch.Tensor | None = None) -> torch.Tensor:
    """The codebooks of ``w``, (parts, clusters) float32, one sorted row a part: the whole tensor, or each of its
    ``segments`` (a vector variable holding several layers, as HashedNets' pools: Deep Compression shares weights within
    a layer, and one codebook across layers of different scales would spend its values on the widest). Lloyd's
    iterations in one dimension from a linear initialisation (or ``init``, warm) until the assignment stops changing
    (``max_iter`` only bounds a pathological case)."""
    warm = None if init is None else (init if init.ndim == 2 else init[None])
    return torch.stack(
        [_fit(x, clusters, None if warm is None else warm[i], max_iter) for i, x in enumerate(_parts(w, segments))]
    )


def _fit(x: torch.Tensor, clusters: int, init: torch.Tensor | None, max_iter: int) -> torch.Tensor:
    lo, hi = float(x.min()), float(x.max())
    c = torch.linspace(lo, hi, clusters, device=x.device) if init is None else init.to(x.device).float().sort().values
    idx = None
    for _ in range(max_iter):
        new = kmeans_codes(x, c)
        if idx is not None and torch.equal(new, idx):
            break
        idx = new
        sums = torch.zeros(clusters, device=x.device).index_add_(0, idx, x)
        counts = torch.bincount(idx, minlength=clusters).float()
        c = torch.where(counts > 0, sums / counts.clamp(min=1), c).sort().values  # an empty cluster keeps its value
    return c


def _codes(x: torch.Tensor, book: torch.Tensor) -> torch.Tensor:
    mids = (book[1:] + book[:-1]) / 2
    return torch.bucketize(x, mids.to(x.device))


def kmeans_codes(w: torch.Tensor, codebook: torch.Tensor, segments: torch.Tensor | None = None) -> torch.Tensor:
    """Index of the nearest value of its part's codebook for each entry of ``w`` (flat, int64); codebooks sorted,
    (clusters,) or (parts, clusters)."""
    books = codebook if codebook.ndim == 2 else codebook[None]
    return torch.cat([_codes(x, books[i]) for i, x in enumerate(_parts(w, segments))])


def kmeans_values(codes: torch.Tensor, codebook: torch.Tensor, shape, segments: torch.Tensor | None = None) -> torch.Tensor:
    """The float32 values the codes stand for, each from its part's codebook: the one decoding the model and the file use."""
    books = (codebook if codebook.ndim == 2 else codebook[None]).to(codes.device)
    flat = codes.reshape(-1).to(torch.int64)
    part = (torch.zeros_like(flat) if segments is None else
            torch.repeat_interleave(torch.arange(len(segments), device=flat.device), segments.to(torch.int64).to(flat.device)))
    return books[part, flat].reshape(shape)


