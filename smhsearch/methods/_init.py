"""A method's start: its calibrated random one (``scratch``), or the closest one to the weights the model holds (``fit``).

Each reparametrised model fits its own variables (``_fit``: the truncated SVD for low-rank, the best rank-M
product for SMH, each pool's least-squares value for HashedNets, the trained weights themselves for pruning);
this module decides which start applies, runs the fit and records its error.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .._errors import ConfigError
from ._config import INITS, MethodConfig


def truncated_svd(matrix: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``rank`` leading singular triplets (P, S, Q) of ``matrix`` (rows x cols), so ``P @ diag(S) @ Q.T`` is
    its closest matrix of that rank: a full SVD for small matrices, a randomised one (``torch.svd_lowrank``,
    Halko et al.) where the rank is a small part of a large matrix. Fewer than ``rank`` where the matrix has fewer."""
    rank = min(rank, *matrix.shape)
    if min(matrix.shape) <= 1024 or rank > min(matrix.shape) // 4:
        P, S, Qh = torch.linalg.svd(matrix, full_matrices=False)
        return P[:, :rank], S[:rank], Qh[:rank].T
    P, S, Q = torch.svd_lowrank(matrix, q=min(rank + 10, min(matrix.shape)), niter=4)
    return P[:, :rank], S[:rank], Q[:, :rank]


def resolved_init(model: nn.Module, config: MethodConfig, can_fit: bool = True) -> str:
    """``config.init``, or where it is left open, ``fit`` for a model built from a weights file (where the method
    can start from weights) and ``scratch`` otherwise."""
    from ..models._weights import weights_of

    if config.init is not None:
        if config.init not in INITS:
            raise ConfigError("init", f"init must be one of {' | '.join(INITS)}", config.init)
        return config.init
    return "fit" if can_fit and weights_of(model) is not None else "scratch"


def _fits(compressed: nn.Module) -> bool:
    """A reparametrised model whose method fits its variables to trained weights (it defines ``_fit``)."""
    return hasattr(compressed, "targets") and callable(getattr(compressed, "_fit", None))


def start(model: nn.Module, compressed: nn.Module, config: MethodConfig) -> nn.Module:
    """Give ``compressed`` its start. ``fit`` sets a reparametrised model's variables to the closest start to
    ``model``'s weights and records the fit's error; ``scratch`` keeps the method's random start. A model that keeps
    the base's weights as they are (dense) starts from them either way. A method that rebuilds the architecture
    (the width multiplier), or a reparametrised one without a fit of its own (a plugin may have none), starts
    afresh, and ``init="fit"`` for it is an error."""
    keeps_weights = not hasattr(compressed, "targets") and config.keeps_architecture and not config.needs_arch
    can_fit = _fits(compressed) or keeps_weights
    init = resolved_init(model, config, can_fit)
    if init == "fit" and not can_fit:
        why = "it builds its network afresh" if config.needs_arch else "it has no fit to trained weights"
        raise ConfigError("init", f"init must be scratch for {config.method}: {why} and cannot start "
                          "from the model's weights", init)
    compressed.init = init
    if init == "fit" and _fits(compressed) and not any(p.is_meta for p in model.parameters()):
        fit(compressed, [model.get_parameter(t.name).detach() for t in compressed.targets])
    return compressed


@torch.no_grad()
def fit(compressed: nn.Module, weights: list[torch.Tensor]) -> None:
    """Set ``compressed``'s variables to the closest start to ``weights`` (the trained tensors, in target order),
    then record each layer's relative error ||W_fit - W|| / ||W|| and the overall one in ``fit_error``."""
    compressed._fit([w.to(torch.float32) for w in weights])
    compressed._cache.clear()
    err = [float((f - w).norm()) for f, w in zip(compressed.dense_weights(), weights)]
    norm = [float(w.float().norm()) for w in weights]
    compressed.fit_error = {
        "overall": math.sqrt(sum(e * e for e in err)) / max(math.sqrt(sum(n * n for n in norm)), 1e-30),
        "layers": {t.name: e / n if n > 0 else 0.0 for t, e, n in zip(compressed.targets, err, norm)}}


def init_summary(compressed: nn.Module) -> dict[str, Any]:
    """How the variables started, for ``describe()``: ``init`` and, after a fit, its overall and worst layer error."""
    if compressed.fit_error is None:
        return {"init": compressed.init}
    return {"init": compressed.init, "fit_error": round(compressed.fit_error["overall"], 6),
            "fit_error_max": round(max(compressed.fit_error["layers"].values(), default=0.0), 6)}
