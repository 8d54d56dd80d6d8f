"""Learning rates that follow the parametrisation: the rule every method's variables train by.

A compressed model computes its weights w from variables theta (SMH's U and V, a hash
pool, low-rank factors), w = f(theta). One optimizer step moves theta by dtheta and the
weights by dw = J dtheta, J = dw/dtheta. **The rule: at the dense model's learning rate
eta, one step moves each computed weight tensor W_l by as much as the same step moves
the dense model's W_l,** ||dW_l|| = ||dW_l^dense||. Every method that keeps the
architecture starts each layer at the std the base initialisation gave it, so relative
updates ||dW||/||W|| match too; the width multiplier, whose narrower layers start wider,
matches the relative update itself (``_width.py``).

- **SGD** (momentum is linear: it scales both sides alike). dtheta = -eta_v J^T g, so
  dW = -eta_v J J^T g. For a gradient with no structure relative to the method's random
  variables, ||(J J^T g)_l|| = e_l ||g_l|| with e_l the RMS over layer l's weights of the
  norms of J J^T's rows. The dense step is -eta g: the variable's rate is eta / e.
- **Adam / AdamW.** The update is normalised per variable entry: each moves by about
  eta_v, with signs that do not line up across the many variables one weight sums, so
  weight i moves by eta_v ||J_i|| (the norm of J's row i) while a dense weight moves by
  eta: e_l is the RMS of ||J_i|| over layer l.
- **Variables that learn the gradient's directions** (the two factors of a product:
  low-rank's B and A, SMH's U and V; each SGD step writes the gradient's row and column
  spaces into them) carry more and more of the gradient's dominant directions, where
  J J^T's gain is its operator norm, above the RMS. How far training goes between the two
  depends on the data and the network (measured, ``benchmarks/sgd_gain.py``: 2-3x the RMS
  on the MNIST MLP, 1-2.3x on ResNet-8, for both methods). Low-rank under SGD takes the
  geometric middle of the two, e_l = sqrt(RMS * ||J J^T||_op), off by at most the square
  root of their ratio either way (``_lowrank.py``): at the RMS it diverged. SMH keeps the
  RMS: the middle, tried, trained it 3-5x too slowly, and the realised gain stays near the
  RMS on the scale of its bounds (``_smh.py``). Adam normalises each entry's step, and
  keeps the RMS.
- A variable that serves several layers (SMH's U and V, one global hash pool) gets
  eta / mean(e_l), the mean taken over layers (modules: a weight and its bias are one
  layer, weighted by count within it), each layer once. In a ReLU network a relative
  change of any one layer moves the output as much, so a layer's say does not grow with
  its size: weighting by count lets the large layers set the rate and a small layer of
  larger init std (often the classifier) run many times faster than dense (a 784-64-10
  MLP under SMH at 30%: the 64-10 layer at 9x, and SGD at lr 0.05 diverged). Layers
  whose e_l is above the mean still move faster, and those below slower (each method's
  docstring says by how much).

Why the norm and not the first-order rate (J J^T's diagonal, which equates the loss
decrease along the gradient): a hashed weight shares its variable with c = N/P others,
so J J^T g carries, besides the weight's own gradient, a sum of c others' with random
signs, which is sqrt(c) times larger. The first-order rule leaves that sum out and gives
Chen et al.'s per-layer pools x1; the HashedNets MNIST sweep (SGD, momentum 0.9) chose
x0.1 at 1/64 and x0.3 at 1/8, and the norm rule gives 1 / sqrt(1 + c) = 0.12 and 0.33.
For SMH it gives x63 on the MNIST MLP, where the sweep chose x30 and x1000 diverged; the
first-order rule would give about x480.

**Weight decay.** PyTorch's SGD and AdamW both shrink a parameter by lr * weight_decay
per step (SGD through the gradient). Weights homogeneous of degree k in a variable (U V
and B A: 2; a hash pool: 1) shrink k times as fast as the variable does, so a variable
group's weight decay is lambda / (k * m) for a multiplier m: each computed weight shrinks
by eta * lambda a step, as a dense weight does, whatever the multiplier.
``variable_lr_mult`` (an override, for sweeps) scales the learning rate only, so a sweep
point xf behaves as the dense model at lr x f with the same lambda.

Gains (normalisation parameters, biases left dense) train at eta with no decay, as in
dense training; dense weight tensors at eta with decay. SMH's learnable per-layer scale is
in the no-decay group at eta too, and its module's backward applies the rule to it: its
SGD step moves each layer along itself as the dense step does (``_smh.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Sequence, get_args

import torch
from torch import nn

Optimizer = Literal["sgd", "adamw"]
OPTIMIZERS: tuple[str, ...] = get_args(Optimizer)


@dataclass(frozen=True)
class VariableRate:
    """How one of a method's variables is trained: its learning-rate multiplier and its degree."""

    lr_mult: float
    """Multiplies the dense learning rate (the rule above)."""
    degree: int = 1
    """The weights are homogeneous of this degree in the variable (U @ V: 2, a pool: 1)."""

    def __post_init__(self) -> None:
        v = self.lr_mult
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
            raise ValueError(f"lr_mult must be a finite number > 0, but got {v!r}")
        if isinstance(self.degree, bool) or not isinstance(self.degree, int) or self.degree < 1:
            raise ValueError(f"degree must be an int >= 1, but got {self.degree!r}")


