"""Plotly figures drawn from :class:`ReportData` (no computation of fronts here)."""

from __future__ import annotations

import functools
import html
import math
from typing import Any

from .. import pareto
from .._budget import format_count
from ..runs import Trial
from ._data import ReportData

PALETTE = ["#1F77B4", "#D62728", "#2CA02C", "#FF7F0E", "#9467BD", "#8C564B", "#E377C2", "#17BECF", "#BCBD22", "#7F7F7F"]
SYMBOLS = ["circle", "square", "diamond", "triangle-up", "pentagon", "hexagon", "star-triangle-up", "triangle-down", "cross", "x"]
PUBLISHED_SYMBOLS = ["star", "x-thin-open", "asterisk-open", "hourglass", "bowtie", "y-up-open", "star-diamond", "hash-open",
                     "star-triangle-down", "circle-cross-open", "square-x-open", "diamond-wide"]
PUBLISHED_COLOURS = ["#444444", "#888888", "#AA7733", "#557799", "#997799", "#779955"]
SELECTED_UID = "selected"
FRONT_UID = "front"


def published_method(series: str) -> str | None:
    """The smhsearch method a published series is an instance of (so it shares that method's colour), if any."""
    s = series.lower()
    for prefix, method in (("smh", "smh"), ("width multiplier", "width"), ("hashednets", "hashed1"), ("1x hash", "hashed1"),
                           ("2x hash", "hashed2"), ("10x hash", "hashed10"), ("dense resnet", "dense"),
                           ("efficientnet family", "dense"), ("equal-size dense", "dense"), ("trp", "lowrank"),
                           ("low-rank", "lowrank"), ("random edge removal", "prune")):
        if s.startswith(prefix):
            return method
    return None


def colours(methods: list[str]) -> dict[str, str]:
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(methods)}


def symbols(archs: list[str]) -> dict[str, str]:
    return {a: SYMBOLS[i % len(SYMBOLS)] for i, a in enumerate(archs)}


def _fmt(key: str, v: Any) -> str:
    if v is None:
        return "-"
    if key in ("val_acc", "test_acc", "best_val_acc") and isinstance(v, (int, float)):
        return f"{100 * v:.2f}%"
    if key in ("stored_params", "virtual_params", "flops", "compact_bytes", "stored_bytes") and isinstance(v, (int, float)):
        return f"{format_count(int(v))} ({int(v):,})"
    if isinstance(v, float):
        return f"{v:,.2f}"
    return str(v)


