"""Accuracy against bytes: every method at 16, 8, 4 and 1 bit, k-means, PTQ and QAT, entropy coding, Deep Compression.

Settings (each training through the one job path, ``smhsearch.job.run_job``, as a search trial):
- ``embedded``: ResNet-8 on the embedded Fashion-MNIST subset;
- ``mnist-mlp``: LeNet-300-100 (``lenet300_100``) on MNIST's first 17,435 training images (all that is
  available here; ``../shared/data/mnist``), Deep Compression's MNIST network.

Each method (dense, SMH, HashedNets, pruning, low-rank, width) at one budget (10% of the dense
model's parameters by default) is trained in float32 and at each quantisation-aware precision
(``--qat``: 8, 4, 1 bit, k-means 4), on ``--seeds`` seeds. Post-training precisions (``--ptq``:
16, 8, 4 bits, k-means 16) need no training of their own: PTQ snaps a trained float model to its
grid, so each is the float run's weights (batch-norm statistics included) loaded into the method
at that precision and quantised, exactly what a trial at that precision does after training.
Every quantised row is also stored entropy-coded (``+e``: same model, smaller file). Two presets
run beside them: ``binaryconnect`` (the dense model at 1 bit, QAT) and ``deep_compression``
(pruning to ``--dc-budget``, 8% by default as the paper's LeNet-300-100, k-means 32 QAT, entropy).

A row records the test accuracy (mean, sd over seeds), the model file's bytes (``stored_bytes``:
the compact file, or a float32 dense model's safetensors file), bytes per stored parameter, and
how many times smaller than the float32 dense file it is. The targets are checked:
SMH at 8 bits within 0.3 points of float32, at 4 bits QAT within 1 point; Deep Compression on
LeNet-300-100 >= 30x smaller than float32 with <= 0.3 points more error than the dense model.

    python benchmarks/bytes.py                       # both settings, 3 seeds, 2 workers (about an hour on 2 CPU cores)
    python benchmarks/bytes.py --settings mnist-mlp --methods smh dense --seeds 1
    python benchmarks/bytes.py --smoke               # a minute: 256 images, 1 epoch, 1 seed; checks the script

Writes benchmarks/results/bytes-<device>.json and .md (``bytes-smoke-<device>.*`` for ``--smoke``,
which git ignores). Finished trainings are kept in the JSON with the learning-rate multipliers their
method derived, so an interrupted run resumes, and a method whose rule has changed trains again.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from smhsearch.data import load_dataset
from smhsearch.data._splits import TensorSplit
from smhsearch.job import JobSpec, run_job
from smhsearch.methods._schema import build_config
from smhsearch.train import TrainConfig, TrainingDiverged

from _common import add_device_argument, parse_device, rate_fingerprint  # type: ignore[import-not-found]
from _harness import ResultsFile, pool  # type: ignore[import-not-found]

SETTINGS = {  # arch, epochs, batch size, lr
    "embedded": dict(arch="resnet8", epochs=5, batch_size=128, lr=0.05),
    "mnist-mlp": dict(arch="lenet300_100", epochs=10, batch_size=50, lr=0.05),
}
METHODS = ("dense", "smh", "hashednets", "prune", "lowrank", "width")
PRESETS = ("binaryconnect", "deep_compression")
QAT = ("8/qat", "4/qat", "1/qat", "kmeans:4/qat")
PTQ = ("16", "8", "4", "kmeans:16")


def precision(text: str) -> dict:
    """``8/qat`` -> {"bits": 8, "quant": "qat"}; ``32`` -> {} (float32)."""
    from smhsearch.methods._precision import parse_bits

    bits, _, quant = text.partition("/")
    b = parse_bits(bits)
    return {} if b == 32 else {"bits": b, "quant": quant or "ptq"}


def config_for(method: str, budget: float, prec: dict, seed: int, entropy: bool = False):
    extra = {"scale": "learnable"} if method == "smh" else {}
    axes = {"budget": budget, **extra, **prec, **({"entropy": True} if entropy else {})}
    return build_config(method, axes, {}, seed=seed)


def current_rates(setting: str, method: str, budget: float) -> dict[str, float]:
    """The SGD multipliers ``method`` derives now in ``setting`` (float32): stored with each row, and a row is
    reused only while they match, so a change of one method's rule trains that method's rows again."""
    import smhsearch

    cfg = config_for(method, budget, {}, 0)

    def build() -> torch.nn.Module:
        model = smhsearch.create_model(SETTINGS[setting]["arch"], in_channels=1, num_classes=10)
        return smhsearch.compress(model, cfg)

    return rate_fingerprint(build, "sgd")


def subset(data, n: int | None):
    if n is None:
        return data
    cut = lambda s, k: TensorSplit(s.x[:k], s.y[:k], s.mean, s.std, s.augment)  # noqa: E731
    return dataclasses.replace(data, train=cut(data.train, n), val=cut(data.val, max(1, n // 4)), test=cut(data.test, n))


def dataset(setting: str, n: int | None):
    if setting == "mnist-mlp":
        from hashednets_mnist import mnist_17k  # type: ignore[import-not-found]

        return subset(mnist_17k(), n)
    return subset(load_dataset("fashion-mnist-small"), n)


def _measure(model, data) -> dict:
    from smhsearch import measure
    from smhsearch.train import evaluate

    acc, _ = evaluate(model.eval(), data.test)
    return {"test_acc": acc, "stored_bytes": measure.stored_bytes(model), "stored_params": measure.stored_parameters(model)}


def _ptq(trained, method: str, budget: float, prec_text: str, seed: int, entropy: bool, data) -> dict:
    """The float run's trained model at a post-training precision: its state loaded into the method at that
    precision, snapped to the grid and measured (what a PTQ trial does after the same training)."""
    import smhsearch
    from smhsearch.methods import CompressedModel

    cfg = config_for(method, budget, precision(prec_text), seed, entropy)
    if not isinstance(trained, CompressedModel):  # the dense model: itself, at the precision
        model = smhsearch.compress(trained, cfg)
    else:
        model = smhsearch.compress(smhsearch.create_model(trained.arch["name"], **trained.arch["kwargs"]), cfg)
        model.load_state_dict(trained.state_dict())
    return _measure(smhsearch.quantize(model), data)


def one_seed(job: tuple) -> list[dict]:
    """Every row of one (setting, method, seed): the float run and its PTQ precisions, then each QAT run (each +e)."""
    setting, method, seed, budget, qat, ptq, epochs, n, threads = job
    torch.set_num_threads(threads)
    s, data = SETTINGS[setting], dataset(setting, n)
    cfg_train = TrainConfig(epochs=epochs, batch_size=s["batch_size"], lr=s["lr"], seed=seed)
    rows = []

    def train(prec_text: str, entropy: bool = False):
        spec = JobSpec(s["arch"], config_for(method, budget, precision(prec_text), seed, entropy), train=cfg_train)
        t0 = time.perf_counter()
        r = run_job(spec, data=data, device=torch.device("cpu"))
        return r, time.perf_counter() - t0

    runs = ["32", *qat] if method not in PRESETS else ["preset"]
    for prec_text in runs:
        row = {"setting": setting, "method": method, "precision": prec_text, "seed": seed, "budget": budget}
        try:
            r, secs = train("32" if prec_text == "preset" else prec_text)
        except TrainingDiverged as e:
            rows.append({**row, "diverged": str(e)})
            continue
        m = r.metrics
        rows.append({**row, "test_acc": m["test_acc"], "stored_bytes": m["stored_bytes"], "stored_params": m["stored_params"],
                     "seconds": secs, "entropy": bool(getattr(r.model, "config", None) and r.model.config.entropy)})
        if prec_text != "32" and prec_text != "preset" or method in PRESETS and not r.model.config.entropy:
            import copy

            coded = copy.deepcopy(r.model)  # the same trained model, its file entropy-coded
            coded.config = dataclasses.replace(coded.config, entropy=True)
            rows.append({**rows[-1], "precision": rows[-1]["precision"] + "+e", "entropy": True,
                         **{k: v for k, v in _measure(coded, data).items() if k == "stored_bytes"}, "seconds": 0.0})
        if prec_text == "32" and method not in PRESETS:
            for p in ptq:
                rows.append({**row, "precision": p, **_ptq(r.model, method, budget, p, seed, False, data), "seconds": 0.0})
                if precision(p)["bits"] != 16:
                    rows.append({**row, "precision": p + "+e", "entropy": True,
                                 **_ptq(r.model, method, budget, p, seed, True, data), "seconds": 0.0})
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    out = []
    keys = sorted(
        {(r["setting"], r["method"], r["precision"]) for r in rows}, key=lambda k: (k[0], _order(k[1]), _prec_order(k[2]))
    )
    for setting, method, prec in keys:
        group = [r for r in rows if (r["setting"], r["method"], r["precision"]) == (setting, method, prec) and "test_acc" in r]
        if not group:
            continue
        accs = [r["test_acc"] for r in group]
        out.append(
            {
                "setting": setting,
                "method": method,
                "precision": prec,
                "seeds": len(group),
                "test_acc_mean": statistics.mean(accs),
                "test_acc_sd": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                "stored_bytes": group[0]["stored_bytes"],
                "stored_params": group[0]["stored_params"],
            }
        )
    return out


def _order(method: str) -> int:
    return (list(METHODS) + list(PRESETS)).index(method)


def _prec_order(p: str) -> tuple:
    base = p.removesuffix("+e")
    order = ["32", "16", "8", "8/qat", "4", "4/qat", "1/qat", "kmeans:16", "kmeans:4/qat", "preset"]
    return (order.index(base) if base in order else len(order), p.endswith("+e"))


def targets(summary: list[dict]) -> list[str]:
    out = []
    by = {(r["setting"], r["method"], r["precision"]): r for r in summary}
    for setting in sorted({r["setting"] for r in summary}):
        ref = by.get((setting, "smh", "32"))
        for prec, slack in (("8", 0.3), ("4/qat", 1.0)):
            r = by.get((setting, "smh", prec))
            if ref and r:
                gap = 100 * (ref["test_acc_mean"] - r["test_acc_mean"])
                out.append(
                    f"{setting}: SMH {prec} is {gap:+.2f} points below float32 (target <= {slack}): "
                    f"{'met' if gap <= slack else 'NOT met'}"
                )
        dense, dc = by.get((setting, "dense", "32")), by.get((setting, "deep_compression", "preset"))
        if dense and dc and setting == "mnist-mlp":
            ratio, gap = dense["stored_bytes"] / dc["stored_bytes"], 100 * (dense["test_acc_mean"] - dc["test_acc_mean"])
            ok = ratio >= 30 and gap <= 0.3
            out.append(
                f"{setting}: Deep Compression is {ratio:.1f}x smaller than float32 dense with {gap:+.2f} points more error "
                f"(target >= 30x and <= 0.3): {'met' if ok else 'NOT met'}"
            )
    return out


def table(summary: list[dict]) -> str:
    lines = [
        "| setting | method | precision | seeds | test acc % | stored bytes | bytes / stored param | "
        "x smaller than float32 dense |",
        "|---|---|---|---|---|---|---|---|",
    ]
    dense = {r["setting"]: r["stored_bytes"] for r in summary if (r["method"], r["precision"]) == ("dense", "32")}
    for r in summary:
        acc = f"{100 * r['test_acc_mean']:.2f}" + (f" ± {100 * r['test_acc_sd']:.2f}" if r["seeds"] > 1 else "")
        ratio = f"{dense[r['setting']] / r['stored_bytes']:.1f}" if r["setting"] in dense else "-"
        lines.append(f"| {r['setting']} | {r['method']} | {r['precision']} | {r['seeds']} | {acc} | {r['stored_bytes']:,} | "
                     f"{r['stored_bytes'] / r['stored_params']:.3f} | {ratio} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--methods", nargs="+", default=list(METHODS + PRESETS), choices=list(METHODS + PRESETS))
    p.add_argument(
        "--qat", nargs="*", default=list(QAT), help=f"quantisation-aware precisions, each a training (default: {' '.join(QAT)})"
    )
    p.add_argument(
        "--ptq", nargs="*", default=list(PTQ), help=f"post-training precisions of each float run (default: {' '.join(PTQ)})"
    )
    p.add_argument("--budget", type=float, default=0.1, help="stored parameters as a fraction of the dense model (default 0.1)")
    p.add_argument(
        "--dc-budget", type=float, default=0.08, help="deep_compression's budget (default 0.08, the paper's LeNet-300-100)"
    )
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, help="default: each setting's own")
    p.add_argument("--workers", type=int, default=2, help="trainings at once, each on one thread (default 2)")
    p.add_argument("--smoke", action="store_true", help="256 images, 1 epoch, 1 seed, the embedded setting, smh and dense")
    add_device_argument(p)
    a = p.parse_args()
    device = parse_device(a.device)
    if device.type != "cpu":
        p.error("--device: this benchmark's workers train on the CPU")
    for text in [*a.qat, *a.ptq]:
        try:
            precision(text)
        except ValueError as e:
            p.error(f"--qat/--ptq: {e}")
    n = None
    if a.smoke:
        a.settings, a.methods, a.seeds, a.epochs, n = ["embedded"], ["dense", "smh", "deep_compression"], 1, 1, 256
        a.qat, a.ptq = ["4/qat"], ["8"]
    results = ResultsFile("bytes-smoke" if a.smoke else "bytes", device)
    protocol = {"budget": a.budget, "dc_budget": a.dc_budget, "epochs": a.epochs, "subset": n, "qat": a.qat, "ptq": a.ptq}
    old = results.old
    budget_of = lambda m: a.dc_budget if m == "deep_compression" else a.budget  # noqa: E731
    rates = {(st, m): current_rates(st, m, budget_of(m)) for st in SETTINGS for m in METHODS + PRESETS}
    done = (
        {
            (r["setting"], r["method"], r["seed"])
            for r in old.get("rows", [])
            if r.get("rates") == rates[r["setting"], r["method"]]
        }
        if old.get("protocol") == protocol
        else set()
    )
    rows = [r for r in old.get("rows", []) if (r["setting"], r["method"], r["seed"]) in done]
    jobs = [(st, m, seed, budget_of(m), a.qat, a.ptq, a.epochs or SETTINGS[st]["epochs"], n,
             1 if a.workers > 1 else torch.get_num_threads())
            for st in a.settings for seed in range(a.seeds) for m in a.methods if (st, m, seed) not in done]
    results.trained = bool(jobs)

    def check() -> (
        None
    ):  # each setting's data, loaded here: without it (MNIST lives in ../shared only) exit 2 before any worker starts
        for st in {j[0] for j in jobs}:
            dataset(st, n)

    for got in pool(one_seed, jobs, a.workers, check=check):
        got = [{**r, "rates": rates[r["setting"], r["method"]]} for r in got]
        rows += got
        for r in got:
            print(f"  {r['setting']:9s} {r['method']:16s} {r['precision']:14s} seed {r['seed']}: "
                  + (f"{100 * r['test_acc']:.2f}%  {r['stored_bytes']:>9,} B" if "test_acc" in r else "diverged"), flush=True)
        results.write({"protocol": protocol, "complete": False, "rows": rows})
    summary = summarize(rows)
    notes = targets(summary)
    out = results.write({"protocol": protocol, "complete": True, "summary": summary, "targets": notes, "rows": rows})
    results.write_md(
        f"Test accuracy (mean ± sd over the seeds column's seeds) against the model file's bytes; budget {a.budget:g} "
        "of the dense model's "
        f"parameters (deep_compression: {a.dc_budget:g}). `+e`: the same model's file entropy-coded.\n\n"
        + table(summary)
        + "\n"
        + "\n".join(f"- {t}" for t in notes)
        + "\n"
    )
    print(table(summary) + "\n".join(notes) + f"\nwrote {out}")


if __name__ == "__main__":
    main()
