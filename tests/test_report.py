"""The report of a real quick.yaml run: its data against pareto.py, and the page in a real headless Chromium.

The browser test drives Debian's chromium through Playwright (``make test`` installs the
package). Where chromium cannot be installed it skips and says why, except in CI
(``SMHSEARCH_REQUIRE_BROWSER=1``, set by ``.ci/run``), where that is a failure.
A screenshot of the page is kept in ``test-artifacts/``.
"""

from __future__ import annotations

import os
import re
import shutil
from html.parser import HTMLParser

import pytest

from smhsearch import pareto
from smhsearch.report import report_data, write_report
from smhsearch.report._data import COLUMNS
from smhsearch.runs import load_run

from .conftest import ROOT, smhsearch_cli

CHROMIUM = os.environ.get("SMHSEARCH_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = ROOT / "test-artifacts"


# The first test here also waits for the session's real quick.yaml run (about 85 s on 2 idle cores).
pytestmark = pytest.mark.timeout(600)


def _data(trials, dataset: str, epochs: int, arch: str):
    """A report's data for ``trials`` of a run on ``dataset``, with the papers' points for ``arch``."""
    from smhsearch.report import ReportData

    return ReportData("t", "runs/t", dataset, epochs, "val_acc", trials,
                      {a: pareto.front(trials, a) for a in pareto.AXES},
                      {a: pareto.hypervolumes(trials, a) for a in pareto.AXES},
                      {a: pareto.reference_point(trials, a) for a in pareto.AXES},
                      pareto.published_points(dataset, [arch]), {"complete": 1})

def _need_browser():
    reason = None
    if CHROMIUM is None:
        reason = "Debian's chromium is not installed (make test installs it: scripts/ensure_chromium.sh)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "playwright is not installed (pip install -e .[dev])"
    if reason:
        if os.environ.get("SMHSEARCH_REQUIRE_BROWSER") == "1":
            pytest.fail(f"the browser test must run here (SMHSEARCH_REQUIRE_BROWSER=1), but {reason}")
        pytest.skip(reason)


class _Table(HTMLParser):
    """Rows of the page's trial table: (data-number, status class, cell texts)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[int, str, list[str]]] = []
        self._in, self._cell = False, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and a.get("id") == "trials":
            self._in = True
        elif self._in and tag == "tr" and "data-number" in a:
            self.rows.append((int(a["data-number"]), a.get("class", ""), []))
        elif self._in and tag == "td":
            self._cell = ""

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None and self.rows:
            self.rows[-1][2].append(self._cell)
            self._cell = None
        elif tag == "table":
            self._in = False


SENSE = {
    "stored_params": "min",
    "throughput": "max",
    "flops": "min",
    "stored_bytes": "min",
}  # written out here, not read from pareto.AXES


def _raw_finished(run_dir) -> list[dict]:
    """The finished trials as the run folder holds them: COMPLETE in the Optuna study, metrics from trial.json."""
    import json

    import optuna

    study = optuna.load_study(study_name="quick", storage=f"sqlite:///{run_dir / 'study.db'}")
    out = []
    for t in study.trials:
        if t.state == optuna.trial.TrialState.COMPLETE:
            record = json.loads((run_dir / "trials" / f"{t.number:04d}" / "trial.json").read_text())
            assert record["status"] == "complete"
            out.append({"number": t.number, "method": t.user_attrs["config"]["method"], **record["metrics"]})
    return out


def _brute_front(rows: list[dict], axis: str, acc: str) -> set[int]:
    """Trials no other trial beats: as good on both counts and strictly better on one (equal points all stay)."""
    better = (lambda a, b: a < b) if SENSE[axis] == "min" else (lambda a, b: a > b)
    def dominates(p, q):
        no_worse = (p[axis] == q[axis] or better(p[axis], q[axis])) and p[acc] >= q[acc]
        return no_worse and (better(p[axis], q[axis]) or p[acc] > q[acc])
    return {q["number"] for q in rows if not any(dominates(p, q) for p in rows)}


def _brute_hypervolume(rows: list[dict], axis: str, acc: str, ref_cost: float) -> float:
    """Area dominated in (log10 cost, accuracy) above accuracy 0, swept as a union of rectangles."""
    import math

    sign = -1.0 if SENSE[axis] == "min" else 1.0  # turn the cost into a gain: both coordinates maximised
    pts = sorted(((sign * math.log10(r[axis]), r[acc]) for r in rows), reverse=True)
    ref = sign * math.log10(ref_cost)
    area, height = 0.0, 0.0
    for i, (u, a) in enumerate(pts):
        height = max(height, a)
        nxt = pts[i + 1][0] if i + 1 < len(pts) else ref
        area += (u - nxt) * height
    return area


def test_report_data_is_pareto_data(quick_run):
    run = load_run(quick_run)
    assert run.name == "quick" and len(run.trials) == len(run.space.candidates())
    rows = _raw_finished(quick_run)
    assert len(rows) >= 2
    data = report_data(run)
    for axis in SENSE:
        fr = data.fronts[axis]
        assert sorted(fr.points) == sorted((r["number"], float(r[axis]), float(r["val_acc"])) for r in rows)
        assert set(fr.numbers) == _brute_front(rows, axis, "val_acc") and fr.numbers
        xs = [x for _, x, _ in fr.front]
        assert xs == sorted(xs)  # by cost ascending
        worst = max(r[axis] for r in rows) * 2 if SENSE[axis] == "min" else min(r[axis] for r in rows) / 2
        hv = data.hypervolumes[axis]
        assert set(hv) == {r["method"] for r in rows}
        for method, value in hv.items():
            mine = [r for r in rows if r["method"] == method]
            assert value == pytest.approx(_brute_hypervolume(mine, axis, "val_acc", worst), rel=1e-9), (axis, method)
    best = max(rows, key=lambda r: (r["val_acc"], -r["stored_params"], r["throughput"], -r["number"]))
    assert data.best_under(None).number == best["number"]
    on_test = report_data(run, "test_acc")  # --accuracy test: the same data on test accuracy
    assert set(on_test.fronts["stored_params"].numbers) == _brute_front(rows, "stored_params", "test_acc")
    best = max(rows, key=lambda r: (r["test_acc"], -r["stored_params"], r["throughput"], -r["number"]))
    assert on_test.best_under(None).number == best["number"]
    cap = sorted(r["stored_params"] for r in rows)[1]  # a budget that rules out all but the two smallest
    fitting = [r for r in rows if r["stored_params"] <= cap]
    assert (
        data.best_under(cap).number
        == max(fitting, key=lambda r: (r["val_acc"], -r["stored_params"], r["throughput"], -r["number"]))["number"]
    )
    assert data.published == []  # fashion-mnist-small: no paper reports on it
    # the hover carries the whole config, every metric and what the method resolved (SMH's n and M)
    from smhsearch.report._figures import hover_text

    smh = [t for t in run.trials if t.method == "smh"]
    assert smh and all({"n", "M"} <= set(t.details) for t in smh)
    text = hover_text(smh[0], run.epochs)
    assert f"M={smh[0].details['M']}" in text and "budget: " in text and "stored_params: " in text


def test_published_points_are_drawn_where_dataset_and_family_match():
    from smhsearch.report import figure
    from smhsearch.runs import TrialRecord

    trials = [TrialRecord(0, "complete", {"arch": "resnet20", "method": "smh", "budget": "10%"},
                          {"stored_params": 27000, "val_acc": 0.85, "throughput": 900.0, "flops": 4e7})]
    data = _data(trials, "cifar10", 200, "resnet20")
    fig = figure(data, "stored_params")
    published = {
        t["name"].removeprefix("published: "): list(zip(t["x"], t["y"])) for t in fig["data"] if t["uid"].startswith("published|")
    }
    for p in data.published:
        assert (p.params, p.accuracy) in published[p.series]
    assert sum(len(v) for v in published.values()) == len(data.published) == 29
    # a paper's SMH series shares the colour of this run's SMH trials; series of methods the run lacks are grey
    colour = {t["uid"]: t.get("marker", {}).get("color") for t in fig["data"]}
    assert colour["published|SMH (paper)"] == colour["smh|resnet20|complete"]
    assert colour["published|Tucker"] != colour["smh|resnet20|complete"]
    # published points carry parameters only: the throughput and FLOPs figures show none
    assert not [t for t in figure(data, "throughput")["data"] if t["uid"].startswith("published|")]


def test_report_cli_writes_one_self_contained_page(quick_run, tmp_path):
    out = tmp_path / "r" / "quick.html"
    r = smhsearch_cli("report", str(quick_run), "--out", str(out))
    assert r.returncode == 0, r.stderr
    page = out.read_text()
    assert page.count("Plotly.newPlot") == len(pareto.AXES)  # one figure per cost axis
    # plotly.js is embedded once and nothing is fetched from the network
    assert len(re.findall(r"plotly\.js v\d", page)) == 1
    assert not re.search(r"<script[^>]+src=", page) and not re.search(r"<link[^>]+href=\"http", page)
    table = _Table()
    table.feed(page)
    assert [n for n, _, _ in table.rows] == [t.number for t in load_run(quick_run).trials]
    # the default place: reports/<name>.html under the working directory
    r = smhsearch_cli("report", str(quick_run), cwd=tmp_path)
    assert r.returncode == 0 and (tmp_path / "reports" / "quick.html").is_file()


@pytest.mark.parametrize("args, message", [
    (["report", "no/such/run"], "RUN: no run folder at no/such/run"),
    (["report", "{run}", "--accuracy", "train"], "--accuracy: unknown accuracy 'train'; allowed: val, test"),
    (["report", "{tmp}"], "is not a run folder: it has no space.yaml"),
])
def test_report_bad_arguments_exit_2_and_write_nothing(quick_run, tmp_path, cli, args, message):
    args = [a.format(run=quick_run, tmp=tmp_path) for a in args]
    rc, _, err = cli(*args, "--out", tmp_path / "x.html")
    assert rc == 2 and message in err, err
    assert not (tmp_path / "x.html").exists()


def test_report_in_headless_chromium(quick_run, tmp_path):
    _need_browser()
    from playwright.sync_api import sync_playwright

    run = load_run(quick_run)
    data = report_data(run)
    path = write_report(quick_run, tmp_path / "quick.html")
    problems: list[str] = []
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.on(
                "console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None
            )
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(path.resolve().as_uri())
            page.wait_for_load_state("load")
            page.wait_for_function("document.getElementById('budget-result').dataset.trial !== ''")

            # every trace has its points: the count each trace should hold, from the data
            traces = page.evaluate("""() => ['stored_params', 'throughput', 'flops'].map(a =>
                document.getElementById('fig-' + a).data.map(t => ({uid: t.uid, n: t.x.length, y: t.y.length})))""")
            for axis, drawn in zip(pareto.AXES, traces):
                assert drawn and all(t["n"] > 0 and t["n"] == t["y"] for t in drawn), (axis, drawn)
                by_uid = {t["uid"]: t["n"] for t in drawn}
                for t in run.trials:
                    if t.status in ("complete", "early_stopped"):
                        assert f"{t.method}|{t.arch}|{t.status}" in by_uid
                expected = {}
                for t in run.trials:
                    if t.status in ("complete", "early_stopped") and t.get("val_acc") is not None:
                        key = f"{t.method}|{t.arch}|{t.status}"
                        expected[key] = expected.get(key, 0) + 1
                assert {k: v for k, v in by_uid.items() if "|" in k and not k.startswith("published")} == expected
                assert by_uid["front"] == len(data.fronts[axis].step)
                assert by_uid["selected"] == 1
            # each figure fits its cell, and its x axis shows every point (log axis: the range is in decades)
            fits = page.evaluate("""() => ['stored_params', 'throughput', 'flops'].map(a => {
                const gd = document.getElementById('fig-' + a);
                const xs = gd.data.flatMap(t => Array.from(t.x)).filter(v => v > 0).map(Math.log10);
                const r = gd._fullLayout.xaxis.range;
                return [gd._fullLayout.width <= gd.parentElement.clientWidth + 1, """
                """Math.min(...xs) >= r[0] && Math.max(...xs) <= r[1]];
            })""")
            assert fits == [[True, True]] * 3

            # the budget control highlights what `pick` would choose, for every budget in the run and one below all
            sizes = sorted({int(t.get("stored_params")) for t in run.complete()})
            for budget in [sizes[0] - 1, *sizes, sizes[-1] * 10]:
                page.fill("#budget-input", str(budget))
                page.dispatch_event("#budget-input", "change")
                shown = page.get_attribute("#budget-result", "data-trial")
                chosen = pareto.pick(run.trials, pareto.Constraints(max_params=budget)).chosen
                assert shown == ("" if chosen is None else str(chosen.number)), budget
                highlighted = page.eval_on_selector_all("#trials tbody tr.chosen", "rs => rs.map(r => r.dataset.number)")
                assert highlighted == ([] if chosen is None else [str(chosen.number)])
                if chosen is None:
                    assert page.inner_text("#budget-result").startswith("No finished trial fits under")
                else:
                    x = page.evaluate("() => { const gd = document.getElementById('fig-stored_params');"
                                      " return gd.data.find(t => t.uid === 'selected').x[0]; }")
                    assert x == chosen.get("stored_params")

            # the trial table sorts by a column when its header is clicked (failed trials included, with errors)
            header = page.locator("#trials th[data-key='val_acc']")
            header.click()
            col = [k for k, _, _ in COLUMNS].index("val_acc")
            values = page.eval_on_selector_all("#trials tbody tr", f"rs => rs.map(r => r.cells[{col}].dataset.v)")
            numbers = [float(v) for v in values if v != ""]
            assert numbers == sorted(numbers) and len(numbers) == sum(t.get("val_acc") is not None for t in run.trials)
            header.click()
            values = page.eval_on_selector_all("#trials tbody tr", f"rs => rs.map(r => r.cells[{col}].dataset.v)")
            numbers = [float(v) for v in values if v != ""]
            assert numbers == sorted(numbers, reverse=True)

            ARTIFACTS.mkdir(exist_ok=True)
            page.fill("#budget-input", "20K")
            page.dispatch_event("#budget-input", "change")
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=str(ARTIFACTS / "report-quick.png"), full_page=True)
        finally:
            browser.close()
    assert problems == []
    assert all(u.startswith(("file:", "data:", "blob:", "about:")) for u in requests), requests  # works offline
    assert (ARTIFACTS / "report-quick.png").stat().st_size > 10_000


def test_published_sizes_in_bytes_are_drawn_on_the_bytes_figure():
    from smhsearch.report import figure
    from smhsearch.runs import TrialRecord

    trials = [TrialRecord(0, "complete", {"arch": "lenet300_100", "method": "prune", "budget": "8%"},
                          {"stored_params": 21000, "stored_bytes": 26000, "val_acc": 0.98, "throughput": 9e4, "flops": 3e5})]
    data = _data(trials, "mnist", 10, "lenet300_100")
    drawn = {t["name"].removeprefix("published: "): list(zip(t["x"], t["y"])) for t in figure(data, "stored_bytes")["data"]
             if t["uid"].startswith("published|")}
    with_bytes = [p for p in data.published if p.bytes is not None]
    assert with_bytes and sum(len(v) for v in drawn.values()) == len(with_bytes)
    assert (27_000.0, 98.42) in drawn["Deep Compression (prune, k-means, Huffman)"]  # 27 KB at 1.58% error