def hover_text(t: Trial, epochs: int) -> str:
    """The full configuration and every metric of a trial, as hover HTML."""
    lines = [f"<b>#{t.number} {html.escape(t.label)}</b>", f"status: {t.status}"
             + (f" at epoch {t.get('epoch')} of {epochs} (accuracy is a lower bound)" if t.status == "early_stopped" else "")]
    lines += [f"{k}: {html.escape(str(v))}" for k, v in t.config.items()]
    if t.details:
        lines.append(html.escape(f"{t.method}: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                           for k, v in t.details.items())))
    lines += [f"{k}: {html.escape(_fmt(k, v))}" for k, v in t.metrics.items()]
    size, count = pareto._num(t.get("stored_bytes")), pareto._num(t.get("stored_params"))
    if size is not None and count:
        lines.append(f"bits per stored parameter: {8 * size / count:.2f} (the whole file)")
    return "<br>".join(lines)


def _group(trials: list[Trial]) -> dict[tuple[str, str, str], list[Trial]]:
    out: dict[tuple[str, str, str], list[Trial]] = {}
    for t in trials:
        if t.status in ("complete", "early_stopped"):
            out.setdefault((t.method, t.arch, t.status), []).append(t)
    return out


def figure(data: ReportData, axis: str) -> dict[str, Any]:
    """Accuracy (in %) against one cost axis: trials by method and architecture, the front, published points, the pick.

    A plain plotly figure dict (``{"data": [trace, ...], "layout": {...}}``), written as plotly.js takes it: building
    it through plotly's validated graph objects took half a second of the report command's second."""
    acc_key, sense = data.acc_key, pareto.AXES[axis]["sense"]
    col, sym = colours(data.methods), symbols(data.archs)
    traces: list[dict[str, Any]] = []
    for (method, arch, status), group in sorted(_group(data.trials).items()):
        pts = [t for t in group if pareto._num(t.get(axis)) is not None and pareto._num(t.get(acc_key)) is not None]
        if not pts:
            continue
        early = status == "early_stopped"
        traces.append(
            dict(
                type="scatter",
                x=[float(t.get(axis)) for t in pts],
                y=[100 * float(t.get(acc_key)) for t in pts],
                mode="markers",
                name=f"{method} · {arch}" + (" (stopped early)" if early else ""),
                legendgroup=method,
                marker=dict(
                    color=col[method],
                    symbol=sym[arch] + ("-open" if early else ""),
                    size=11 if not early else 10,
                    opacity=0.55 if early else 0.95,
                    line=dict(width=1.5 if early else 0.5, color=col[method] if early else "#222"),
                ),
                text=[hover_text(t, data.epochs) for t in pts],
                customdata=[t.number for t in pts],
                hovertemplate="%{text}<extra></extra>",
                uid=f"{method}|{arch}|{status}",
            )
        )
    fr = data.fronts[axis]
    if fr.step:
        traces.append(
            dict(
                type="scatter",
                x=[x for x, _ in fr.step],
                y=[100 * a for _, a in fr.step],
                mode="lines",
                name="non-dominated front",
                line=dict(color="#111", width=1.5, dash="dot"),
                hoverinfo="skip",
                uid=FRONT_UID,
            )
        )
    if axis in ("stored_params", "stored_bytes"):  # the papers' sizes: parameters, and bytes where they give them
        size = (lambda p: p.params) if axis == "stored_params" else (lambda p: p.bytes)
        shown = [p for p in data.published if size(p) is not None]
        series = sorted({p.series for p in shown})
        grey = iter(PUBLISHED_COLOURS * 4)
        for i, s in enumerate(series):
            pts = [p for p in shown if p.series == s]
            # a paper's series of a method this run has takes that method's colour, with a marker of its own
            colour = col.get(published_method(s) or "", None) or next(grey)
            traces.append(
                dict(
                    type="scatter",
                    x=[size(p) for p in pts],
                    y=[p.accuracy for p in pts],
                    mode="markers",
                    name=f"published: {s}",
                    legendgroup="published",
                    **({"legendgrouptitle": {"text": "published (test accuracy)"}} if i == 0 else {}),
                    marker=dict(
                        symbol=PUBLISHED_SYMBOLS[i % len(PUBLISHED_SYMBOLS)],
                        size=11,
                        opacity=0.8,
                        color=colour,
                        line=dict(width=1.5, color=colour),
                    ),
                    text=[
                        f"<b>{html.escape(s)}</b><br>{html.escape(p.arch)} on {html.escape(p.dataset)}<br>"
                        f"{p.params:,.0f} parameters"
                        + (f", {p.bytes:,.0f} bytes" if p.bytes is not None else "")
                        + f", {p.accuracy:.2f}% top-1 (test)<br>{html.escape(p.source)}, {html.escape(p.where)}"
                        + (f"<br>{html.escape(p.note)}" if p.note else "")
                        for p in pts
                    ],
                    hovertemplate="%{text}<extra></extra>",
                    uid=f"published|{s}",
                )
            )
    best = data.best_under(None)
    on_axis = best is not None and pareto._num(best.get(axis)) is not None
    traces.append(
        dict(
            type="scatter",
            x=[float(best.get(axis))] if on_axis else [],
            y=[100 * float(best.get(acc_key))] if on_axis else [],
            mode="markers",
            name="best under the budget",
            marker=dict(symbol="circle-open", size=24, color="#E4002B", line=dict(width=3)),
            hoverinfo="skip",
            uid=SELECTED_UID,
        )
    )
    layout = dict(
        title=dict(text=f"{pareto.ACCURACY[acc_key]} vs {pareto.AXES[axis]['title']}"
                        + (" (higher is better on both)" if sense == "max" else " (up and to the left is better)")),
        xaxis=dict(title=pareto.AXES[axis]["title"], type="log"),
        yaxis=dict(title=f"{pareto.ACCURACY[acc_key]} (%)"),
        template=_template(), height=660, margin=dict(l=60, r=20, t=60, b=30), hoverlabel=dict(align="left"),
        legend=dict(orientation="h", y=-0.2, yanchor="top", groupclick="toggleitem"),
    )
    return {"data": traces, "layout": layout}


@functools.cache
def _template() -> dict[str, Any]:
    """plotly's ``plotly_white`` template as plotly.js takes it (an object, not the name)."""
    import plotly.io as pio

    return pio.templates["plotly_white"].to_plotly_json()


def hypervolume_table(data: ReportData) -> list[list[str]]:
    """Rows (method, one hypervolume per axis) for the page."""
    rows = []
    for m in data.methods:
        row = [m]
        for axis in pareto.AXES:
            v = data.hypervolumes[axis].get(m)
            row.append("-" if v is None or math.isnan(v) else f"{v:.4f}")
        rows.append(row)
    return rows
