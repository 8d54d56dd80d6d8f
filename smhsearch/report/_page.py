"""One self-contained HTML page: plotly.js embedded once, three fronts, the budget control, the tables."""

from __future__ import annotations

import html
import json
import math
from typing import Any

from .. import pareto
from .._version import __version__
from ._data import COLUMNS, ReportData
from ._figures import SELECTED_UID, figure, hypervolume_table

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1500px;padding:0 24px 48px;color:#222}
h1{font-size:1.5rem;margin:20px 0 4px} h2{font-size:1.15rem;margin:28px 0 8px}
.meta{color:#555;font-size:.9rem} \
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(620px,1fr));gap:12px} .fig{min-width:0}
#budget{background:#f6f7f9;border:1px solid #dde;border-radius:8px;padding:12px 16px;position:sticky;top:0;z-index:10}
#budget input[type=range]{width:min(640px,60vw);vertical-align:middle} #budget-input{width:7em}
#budget-result{margin-top:6px;font-weight:600} #budget-result.none{color:#B00020}
table{border-collapse:collapse;font-size:.85rem;width:100%} \
th,td{border-bottom:1px solid #e3e3e3;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#fafafa;cursor:pointer;user-select:none;position:sticky;top:0;white-space:nowrap} \
th.asc::after{content:" \\25B2"} th.desc::after{content:" \\25BC"}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap} \
tr.chosen{background:#fff2c6} tr.flash{outline:2px solid #E4002B}
tr.failed td,tr.interrupted td{color:#8a1c1c} tr.early_stopped td{color:#666} \
td.err{max-width:420px;font-family:monospace;font-size:.78rem;white-space:pre-wrap}
.note{color:#555;font-size:.85rem;max-width:1100px}
"""

SCRIPT = (
    r"""
(function () {
  const D = JSON.parse(document.getElementById('report-data').textContent);
  const AXES = D.axes;
  function parseCount(text) {
    const m = /^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMgG]?)\s*$/.exec(text);
    if (!m) return null;
    const mult = {'': 1, 'k': 1e3, 'm': 1e6, 'g': 1e9}[m[2].toLowerCase()];
    return parseFloat(m[1]) * mult;
  }
  function fmtCount(n) {
    if (n >= 1e9) return (n / 1e9).toFixed(2) + 'G';
    if (n >= 1e6) return (n / 1e6).toFixed(2) + 'M';
    if (n >= 1e3) return (n / 1e3).toFixed(1) + 'K';
    return String(Math.round(n));
  }
  // The same rule as `smhsearch pick`: finished trials within the budget, most accurate first,
  // then fewer stored parameters, then higher throughput, then the earlier trial.
  function bestUnder(budget) {
    const ok = D.trials.filter(t => t.status === 'complete' && t.acc !== null && t.stored_params !== null"""
    r""" && t.stored_params <= budget);
    ok.sort((a, b) => (b.acc - a.acc) || (a.stored_params - b.stored_params)"""
    r""" || ((b.throughput || 0) - (a.throughput || 0)) || (a.number - b.number));
    return ok.length ? ok[0] : null;
  }
  function traceIndex(gd, uid) { return gd.data.findIndex(t => t.uid === uid); }
  function select(budget) {
    const best = bestUnder(budget);
    const out = document.getElementById('budget-result');
    out.dataset.budget = String(budget);
    out.dataset.trial = best ? String(best.number) : '';
    if (best) {
      out.className = '';
      out.textContent = 'Best under ' + fmtCount(budget) + ' stored parameters: #' + best.number + ' ' + best.label + ' \u2014 '
        + D.acc_name + ' ' + (100 * best.acc).toFixed(2) + '%, ' + fmtCount(best.stored_params) + ' stored'
        + (best.throughput ? ', ' + Math.round(best.throughput).toLocaleString('en-US') + ' samples/s' : '')
        + (best.flops ? ', ' + fmtCount(best.flops) + ' FLOPs' : '');
    } else {
      const sizes = D.trials.filter(t => t.status === 'complete' && t.stored_params !== null).map(t => t.stored_params);
      out.className = 'none';
      out.textContent = 'No finished trial fits under ' + fmtCount(budget) + ' stored parameters'
        + (sizes.length ? '; the smallest stores ' + fmtCount(Math.min.apply(null, sizes)) + '.' : '.');
    }
    for (const axis of AXES) {
      const gd = document.getElementById('fig-' + axis);
      if (!gd || !gd.data) continue;
      const i = traceIndex(gd, D.selected_uid);
      if (i >= 0) {
        const has = best && best[axis] !== null;
        Plotly.restyle(gd, {x: [has ? [best[axis]] : []], y: [has ? [100 * best.acc] : []]}, [i]);
      }
      if (axis === 'stored_params') {
        Plotly.relayout(gd, {shapes: [{type: 'line', xref: 'x', yref: 'paper', x0: budget, x1: budget, y0: 0, y1: 1,
                                       line: {color: '#E4002B', width: 1.5, dash: 'dash'}}]});
      }
    }
    document.querySelectorAll('#trials tbody tr').forEach(tr => {
      tr.classList.toggle('chosen', best !== null && tr.dataset.number === String(best.number));
    });
  }
  function initBudget() {
    const range = document.getElementById('budget-range'), input = document.getElementById('budget-input');
    if (!range) return;
    // Pin the size axis to its data range, so the budget line can move beyond it without stretching the axis.
    const gd = document.getElementById('fig-stored_params');
    if (gd && gd.layout && gd.layout.xaxis && gd.layout.xaxis.range) {
      Plotly.relayout(gd, {'xaxis.range': gd.layout.xaxis.range.slice(), 'xaxis.autorange': false});
    }
    const fromRange = () => { const b = Math.pow(10, parseFloat(range.value)); input.value = fmtCount(b); select(b); };
    range.addEventListener('input', fromRange);
    input.addEventListener('change', () => {
      const b = parseCount(input.value);
      input.setCustomValidity(b === null ? 'a count such as 20000, 20K or 5.3M' : '');
      if (b === null) { input.reportValidity(); return; }
      range.value = String(Math.min(parseFloat(range.max), Math.max(parseFloat(range.min), Math.log10(b))));
      select(b);
    });
    select(parseCount(input.value));
  }
  function initTable() {
    const table = document.getElementById('trials');
    table.querySelectorAll('th').forEach((th, col) => {
      th.addEventListener('click', () => {
        const asc = !th.classList.contains('asc');
        table.querySelectorAll('th').forEach(h => h.classList.remove('asc', 'desc'));
        th.classList.add(asc ? 'asc' : 'desc');
        const numeric = th.dataset.kind !== 'text';
        const body = table.tBodies[0];
        const rows = Array.from(body.rows);
        const key = r => r.cells[col].dataset.v;
        rows.sort((a, b) => {
          const x = key(a), y = key(b);
          if (x === '' && y === '') return 0;
          if (x === '') return 1;   // empty cells last, either way
          if (y === '') return -1;
          const c = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
          return asc ? c : -c;
        });
        rows.forEach(r => body.appendChild(r));
      });
    });
  }
  function initClicks() {
    for (const axis of AXES) {
      const gd = document.getElementById('fig-' + axis);
      if (!gd || !gd.on) continue;
      gd.on('plotly_click', ev => {
        const n = ev.points[0].customdata;
        if (n === undefined || n === null) return;
        const tr = document.querySelector('#trials tbody tr[data-number="' + n + '"]');
        if (!tr) return;
        document.querySelectorAll('#trials tr.flash').forEach(r => r.classList.remove('flash'));
        tr.classList.add('flash');
        tr.scrollIntoView({block: 'center'});
      });
    }
  }
  window.addEventListener('load', () => {
    // Each figure was drawn while the page was still being parsed; size it to its final grid cell.
    for (const axis of AXES) { const gd = document.getElementById('fig-' + axis); if (gd) Plotly.Plots.resize(gd); }
    initTable(); initBudget(); initClicks();
  });
})();
"""
)


def _cell(key: str, kind: str, v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return '<td data-v=""></td>' if kind == "text" else '<td class="num" data-v=""></td>'
    if kind == "text":
        cls = ' class="err"' if key == "error" else ""
        return f'<td{cls} data-v="{html.escape(str(v), quote=True)}">{html.escape(str(v))}</td>'
    f = float(v)
    shown = {"acc": f"{100 * f:.2f}", "count": f"{int(f):,}", "rate": f"{f:,.1f}", "int": f"{int(f)}", "ms": f"{1e3 * f:.3g}"}[
        kind
    ]
    return f'<td class="num" data-v="{f!r}">{shown}</td>'


def trial_table(data: ReportData) -> str:
    head = "".join(f'<th data-kind="{kind}" data-key="{key}">{html.escape(title)}</th>' for key, title, kind in COLUMNS)
    body = []
    for row in data.rows():
        cells = "".join(_cell(key, kind, row.get(key)) for key, _, kind in COLUMNS)
        body.append(f'<tr class="{row["status"]}" data-number="{row["number"]}">{cells}</tr>')
    return f'<table id="trials"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _json_for_script(obj: Any) -> str:
    # "</" would end the script element early; JSON allows the escaped form.
    return json.dumps(obj, default=float).replace("</", "<\\/")


def page_data(data: ReportData) -> dict[str, Any]:
    """What the page's script reads: each trial's numbers, the axes, the accuracy's name."""
    num = pareto._num
    return {
        "axes": list(pareto.AXES),
        "acc_name": pareto.ACCURACY[data.acc_key],
        "selected_uid": SELECTED_UID,
        "trials": [
            {
                "number": t.number,
                "label": t.label,
                "status": t.status,
                "acc": num(t.get(data.acc_key)),
                "stored_params": num(t.get("stored_params")),
                "throughput": num(t.get("throughput")),
                "flops": num(t.get("flops")),
                "stored_bytes": num(t.get("stored_bytes")),
            }
            for t in data.trials
        ],
    }


def render(data: ReportData) -> str:
    """The whole page as one string."""
    import plotly.io as pio
    from plotly.offline import get_plotlyjs

    figs = []
    for axis in pareto.AXES:
        fig = figure(data, axis)
        figs.append(
            pio.to_html(
                fig,
                validate=False,
                full_html=False,
                include_plotlyjs=False,
                div_id=f"fig-{axis}",
                config={"displaylogo": False, "responsive": True, "toImageButtonOptions": {"filename": f"{data.name}-{axis}"}},
            )
        )
    sizes = [float(t.get("stored_params")) for t in data.trials
             if t.status == "complete" and pareto._num(t.get("stored_params")) is not None]
    if sizes:
        lo, hi = math.log10(min(sizes) * 0.5), math.log10(max(sizes) * 1.5)
        budget = (f'<label for="budget-range"><b>Size budget</b> (stored parameters):</label> '
                  f'<input type="range" id="budget-range" min="{lo:.4f}" max="{hi:.4f}" step="0.001" value="{hi:.4f}"> '
                  f'<input type="text" id="budget-input" value="{10 ** hi:.0f}" title="a count such as 20000, 20K or 5.3M">'
                  '<div id="budget-result" data-trial=""></div>')
    else:
        budget = ('<b>Size budget</b>: no trial has finished yet, so there is nothing to choose from.'
                  '<div id="budget-result" data-trial=""></div>')
    hv_rows = "".join("<tr>" + "".join(f'<td{" class=num" if i else ""}>{html.escape(c)}</td>' for i, c in enumerate(r)) + "</tr>"
                      for r in hypervolume_table(data))
    refs = "; ".join(f"{pareto.AXES[a]['title']}: {ref[0]:,.4g}" for a, ref in data.references.items() if not math.isnan(ref[0]))
    sources = sorted({(p.source, p.where, p.file) for p in data.published})
    published = ("<ul>" + "".join(f"<li>{html.escape(s)}, {html.escape(w)} <span class=meta>({html.escape(f)})</span></li>"
                                  for s, w, f in sources) + "</ul>") if sources else \
        (f"<p class=note>No published point matches this run (dataset <code>{html.escape(data.dataset)}</code>, architectures "
         f"{html.escape(', '.join(data.archs))}). Published points are overlaid for CIFAR-10 ResNets, ImageNet EfficientNets and "
         "MNIST MLPs.</p>")
    counts = ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in sorted(data.counts.items()))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>smhsearch report: {html.escape(data.name)}</title>
