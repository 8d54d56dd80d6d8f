"""Entropy coding of a compact file's integer streams: the precision stage's codes and pruning's bitmask.

Deep Compression (Han et al.) ends its pipeline with Huffman coding: after pruning and
weight sharing, the codes are far from uniform (most weights sit in a few clusters near
zero, most of a sparse mask is zeros), so a code that spends fewer bits on frequent
symbols shrinks the file by another 20-30%. Here that stage is Python's own ``lzma``
(LZMA2, raw stream, preset 9e): an adaptive range coder, which spends at most what a
Huffman code of the same symbols spends and is part of every Python, so reading a file
needs nothing more than smhsearch does.

What is coded: every uint8 tensor of the encoded state. Codes narrower than a byte
(``NAME::codes`` packed ``bits`` a value) are first unpacked to one byte a code, since a
byte coder sees no symbols in 5-bit codes that straddle bytes; a bitmask (``mask_bits``)
is coded as its bytes. All streams are concatenated, in name order, into one coded
stream (``__entropy__``), and the header lists each part's name, kind and sizes.
Decoding repacks the codes, so the state handed on is bit for bit what was coded.
When coding would not make the streams smaller, nothing is coded (the header says so
by its absence).
"""

from __future__ import annotations

import lzma
from typing import Any

import numpy as np
import torch

from ._precision import pack, unpack

CODEC = "lzma2-raw-9e"
STREAM = "__entropy__"
_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]


def encode(tensors: dict[str, torch.Tensor], code_bits: int) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``tensors`` with its uint8 tensors replaced by one entropy-coded stream, and the header entry that undoes it
    (``{}`` and ``tensors`` unchanged where coding does not make them smaller). ``code_bits``: bits of a ``::codes``
    value."""
    parts, chunks, packed = [], [], 0
    for name in sorted(tensors):
        t = tensors[name]
        if t.dtype != torch.uint8:
            continue
        raw = t.detach().cpu().numpy().reshape(-1)
        if name.endswith("::codes") and code_bits < 8:
            data, kind = unpack(raw, code_bits, raw.size * 8 // code_bits), "codes"
        else:
            data, kind = raw, "bytes"
        parts.append([name, kind, int(raw.size), int(data.size)])
        chunks.append(np.ascontiguousarray(data, dtype=np.uint8).tobytes())
        packed += raw.size
    if not parts:
        return tensors, {}
    blob = lzma.compress(b"".join(chunks), format=lzma.FORMAT_RAW, filters=_FILTERS)
    if len(blob) >= packed:
        return tensors, {}
    out = {k: v for k, v in tensors.items() if k not in {p[0] for p in parts}}
    out[STREAM] = torch.frombuffer(bytearray(blob), dtype=torch.uint8)
    return out, {"codec": CODEC, "bits": int(code_bits), "parts": parts}


def decode(tensors: dict[str, torch.Tensor], header: dict[str, Any], limit: int) -> dict[str, torch.Tensor]:
    """Inverse of :func:`encode`. ``limit``: the most bytes the decoded streams may take (a file that declares or
    decodes to more is a ValueError before it takes that memory)."""
    if not header:
        return tensors
    if header.get("codec") != CODEC:
        raise ValueError(f"entropy codec {header.get('codec')!r} is not supported (this smhsearch reads {CODEC!r})")
    parts, bits = header["parts"], int(header["bits"])
    total = sum(int(p[3]) for p in parts)
    if total > limit or not 1 <= bits <= 8:
        raise ValueError(
            f"the entropy-coded streams declare {total} bytes at {bits} bits a code, more than this model can hold ({limit})"
        )
    out = dict(tensors)
    blob = out.pop(STREAM).cpu().numpy().tobytes()
    d = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=_FILTERS)
    data = d.decompress(blob, max_length=total)
    if len(data) != total or not d.eof:  # short, or more behind what was declared
        raise ValueError(f"the entropy-coded stream decodes to other than the {total} bytes its header declares")
    at = 0
    for name, kind, stored, size in parts:
        chunk = np.frombuffer(data, dtype=np.uint8, count=int(size), offset=at)
        at += int(size)
        restored = pack(chunk, bits) if kind == "codes" else chunk.copy()
        if restored.size != int(stored):
            raise ValueError(f"entropy-coded part {name!r} restores to {restored.size} bytes, not the {stored} declared")
        out[name] = torch.from_numpy(restored)
    return out