def check_optimizer(optimizer: str) -> None:
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(repr(o) for o in OPTIMIZERS)}, but got {optimizer!r}")


def shared_multiplier(rates: torch.Tensor | Sequence[float], counts: Sequence[int], layers: Sequence[str]) -> float:
    """1 / the mean over layers of per-tensor effective rates e_l (module docstring).

    ``counts`` weight the tensors within a layer; ``layers`` names each tensor's layer (its
    module), and every layer counts once.

    >>> shared_multiplier([0.5, 0.5, 2.0], [100, 10, 1], ["fc1", "fc1", "fc2"])
    0.8
    """
    e = torch.as_tensor(rates, dtype=torch.float64)
    per_layer: dict[str, list[float]] = {}
    for e_l, n, layer in zip(e.tolist(), counts, layers, strict=True):
        acc = per_layer.setdefault(layer, [0.0, 0.0])
        acc[0] += e_l * n
        acc[1] += n
    mean = sum(a / n for a, n in per_layer.values()) / max(1, len(per_layer))
    if not (math.isfinite(mean) and mean > 0):
        raise ValueError(f"effective rates must be finite and positive on average, but got a mean of {mean!r}")
    return 1.0 / mean


def _variable_rates(model: nn.Module, optimizer: str) -> dict[str, VariableRate]:
    rates = getattr(model, "variable_rates", None)
    return dict(rates(optimizer)) if callable(rates) else {}


def param_groups(model: nn.Module, lr: float, weight_decay: float = 0.0, optimizer: Optimizer = "sgd",
                 variable_lr_mult: float = 1.0) -> list[dict[str, Any]]:
    """torch.optim parameter groups that train ``model``'s variables at their own right rates.

    Works for any ``nn.Module``: a dense model gets two groups, ``decay`` (tensors of two
    or more dimensions) and ``no_decay`` (biases, normalisation, scales). A compressed
    model adds one ``variables:...`` group per distinct rule, at ``lr * m * variable_lr_mult``
    and weight decay ``weight_decay / (degree * m)`` (module docstring). Empty groups are
    left out; every group carries its ``name`` and ``lr_mult``.

    >>> import torch, smhsearch
    >>> m = smhsearch.compress(smhsearch.create_model("mlp", hidden=[64]), smhsearch.SMH(budget="25%"))
    >>> opt = torch.optim.AdamW(param_groups(m, lr=1e-3, weight_decay=1e-2, optimizer="adamw"))
    >>> [g["name"] for g in opt.param_groups]
    ['variables:U,V']
    """
    check_optimizer(optimizer)
    for key, v in (("lr", lr), ("variable_lr_mult", variable_lr_mult)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
            raise ValueError(f"{key} must be a finite number > 0, but got {v!r}")
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or not weight_decay >= 0:
        raise ValueError(f"weight_decay must be a number >= 0, but got {weight_decay!r}")
    rates = _variable_rates(model, optimizer)
    for name in getattr(model, "variable_names", lambda: [])():
        rates.setdefault(name, VariableRate(1.0))
    dense: dict[str, list[nn.Parameter]] = {"decay": [], "no_decay": []}
    variables: dict[VariableRate, list[tuple[str, nn.Parameter]]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name in rates:
            variables.setdefault(rates[name], []).append((name, p))
        else:
            dense["decay" if p.ndim >= 2 else "no_decay"].append(p)
    unknown = sorted(set(rates) - {n for group in variables.values() for n, _ in group})
    if unknown:
        raise ValueError(f"{type(model).__name__}.variable_rates names {unknown}, which are not trainable parameters of the model")
    groups = [{"params": ps, "lr": lr, "weight_decay": weight_decay if key == "decay" else 0.0, "name": key, "lr_mult": 1.0}
              for key, ps in dense.items() if ps]
    for rate, named in variables.items():
        groups.append({"params": [p for _, p in named], "lr": lr * rate.lr_mult * variable_lr_mult,
                       "weight_decay": weight_decay / (rate.degree * rate.lr_mult),
                       "name": "variables:" + ",".join(n for n, _ in named), "lr_mult": rate.lr_mult * variable_lr_mult})
    return groups
