"""`tunas-jax report W [W2 ...] --out DIR`: what searches found, against what random finds.

Reads any mix of workdirs:
- a search (`search_summary.json`): its argmax architecture, metrics.jsonl and
  controller_probabilities.jsonl;
- a standalone training (`result.json`): one trained point. It counts as
  `searched` when its architecture came from a search (named `tunas_...`),
  `preset` when trained from `preset:<name>`, `trained` otherwise;
- a random baseline (`baseline.json`): its trained architectures, `random`.

Writes into DIR (atomically, file by file) the PNG plots of
`tunas_jax.report_plots` and `report.html`, a self-contained page (plots
inlined) with the tables: searched vs random quality (the task's metric, top1
for classification) at matched latency, each
search's landing against its target, and for a multi-hardware search (several
targets) a per-device latency table of its architectures.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from search_spaces import Architecture, atomic_write, read_json
from search_spaces import load as load_architecture
from tunas_jax import report_plots
from tunas_jax.checkpointing import make_workdir
from tunas_jax.errors import UsageError
from tunas_jax.metrics_logging import METRICS_FILE, PROBABILITIES_FILE, read_metrics
from tunas_jax.multi_trial import CONFIG_FILE as STUDY_CONFIG_FILE
from tunas_jax.multi_trial import TRIALS_FILE, pareto_trials
from tunas_jax.random_baseline import BASELINE_FILE, summarize
from tunas_jax.search import ARCHITECTURE_FILE, SUMMARY_FILE
from tunas_jax.train import RESULT_FILE, RUN_FILE

REPORT_FILE = "report.html"


@dataclasses.dataclass
class TrainedPoint:
    """One trained architecture: its quality (the task's metric) against its simulated
    latency."""

    name: str
    kind: str  # 'searched', 'random', 'preset' or 'trained'
    quality: float
    quality_metric: str  # e.g. 'top1
    latency_ms: float  # in latency_metric
    end_to_end_ms: float
    latency_metric: str
    indices: list[int] | None
    workdir: str


@dataclasses.dataclass
class SearchRun:
    name: str
    workdir: str
    summary: dict[str, Any]
    architecture: Architecture
    metrics: list[dict[str, Any]]
    probabilities: list[dict[str, Any]]
    trained_quality: float | None = None  # from a train workdir of the same architecture


@dataclasses.dataclass
class Study:
    """A multi-trial study: its finished trials (trials.jsonl) and its config."""

    name: str
    workdir: str
    trials: list[dict[str, Any]]
    target_latency_ms: float


@dataclasses.dataclass
class Collection:
    searches: list[SearchRun]
    points: list[TrainedPoint]
    baselines: list[dict[str, Any]]  # baseline.json contents (+ 'workdir')
    studies: list[Study] = dataclasses.field(default_factory=list)

    @property
    def latency_metric(self) -> str:
        """The metric shared by every point, else end_to_end (the one all files have)."""
        metrics = {p.latency_metric for p in self.points} | {
            s.summary.get("latency_metric", "end_to_end") for s in self.searches}
        return metrics.pop() if len(metrics) == 1 else "end_to_end"

    @property
    def quality_metric(self) -> str:
        """The quality metric of the trained points (the task's, e.g. top1)."""
        names = sorted({p.quality_metric for p in self.points})
        if len(names) > 1:
            raise UsageError(f"workdirs: trained with different quality metrics {names}; "
                             "report runs of one task together")
        return names[0] if names else "quality"


def _point(workdir: str, kind: str | None = None) -> TrainedPoint:
    result = read_json(os.path.join(workdir, RESULT_FILE), "training result")
    arch = result.get("architecture") or {}
    if kind is None:
        run_path = os.path.join(workdir, RUN_FILE)
        run = read_json(run_path, "training run") if os.path.exists(run_path) else {}
        source = str(run.get("config", {}).get("architecture", ""))
        name = str(arch.get("name") or "")
        kind = ("preset" if source.startswith("preset:") else
                "searched" if name.startswith("tunas_") else "trained")
    end_to_end = result.get("simulated_end_to_end_latency_ms", result["simulated_latency_ms"])
    metric = result.get("quality_metric", "top1")  # results written before tasks: top1
    return TrainedPoint(name=os.path.basename(workdir.rstrip("/")), kind=kind,
                        quality=float(result[metric]), quality_metric=metric,
                        latency_ms=float(result["simulated_latency_ms"]),
                        end_to_end_ms=float(end_to_end),
                        latency_metric=result.get("latency_metric", "end_to_end"),
                        indices=arch.get("indices"), workdir=workdir)


def _search(workdir: str) -> SearchRun:
    summary = read_json(os.path.join(workdir, SUMMARY_FILE), "search summary")
    probabilities = (read_metrics(workdir, PROBABILITIES_FILE)
                     if os.path.exists(os.path.join(workdir, PROBABILITIES_FILE)) else [])
    return SearchRun(name=os.path.basename(workdir.rstrip("/")), workdir=workdir,
                     summary=summary,
                     architecture=load_architecture(os.path.join(workdir, ARCHITECTURE_FILE)),
                     metrics=read_metrics(workdir, METRICS_FILE), probabilities=probabilities)


def _study(workdir: str) -> Study:
    with open(os.path.join(workdir, TRIALS_FILE)) as f:
        trials = [json.loads(line) for line in f if line.strip()]
    config = read_json(os.path.join(workdir, STUDY_CONFIG_FILE), "multi-trial config")
    return Study(os.path.basename(workdir.rstrip("/")), workdir, trials,
                 float(config["target_latency_ms"]))


def collect(workdirs: Sequence[str]) -> Collection:
    """Read every workdir (UsageError naming one that is none of the three kinds)."""
    out = Collection([], [], [])
    for workdir in workdirs:
        workdir = os.path.abspath(workdir)
        if os.path.exists(os.path.join(workdir, SUMMARY_FILE)):
            out.searches.append(_search(workdir))
        elif os.path.exists(os.path.join(workdir, BASELINE_FILE)):
            baseline = read_json(os.path.join(workdir, BASELINE_FILE), "random baseline")
            for entry in baseline.get("architectures", []):
                run_dir = os.path.join(workdir, entry["name"])
                if os.path.exists(os.path.join(run_dir, RESULT_FILE)):
                    out.points.append(_point(run_dir, "random"))
            out.baselines.append({**baseline, "workdir": workdir})
        elif os.path.exists(os.path.join(workdir, RESULT_FILE)):
            out.points.append(_point(workdir))
        elif os.path.exists(os.path.join(workdir, TRIALS_FILE)):
            out.studies.append(_study(workdir))
        else:
            raise UsageError(f"report: {workdir} holds no {SUMMARY_FILE}, {BASELINE_FILE}, "
                             f"{RESULT_FILE} or {TRIALS_FILE}; pass search, random-baseline, "
                             "train or multi-trial workdirs")
    if not out.searches and not out.points and not out.studies:
        raise UsageError("report: no finished search or trained architecture in the workdirs")
    for search in out.searches:
        for point in out.points:
            if point.indices == list(search.architecture.indices or []):
                search.trained_quality = point.quality
    return out


def comparison(collection: Collection) -> dict[str, Any] | None:
    """Searched vs random quality at matched latency (TuNAS's claim: searched mean above the
    random median). Only points whose latency lies in a random baseline's band count, in
    the band's metric; None without a baseline in the shared metric or without points."""
    metric = collection.latency_metric
    bands = [tuple(b["latency_band_ms"]) for b in collection.baselines
             if b.get("latency_metric") == metric]

    def matched(p: TrainedPoint) -> bool:
        value = p.latency_ms if p.latency_metric == metric else p.end_to_end_ms
        return any(lo <= value <= hi for lo, hi in bands)

    searched_all = [p for p in collection.points if p.kind == "searched"]
    random_all = [p for p in collection.points if p.kind == "random"]
    searched = [p.quality for p in searched_all if matched(p)]
    random = [p.quality for p in random_all if matched(p)]
    if not searched or not random:
        return None
    q = collection.quality_metric
    stats = summarize(random, q)
    return {"latency_metric": metric, "bands_ms": [list(b) for b in bands],
            "quality_metric": q,
            "searched_n": len(searched), "searched_mean": float(np.mean(searched)),
            "searched_std": float(np.std(searched, ddof=1)) if len(searched) > 1 else 0.0,
            "random_n": len(random), "random_median": stats[f"median_{q}"],
            "random_mean": stats[f"mean_{q}"],
            "random_range": [stats[f"min_{q}"], stats[f"max_{q}"]],
            "excluded_outside_band": len(searched_all) + len(random_all) - len(searched)
            - len(random),
            "searched_mean_above_random_median": bool(np.mean(searched) > np.median(random))}


# ---- HTML -------------------------------------------------------------------------------
def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, float) else html.escape(str(v))
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _image(path: str, caption: str) -> str:
    with open(path, "rb") as f:
        data = base64.b64encode(f.read()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _device_table(search: SearchRun) -> str:
    """A multi-hardware search's architectures: ms / target ms (ratio) per device and the
    combined ratio; '' for a single-target search."""
    rows = report_plots.device_rows(search)
    if not rows or len(rows[0][1]["latency_ms_by_target"]) < 2:
        return ""
    best = rows[0][1]
    targets = list(best["latency_ms_by_target"])
    metric = best["multi_hardware_metric"]
    body = [[label, entry.get("indices_string") or ":".join(map(str, entry["indices"]))]
            + [f"{entry['latency_ms_by_target'][t]:.4g} ({entry['latency_ratio_by_target'][t]:.3f})"
               for t in targets] + [entry["combined_latency_ratio"]] for label, entry in rows]
    header = (["architecture", "indices"]
              + [f"{t} ms (/ {best['target_latency_ms_by_target'][t]:.4g})" for t in targets]
              + [f"{metric} ratio"])
    return (f"<h3>{html.escape(search.name)}: latency per device</h3><p>Simulated ms in "
            f"<code>{html.escape(search.summary.get('latency_metric', 'end_to_end'))}</code>, "
            "in brackets over the device's target; the reward used the "
            f"<b>{html.escape(metric)}</b> ratio.</p>" + _table(header, body))


def render_html(collection: Collection, images: list[tuple[str, str]]) -> str:
    metric, quality = collection.latency_metric, collection.quality_metric
    parts = ["<h1>tunas-jax report</h1>",
             f"<p>Latencies are simulated, in ms, metric <code>{metric}</code> "
             "(cost_models/latency_metric.py).</p>"]
    verdict = comparison(collection)
    if verdict:
        parts.append("<h2>Searched vs random at matched latency</h2>")
        parts.append(_table(
            ["", "n", quality],
            [["searched (mean)", verdict["searched_n"], verdict["searched_mean"]],
             ["random (median)", verdict["random_n"], verdict["random_median"]],
             ["random (mean)", verdict["random_n"], verdict["random_mean"]]]))
        word = "above" if verdict["searched_mean_above_random_median"] else "NOT above"
        parts.append(f"<p>Searched mean {quality} is <b>{word}</b> the random median. Only points "
                     f"inside a random band count ({verdict['bands_ms']} ms); "
                     f"{verdict['excluded_outside_band']} trained points fell outside.</p>")
    if collection.searches:
        parts.append("<h2>Searches</h2>")
        rows = []
        for s in collection.searches:
            best = s.summary["argmax"]
            miss = best["simulated_latency_ms"] / best["target_latency_ms"] - 1
            rows.append([s.name, s.summary.get("latency_metric", "end_to_end"),
                         best["target_latency_ms"], best["simulated_latency_ms"],
                         f"{miss:+.1%}", best["params"],
                         "-" if s.trained_quality is None else s.trained_quality,
                         s.architecture.indices_string])
        parts.append(_table(["search", "metric", "target ms", "simulated ms", "miss",
                             "params", f"trained {quality}", "indices"], rows))
        for s in collection.searches:
            parts.append(_device_table(s))
    for study in collection.studies:
        done = [t for t in study.trials if t["state"] == "completed"]
        # Several devices: the front is over the combined ratio (as the study's pareto.json).
        multi = bool(done) and len(done[0].get("latency_ms_by_target", {})) > 1
        front = {t["id"] for t in pareto_trials(done, "latency_ratio" if multi else "latency_ms")}
        parts.append(f"<h2>Multi-trial study {html.escape(study.name)}</h2>")
        parts.append(f"<p>{len(done)} completed, {len(study.trials) - len(done)} failed; "
                     f"target {study.target_latency_ms} ms. Pareto front (max quality, "
                     "min latency):</p>")
        parts.append(_table(["trial", "quality", "latency ms (first target)",
                             "latency ratio", "reward", "indices"],
                            [[t["id"], t["quality"], t["latency_ms"],
                              t.get("latency_ratio", "-"), t["reward"],
                              ":".join(map(str, t["indices"]))]
                             for t in done if t["id"] in front]))
        if done and all("energy_mj" in t for t in done):  # older studies have none
            on_energy_front = {t["id"] for t in pareto_trials(done, "energy_mj")}
            parts.append("<p>Pareto front (max quality, min energy):</p>")
            parts.append(_table(["trial", "quality", "energy mJ (first target)", "reward",
                                 "indices"],
                                [[t["id"], t["quality"], t["energy_mj"], t["reward"],
                                  ":".join(map(str, t["indices"]))]
                                 for t in done if t["id"] in on_energy_front]))
    if collection.points:
        parts.append("<h2>Trained architectures</h2>")
        parts.append(_table(
            ["workdir", "kind", quality, f"latency ms ({metric})", "end-to-end ms"],
            [[p.name, p.kind, p.quality, p.latency_ms if metric == p.latency_metric
              else p.end_to_end_ms, p.end_to_end_ms] for p in collection.points]))
    parts += [_image(path, caption) for path, caption in images]
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
             "padding:3px 8px;text-align:right}img{max-width:100%}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>tunas-jax report</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")


def write_report(workdirs: Sequence[str], out_dir: str) -> dict[str, Any]:
    """Collect, plot and write DIR/report.html; returns {'html', 'images', 'comparison'}."""
    collection = collect(workdirs)
    out_dir = make_workdir(out_dir, "--out")
    images = report_plots.draw_all(collection, out_dir)
    path = os.path.join(out_dir, REPORT_FILE)
    with atomic_write(path, "w", ".html") as f:
        f.write(render_html(collection, images))
    return {"html": path, "images": [p for p, _ in images], "comparison": comparison(collection)}
