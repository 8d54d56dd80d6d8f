"""The precision stage: a compressed model's stored tensors at 32, 16, 8 or 4 bits, or as k-means shared values.

Every method config carries ``bits`` and ``quant`` (:class:`MethodConfig`), so the stage composes
with any method: it acts on the tensors the model stores, whatever computed them.

- **What is quantised** (:func:`quantised_names`): the method's own variables (SMH's U and V,
  HashedNets' pool, low-rank's factors), whatever their shape, and every other stored trainable
  tensor of two or more dimensions (dense convs and linears: a width model's, pruning's weights,
  the layers a scope leaves unhashed). Vectors (biases, norm gains, per-layer scales) stay
  float32: they are a small share of a model, and a tensor is only quantised where its codes
  and scales take fewer bytes than float32 (it always does from two elements a row on).
- **Schemes** (``bits``): ``32`` (float32, nothing done), ``16`` (float16 values), ``8``/``4``
  (uniform symmetric integers in [-(2^(b-1)-1), 2^(b-1)-1], one scale per row, i.e. per output
  channel along dim 0 as ``torch.ao``'s per-channel weight observers take it; a vector has one
  scale), ``kmeans:K`` (Gong et al.; Deep Compression: one codebook of K float32 values per
  tensor, or per layer of a vector variable that holds several, initialised linearly between
  its min and max as Han et al. found best, refined by Lloyd's iterations until the assignment
  stops changing, and one index of ceil(log2 K) bits a value; :mod:`._kmeans`), ``1``
  (binarisation: BinaryConnect's sign with XNOR-Net's weight scale, each row's
  values ``+-alpha``, alpha = the row's mean absolute value, which minimises the row's squared
  error; one bit a value). Uniform scales are rounded *up* to bfloat16 before any code is
  computed (2 bytes a row, range of float32), binary ones to the nearest bfloat16, so the file
  and the model agree exactly.
- **When** (``quant``): ``ptq`` (the default below 32 bits) snaps the trained variables to their
  grid at the end of training; ``qat`` also trains through the quantiser: every forward uses the
  quantised values and the gradient passes straight through to the float variables (STE;
  ``torch.fake_quantize_per_channel_affine`` for the uniform scheme; for binary weights this is
  BinaryConnect's training: the float weights accumulate the updates, the forward uses their
  signs). Either way the trainer
  calls :func:`finalize` before its last evaluation, so the reported accuracy is the quantised
  model's, and the compact file then holds packed codes (:func:`encode_state`) from which
  :func:`decode_state` rebuilds the same float values bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from .._errors import ConfigError
from ._cache import WeightCache
from ._kmeans import kmeans_codes, kmeans_fit, kmeans_values

BITS = (32, 16, 8, 4, 1)
QUANTS = ("ptq", "qat")
BITS_HELP = "stored precision: 32 | 16 | 8 | 4 | 1 (binary) | kmeans:K (K shared values, 2..256)"


@dataclass(frozen=True)
class Scheme:
    kind: Literal["float", "half", "uniform", "binary", "kmeans"]
    code_bits: int
    """Bits of one stored code (32 for float, 16 for half)."""
    clusters: int | None = None

    @property
    def qmax(self) -> int:
        return 2 ** (self.code_bits - 1) - 1


def parse_bits(value: Any) -> int | str:
    """``bits`` in its one spelling: 32, 16, 8, 4, 1 or ``"kmeans:K"``; anything else is a ConfigError naming the allowed
    values."""
    rule = "bits must be 32, 16, 8, 4, 1 (binary) or kmeans:K with 2 <= K <= 256"
    if isinstance(value, bool):
        raise ConfigError("bits", rule, value)
    text = str(value).strip().lower()
    if text.isdigit() and int(text) in BITS:
        return int(text)
    if text.startswith("kmeans:") and text[7:].isdigit() and 2 <= int(text[7:]) <= 256:
        return f"kmeans:{int(text[7:])}"
    raise ConfigError("bits", rule, value)


def scheme_of(bits: Any) -> Scheme:
    b = parse_bits(bits)
    if isinstance(b, str):
        k = int(b.split(":")[1])
        return Scheme("kmeans", max(1, math.ceil(math.log2(k))), k)
    return Scheme({32: "float", 16: "half", 1: "binary"}.get(b, "uniform"), b)  # type: ignore[arg-type]


def quant_applies(bits: Any) -> bool:
    """Whether ``quant`` (ptq or qat) applies at ``bits``: below 32 bits."""
    return scheme_of(bits).kind != "float"


def entropy_applies(bits: Any) -> bool:
    """Whether entropy coding applies at ``bits``: to integer codes (8, 4, 1, kmeans:K), not to floats (32, 16)."""
    return scheme_of(bits).kind not in ("float", "half")


def check_precision(bits: Any, quant: Any, entropy: Any = False) -> None:
    """The precision fields' rules, the one place they live: a ConfigError naming ``bits``, ``quant`` or ``entropy``
    when they are not a precision this stage applies (quant applies below 32 bits, entropy to integer codes)."""
    b = parse_bits(bits)
    if quant is not None and quant not in QUANTS:
        raise ConfigError("quant", f"quant must be one of {', '.join(QUANTS)} (or unset: ptq below 32 bits)", quant)
    if not quant_applies(b) and quant is not None:
        raise ConfigError("quant", "quant applies to bits below 32 (16, 8, 4, 1, kmeans:K) only", quant, bits=b)
    if not isinstance(entropy, bool):
        raise ConfigError("entropy", "entropy must be true or false", entropy)
    if entropy and not entropy_applies(b):
        raise ConfigError("entropy", "entropy applies to integer codes (bits 8, 4, 1 or kmeans:K) only", entropy, bits=b)


def effective_quant(config) -> str | None:
    """``ptq`` or ``qat`` for a config below 32 bits, None at 32 bits."""
    return None if scheme_of(config.bits).kind == "float" else (config.quant or "ptq")


# --- what is quantised ----------------------------------------------------------------------------

def quantised_names(model: nn.Module) -> list[str]:
    """The stored trainable tensors the precision stage quantises (module docstring), in parameter order."""
    variables = set(model.variable_names())
    out = []
    for name, p in model.named_parameters():
        if p.requires_grad and (name in variables or p.ndim >= 2) and p.numel() >= 2:
            out.append(name)
    return out


def row_index(shape, segments: torch.Tensor | None = None, device: torch.device | str = "cpu") -> tuple[torch.Tensor, int]:
    """(the row of each entry of a tensor of ``shape`` in flat order, (N,) int64; the number of rows). A row is dim 0's
    slice of a tensor of two or more dimensions; a vector is one row, or the ``segments`` (their lengths) its method names."""
    shape = tuple(shape)
    numel = math.prod(shape)
    if segments is not None:
        lengths = segments.to(torch.int64).cpu()
    elif len(shape) >= 2:
        lengths = torch.full((shape[0],), numel // max(1, shape[0]), dtype=torch.int64)
    else:
        lengths = torch.tensor([numel], dtype=torch.int64)
    return torch.repeat_interleave(torch.arange(len(lengths)), lengths).to(device), len(lengths)


def uniform_scales(w: torch.Tensor, scheme: Scheme, segments: torch.Tensor | None = None) -> torch.Tensor:
    """One scale a row, (rows,) float32, each a bfloat16 value no smaller than the row's absmax / qmax (1 for a zero row)."""
    rows, n = row_index(w.shape, segments, w.device)
    absmax = torch.zeros(n, device=w.device).scatter_reduce(0, rows, w.detach().float().reshape(-1).abs(), "amax")
    target = absmax / scheme.qmax
    target = torch.where(target > 0, target, torch.ones_like(target))
    s = target.to(torch.bfloat16)
    s = torch.where(s.float() < target, torch.nextafter(s, torch.full_like(s, math.inf)), s)
    return s.float()