<style>{CSS}</style>
<script type="text/javascript">{get_plotlyjs()}</script>
</head><body>
<h1>smhsearch report: {html.escape(data.name)}</h1>
<div class="meta">run <code>{html.escape(data.run_path)}</code> · dataset <code>{html.escape(data.dataset)}</code> ·
{data.epochs} epochs per trial · {len(data.trials)} trials ({html.escape(counts)}) · fronts on {pareto.ACCURACY[data.acc_key]} ·
generated {data.generated} by smhsearch {__version__}</div>
<div class="meta">training: {html.escape(", ".join(f"{k}={v}" for k, v in data.training.items() if v is not None))}</div>
<div class="meta" id="speed-source">inference speed (throughput, latency) measured on: {html.escape(data.speed_source)}</div>
<section id="budget">{budget}</section>
<p class="note">Each point is a trial: colour is the method, the marker is the architecture; \
open markers were stopped early by the
scheduler (their accuracy, from fewer epochs, is a lower bound and they are on no front). The dotted line joins the non-dominated
finished trials. Published points are test accuracies from the papers; this run's points are {pareto.ACCURACY[data.acc_key]}.
Click a point to find its row in the table; click a column header to sort.</p>
<section class="grid">{"".join(f'<div class="fig">{f}</div>' for f in figs)}</section>
<h2>Hypervolume of each method's front</h2>
<p class="note">The area a method's finished trials dominate in (log10 cost, accuracy), \
from a reference point shared by all methods of
this run: accuracy 0 and a cost twice as bad as the run's worst ({html.escape(refs) or "no finished trial"}). \
Units: accuracy × decades;
larger is better; comparable within this run only.</p>
<table id="hypervolume"><thead><tr><th>method</th>\
{"".join(f"<th>{html.escape(pareto.AXES[a]['title'])}</th>" for a in pareto.AXES)}</tr></thead>
<tbody>{hv_rows}</tbody></table>
<h2>All trials</h2>
{trial_table(data)}
<h2>Published points</h2>
{published}
<script type="application/json" id="report-data">{_json_for_script(page_data(data))}</script>
<script type="text/javascript">{SCRIPT}</script>
</body></html>
"""
