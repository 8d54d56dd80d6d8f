"""The interactive report of a run: one self-contained HTML file (plotly.js embedded once, works offline).

Front data comes from :mod:`smhsearch.pareto` (:func:`report_data`); :func:`figure` draws
it; :func:`render` lays out the page. Example::

    from smhsearch.report import write_report
    write_report("runs/quick", "reports/quick.html")
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ._data import ReportData, report_data
from ._figures import figure
from ._page import page_data, render

if TYPE_CHECKING:
    from ..runs import Run

__all__ = ["ReportData", "report_data", "figure", "render", "page_data", "write_report"]


def write_report(run: "str | os.PathLike | Run", out: str | os.PathLike | None = None, acc_key: str = "val_acc") -> Path:
    """Write the report of ``run`` (a run folder, or a :class:`~smhsearch.runs.Run` already read) to ``out``
    (default ``reports/<name>.html``)."""
    from ..runs import Run, load_run

    if not isinstance(run, Run):
        run = load_run(run)
    page = render(report_data(run, acc_key))
    path = Path(out) if out is not None else Path("reports") / f"{run.name}.html"
    from .._atomic import atomic_path

    with atomic_path(path, fsync=False) as tmp:  # a report can be written again; only the half file is avoided
        tmp.write_text(page, encoding="utf-8")
    return path