def uniform_codes(w: torch.Tensor, scales: torch.Tensor, scheme: Scheme, segments: torch.Tensor | None = None) -> torch.Tensor:
    """Integer codes in [-qmax, qmax], one an entry of ``w`` in flat order, int16."""
    rows, _ = row_index(w.shape, segments, w.device)
    flat = w.detach().float().reshape(-1)
    return torch.round(flat / scales.to(flat.device)[rows]).clamp_(-scheme.qmax, scheme.qmax).to(torch.int16)


def uniform_values(codes: torch.Tensor, scales: torch.Tensor, shape, segments: torch.Tensor | None = None) -> torch.Tensor:
    """The float32 values ``codes`` stand for: the one decoding both the model and the file use."""
    rows, _ = row_index(shape, segments, codes.device)
    return (codes.reshape(-1).to(torch.float32) * scales.to(codes.device)[rows]).reshape(shape)


def binary_scales(w: torch.Tensor, segments: torch.Tensor | None = None) -> torch.Tensor:
    """One scale a row, (rows,) float32: the row's mean absolute value (XNOR-Net's alpha, the scale that minimises
    ``||w - alpha * sign(w)||``), rounded to the nearest bfloat16 so the file holds it exactly."""
    rows, n = row_index(w.shape, segments, w.device)
    flat = w.detach().float().reshape(-1).abs()
    total = torch.zeros(n, device=w.device).index_add_(0, rows, flat)
    count = torch.bincount(rows, minlength=n).clamp(min=1).float()
    return (total / count).to(torch.bfloat16).float()


def binary_codes(w: torch.Tensor) -> torch.Tensor:
    """1 where an entry of ``w`` (flat) is >= 0, else 0: the sign bit (zero counts as positive), uint8."""
    return (w.detach().reshape(-1) >= 0).to(torch.uint8)


def binary_values(codes: torch.Tensor, scales: torch.Tensor, shape, segments: torch.Tensor | None = None) -> torch.Tensor:
    """``+-scale`` of each entry's row, as the codes say: the one decoding both the model and the file use."""
    rows, _ = row_index(shape, segments, codes.device)
    signs = codes.reshape(-1).to(torch.float32) * 2 - 1
    return (signs * scales.to(codes.device)[rows]).reshape(shape)


# --- packing ---------------------------------------------------------------------------------------

def pack(codes: np.ndarray, bits: int) -> np.ndarray:
    """Unsigned codes (< 2**bits) packed ``bits`` a value, little-endian bit order, into uint8."""
    c = np.ascontiguousarray(codes, dtype=np.uint8).reshape(-1, 1)
    planes = np.unpackbits(c, axis=1, bitorder="little")[:, :bits]  # (N, bits)
    return np.packbits(planes.reshape(-1), bitorder="little")


def unpack(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack`: ``count`` unsigned codes."""
    planes = np.unpackbits(np.asarray(packed, dtype=np.uint8), count=count * bits, bitorder="little").reshape(count, bits)
    return np.packbits(np.pad(planes, ((0, 0), (0, 8 - bits))), axis=1, bitorder="little").reshape(-1)


# --- the stage on a model ------------------------------------------------------------------------

def _quantised(w: torch.Tensor, scheme: Scheme, state: dict[str, torch.Tensor]) -> torch.Tensor:
    """``w`` on its grid, with ``state`` (scales or codebook) as the values were computed: the frozen values."""
    if scheme.kind == "half":
        return w.detach().to(torch.float16).to(torch.float32)
    if scheme.kind == "uniform":
        seg = state.get("segments")
        return uniform_values(uniform_codes(w, state["scale"], scheme, seg), state["scale"], w.shape, seg).to(w.device)
    if scheme.kind == "binary":
        return binary_values(binary_codes(w), state["scale"], w.shape, state.get("segments")).to(w.device)
    seg = state.get("segments")
    return kmeans_values(kmeans_codes(w, state["codebook"], seg), state["codebook"], w.shape, seg).to(w.device)


def fake_quantize(w: torch.Tensor, scheme: Scheme, codebook: torch.Tensor | None = None,
                  segments: torch.Tensor | None = None) -> torch.Tensor:
    """``w`` quantised in the forward, its gradient passed straight through (QAT). Scales come from ``w`` now."""
    if scheme.kind == "uniform":
        scale = uniform_scales(w, scheme, segments)
        if segments is None:  # rows of one length: torch's own per-channel fake quantiser
            rows = w.reshape(1, -1) if w.ndim < 2 else w.reshape(w.shape[0], -1)
            zero = torch.zeros_like(scale, dtype=torch.int32)
            return torch.fake_quantize_per_channel_affine(rows, scale, zero, 0, -scheme.qmax, scheme.qmax).reshape(w.shape)
        target = uniform_values(uniform_codes(w, scale, scheme, segments), scale, w.shape, segments).to(w.dtype)
    elif scheme.kind == "binary":  # BinaryConnect: the forward uses alpha * sign(w), the update reaches the float w
        target = binary_values(binary_codes(w), binary_scales(w, segments), w.shape, segments).to(w.dtype)
    elif scheme.kind == "half":
        target = w.detach().to(torch.float16).to(w.dtype)
    else:
        target = kmeans_values(kmeans_codes(w, codebook, segments), codebook, w.shape, segments).to(w.device, w.dtype)  # type: ignore[arg-type]
    return w + (target - w).detach()


def segments_of(model: nn.Module, name: str) -> torch.Tensor | None:
    """The lengths of a vector variable's parts that take a scale each (:meth:`CompressedModel.quant_segments`), or None."""
    seg = model.quant_segments(name)
    return None if seg is None else torch.tensor(list(seg), dtype=torch.int64)


@dataclass
class PrecisionState:
    """What the precision stage keeps on a compressed model (``CompressedModel.precision``): set by :func:`attach`."""

    names: list[str] = field(default_factory=list)
    """The quantised parameters (:func:`quantised_names`), in parameter order; none at 32 bits."""
    qat: bool = False
    """Every forward computes with the quantised values, the gradient passed straight through (until :func:`finalize`)."""
    frozen: dict[str, dict[str, torch.Tensor]] | None = None
    """Each quantised tensor's grid (``scale`` or ``codebook``, ``segments``) once its values are on it; None before."""
    codebooks: dict[str, torch.Tensor] = field(default_factory=dict)
    """QAT's k-means codebooks: fitted at the first forward, then refined one Lloyd iteration a forward."""
    cache: WeightCache = field(default_factory=WeightCache)
    """The quantised copies an eval forward without autograd reuses while their parameters are unchanged."""


def _slots(model: nn.Module) -> dict[str, list[tuple[str, str]]]:
    """Each quantised parameter's every (module path, attribute) slot: a tied parameter is swapped everywhere at once."""
    names = set(model.precision.names)
    by_id: dict[int, str] = {id(p): n for n, p in model.named_parameters() if n in names}
    out: dict[str, list[tuple[str, str]]] = {n: [] for n in model.precision.names}
    for full, p in model.named_parameters(remove_duplicate=False):
        if id(p) in by_id:
            mod, _, attr = full.rpartition(".")
            out[by_id[id(p)]].append((mod, attr))
    return out


def qat_swap_in(model: nn.Module) -> list[tuple[nn.Module, str, Any]]:
    """QAT's forward (``CompressedModel.__call__``): every slot of each quantised parameter given its quantised value
    for one call, the gradient passing straight through; what :func:`qat_swap_out` puts back. Nothing outside QAT."""
    state = model.precision
    if not state.qat or state.frozen is not None:
        return []
    scheme = scheme_of(model.config.bits)
    reuse = not (model.training or torch.is_grad_enabled())  # eval without autograd: one quantised copy while p is unchanged
    if not reuse:
        state.cache.clear()

    def quantised(name: str, p: torch.Tensor) -> torch.Tensor:
        book = None
        if scheme.kind == "kmeans":  # the codebook follows the weights (Deep Compression): fitted once, then one
            warm = state.codebooks.get(name)  # warm-started Lloyd iteration a step (finalize converges)
            book = state.codebooks[name] = kmeans_fit(p, scheme.clusters, warm, max_iter=300 if warm is None else 1,  # type: ignore[arg-type]
                                                      segments=segments_of(model, name))
        return fake_quantize(p, scheme, book, segments_of(model, name))

    swapped = []
    for name, slots in _slots(model).items():
        p = model.get_parameter(name)
        q = state.cache.get(name, [p], lambda: quantised(name, p)) if reuse else quantised(name, p)
        for mod, attr in slots:
            owner = model.get_submodule(mod)
            swapped.append((owner, attr, owner._parameters[attr]))
            owner._parameters[attr] = q
    return swapped


def qat_swap_out(swapped: list[tuple[nn.Module, str, Any]]) -> None:
    """Undo :func:`qat_swap_in`: the parameters back in their slots."""
    for owner, attr, p in reversed(swapped):
        owner._parameters[attr] = p


def attach(model: nn.Module) -> nn.Module:
    """Set ``model`` (a compressed model just built by its method) up for its config's precision: which tensors, and
    whether its forwards train through the quantiser."""
    names = quantised_names(model) if scheme_of(model.config.bits).kind != "float" else []
    model.precision = PrecisionState(names, qat=bool(names) and effective_quant(model.config) == "qat")
    return model


def is_final(model: nn.Module) -> bool:
    """Whether ``model``'s stored tensors are on their grid (or it keeps float32)."""
    return not model.precision.names or model.precision.frozen is not None


@torch.no_grad()
def finalize(model: nn.Module) -> nn.Module:
    """Snap the quantised tensors to their grid and fix the grid (PTQ, or the end of QAT). Idempotent; returns ``model``.

    From here on the model computes with the values the compact file stores, and QAT's quantiser stands aside.
    """
    if is_final(model):
        return model
    scheme = scheme_of(model.config.bits)
    frozen: dict[str, dict[str, torch.Tensor]] = {}
    books = model.precision.codebooks
    for name in model.precision.names:
        p = model.get_parameter(name)
        state: dict[str, torch.Tensor] = {}
        if scheme.kind in ("uniform", "binary"):
            seg = segments_of(model, name)
            state["scale"] = (uniform_scales(p, scheme, seg) if scheme.kind == "uniform" else binary_scales(p, seg)).cpu()
            if seg is not None:
                state["segments"] = seg
        elif scheme.kind == "kmeans":
            seg = segments_of(model, name)
            state["codebook"] = kmeans_fit(p, scheme.clusters, books.get(name), segments=seg).cpu()  # type: ignore[arg-type]
            if seg is not None:
                state["segments"] = seg
        p.copy_(_quantised(p, scheme, state))
        frozen[name] = state
    model.precision.frozen = frozen
    model.precision.cache.clear()
    return model


# --- the compact file ----------------------------------------------------------------------------

def tensor_codes(w: torch.Tensor, frozen: dict[str, torch.Tensor], scheme: Scheme) -> tuple[np.ndarray, dict[str, torch.Tensor]]:
    """(unsigned codes, one a value in ``w``'s flat order, uint8; the tensors that decode them: ``scale`` bfloat16 or
    ``codebook`` float32) for a uniform or k-means tensor on its frozen grid. Off the grid is a ValueError."""
    w = w.detach().cpu().float()
    unsigned, extra = nearest_codes(w, frozen, scheme)
    if not torch.equal(codes_values(unsigned, extra, scheme, w.shape)[0], w):
        raise ValueError("off its grid")
    return unsigned, extra


def nearest_codes(w: torch.Tensor, frozen: dict[str, torch.Tensor], scheme: Scheme) -> tuple[np.ndarray, dict[str, torch.Tensor]]:
    """:func:`tensor_codes` without the check: the nearest code of each value, on the grid or not."""
    w = w.detach().cpu().float()
    if scheme.kind in ("uniform", "binary"):
        extra = {
            "scale": frozen["scale"].to(torch.bfloat16),
            **({"segments": frozen["segments"]} if "segments" in frozen else {}),
        }
        if scheme.kind == "binary":
            return binary_codes(w).numpy(), extra
        codes = uniform_codes(w, frozen["scale"], scheme, frozen.get("segments"))
        return (codes.numpy().astype(np.int32) + scheme.qmax).astype(np.uint8), extra
    seg = frozen.get("segments")
    book = frozen["codebook"] if frozen["codebook"].shape[0] > 1 else frozen["codebook"].reshape(-1)  # one codebook: (K,)
    extra = {"codebook": book.contiguous(), **({"segments": seg} if seg is not None else {})}
    return kmeans_codes(w, frozen["codebook"], seg).numpy().astype(np.uint8), extra


def codes_values(unsigned: np.ndarray, extra: dict[str, torch.Tensor], scheme: Scheme, shape) -> tuple[torch.Tensor, dict]:
    """Inverse of :func:`tensor_codes`: the float32 tensor, and the frozen grid (float32 scales or codebook)."""
    if scheme.kind in ("uniform", "binary"):
        scale, seg = extra["scale"].float().cpu(), extra.get("segments")
        grid = {"scale": scale, **({"segments": seg.cpu()} if seg is not None else {})}
        if scheme.kind == "binary":
            return binary_values(torch.from_numpy(unsigned.astype(np.uint8)), scale, shape, seg), grid
        signed = torch.from_numpy(unsigned.astype(np.int16)) - scheme.qmax
        return uniform_values(signed, scale, shape, seg), grid
    book, seg = extra["codebook"].float().cpu(), extra.get("segments")
    book = book if book.ndim == 2 else book[None]
    grid = {"codebook": book, **({"segments": seg.cpu()} if seg is not None else {})}
    return kmeans_values(torch.from_numpy(unsigned.astype(np.int64)), book, shape, seg), grid


def off_grid(name: str, bits: Any) -> str:
    return (f"{name} left its {bits}-bit grid after quantisation (trained on?); the file would not be the model: "
            "quantise again before saving")


def encode_state(model: nn.Module, state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``state`` (the method's compact tensors) with each quantised tensor replaced by packed codes and its scales
    (``NAME::codes`` uint8, ``NAME::scale`` bfloat16) or codebook (``NAME::codebook`` float32), or as float16
    (``NAME::f16``); and the header entry that says how (``{NAME: [kind, code bits, shape]}``).

    A tensor that left its grid after :func:`finalize` (trained on) is a ValueError: the file would not be the model.
    """
    if not model.precision.names:
        return state, {}
    if model.precision.frozen is None:
        raise ValueError(f"bits={model.config.bits}: the model's variables are not quantised yet; "
                         "call smhsearch.quantize(model) (the trainer does at the end of training) before saving")
    scheme = scheme_of(model.config.bits)
    out, header = dict(state), {}
    for name, frozen in model.precision.frozen.items():
        if name not in out:
            continue  # the method packs this tensor itself (pruning's nonzero values, with these same functions)
        w = out.pop(name).detach().cpu().float()
        if scheme.kind == "half":
            if not torch.equal(w.to(torch.float16).float(), w):
                raise ValueError(off_grid(name, model.config.bits))
            out[f"{name}::f16"] = w.to(torch.float16).contiguous()
        else:
            try:
                unsigned, extra = tensor_codes(w, frozen, scheme)
            except ValueError:
                raise ValueError(off_grid(name, model.config.bits)) from None
            out[f"{name}::codes"] = torch.from_numpy(pack(unsigned, scheme.code_bits))
            out.update({f"{name}::{k}": v for k, v in extra.items()})
        header[name] = [scheme.kind, scheme.code_bits, list(w.shape)]
    return out, header


def decode_state(tensors: dict[str, torch.Tensor], header: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, dict]]:
    """Inverse of :func:`encode_state`: the float32 tensors, and the frozen grid to give the rebuilt model."""
    out = dict(tensors)
    frozen: dict[str, dict[str, torch.Tensor]] = {}
    for name, (kind, bits, shape) in header.items():
        if kind == "half":
            out[name] = out.pop(f"{name}::f16").float().reshape(shape)
            frozen[name] = {}
            continue
        scheme = Scheme(kind, bits)
        unsigned = unpack(out.pop(f"{name}::codes").cpu().numpy(), bits, math.prod(shape))
        extra = {k: out.pop(f"{name}::{k}") for k in ("scale", "codebook", "segments") if f"{name}::{k}" in out}
        out[name], frozen[name] = codes_values(unsigned, extra, scheme, shape)
    return out, frozen
