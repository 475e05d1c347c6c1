"""The report's figures (matplotlib, Agg), each saved atomically as a PNG.

- `accuracy_vs_latency.png`: trained quality (the task's metric, top1 for
  classification) against simulated latency, by kind (searched, random, preset,
  trained), the Pareto front (best quality at or
  below each latency) and each search's target;
- per search `<name>_curves.png`: validation quality, reward and its EMA
  baseline, and the predicted latency of the sampled architectures against
  the target band (+/-5%) over the steps;
- per search `<name>_probabilities.png`: every decision's choice
  probabilities over the steps (a heatmap, one row per choice);
- per search `<name>_architecture.png`: the argmax architecture as a block
  diagram, each block shaded by its share of the simulated latency;
- per multi-hardware search (several targets) `<name>_devices.png`: bars per
  device for each architecture (the argmax and the top ones), each device's
  simulated latency over its target latency, with the combined ratio.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from cost_models.interface import SimulatorCostModel, Workload
from search_spaces import atomic_write
from search_spaces.ibn import GROUPED_TYPES
from tasks import describe, get_task
from tunas_jax.pareto import pareto_front

if TYPE_CHECKING:
    from tunas_jax.report import Collection, SearchRun

STYLE = {"searched": ("tab:red", "*", 160), "random": ("tab:gray", "o", 40),
         "preset": ("tab:blue", "s", 60), "trained": ("tab:green", "D", 50)}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str) -> None:
    with atomic_write(path, "wb", ".png") as f:
        fig.savefig(f, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)


def accuracy_vs_latency(collection: Collection, path: str) -> None:
    plt = _plt()
    metric = collection.latency_metric
    fig, ax = plt.subplots(figsize=(7, 4.5))
    points = collection.points
    latency = np.asarray([p.latency_ms if p.latency_metric == metric else p.end_to_end_ms
                          for p in points])
    quality = np.asarray([p.quality for p in points])
    for kind, (color, marker, size) in STYLE.items():
        mask = np.asarray([p.kind == kind for p in points], bool)
        if mask.any():
            ax.scatter(latency[mask], quality[mask], c=color, marker=marker, s=size,
                       label=f"{kind} ({mask.sum()})", zorder=3, edgecolors="k", linewidths=0.4)
    if len(points):
        front = pareto_front(latency, quality)
        ax.step(latency[front], quality[front], where="post", color="k", lw=1, ls="--",
                label="Pareto front", zorder=2)
    for baseline in collection.baselines:
        if baseline.get("latency_metric") == metric:
            lo, hi = baseline["latency_band_ms"]
            ax.axvspan(lo, hi, color="tab:gray", alpha=0.12, label="random band")
    for search in collection.searches:
        if search.summary.get("latency_metric", "end_to_end") == metric:
            ax.axvline(search.summary["target_latency_ms"], color="tab:red", lw=0.8, alpha=0.5)
    ax.set_xlabel(f"simulated latency, ms ({metric})")
    ax.set_ylabel(collection.quality_metric)
    ax.set_title(f"Trained architectures: {collection.quality_metric} vs latency "
                 "(red lines: search targets)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    _save(fig, path)


def search_curves(search: SearchRun, path: str) -> None:
    plt = _plt()
    rows = search.metrics
    steps = np.asarray([r["step"] for r in rows])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True)
    for key, label in (("valid_quality", "validation quality (Q)"), ("reward", "reward"),
                       ("baseline", "reward baseline (EMA)")):
        top.plot(steps, [r[key] for r in rows], label=label, lw=1)
    top.set_ylabel("quality / reward")
    top.legend(fontsize=8)
    top.grid(alpha=0.3)
    target = search.summary["target_latency_ms"]
    bottom.plot(steps, [r["predicted_latency_ms"] for r in rows], lw=1,
                label="predicted latency of the sampled architecture")
    bottom.axhspan(0.95 * target, 1.05 * target, color="tab:red", alpha=0.15,
                   label="target +/-5%")
    bottom.axhline(target, color="tab:red", lw=0.8)
    bottom.set_ylabel(f"ms ({search.summary.get('latency_metric', 'end_to_end')})")
    bottom.set_xlabel("search step")
    bottom.legend(fontsize=8)
    bottom.grid(alpha=0.3)
    fig.suptitle(f"{search.name}: reward and latency")
    _save(fig, path)


def probability_heatmap(search: SearchRun, path: str) -> bool:
    """False (nothing drawn) when the search logged no probabilities."""
    if not search.probabilities:
        return False
    plt = _plt()
    space = search.architecture.space
    steps = [r["step"] for r in search.probabilities]
    labels, rows, bounds = [], [], []
    for d in space.decisions:
        for i, choice in enumerate(d.choices):
            labels.append(f"{d.name} = {choice}")
            rows.append([r["probabilities"][d.position][i] for r in search.probabilities])
        bounds.append(len(rows))
    fig, ax = plt.subplots(figsize=(8, 0.16 * len(rows) + 1.2))
    image = ax.imshow(np.asarray(rows), aspect="auto", cmap="viridis", vmin=0, vmax=1,
                      interpolation="nearest",
                      extent=(steps[0] - 0.5, max(steps[-1], steps[0] + 0.5), len(rows), 0))
    for b in bounds[:-1]:
        ax.axhline(b, color="w", lw=0.6)
    ax.set_yticks(np.arange(len(rows)) + 0.5)
    ax.set_yticklabels(labels, fontsize=6)
    ax.set_xlabel("search step")
    fig.colorbar(image, ax=ax, label="probability", fraction=0.03)
    ax.set_title(f"{search.name}: controller decision probabilities")
    _save(fig, path)
    return True


def architecture_diagram(search: SearchRun, path: str) -> None:
    plt = _plt()
    arch = search.architecture
    spec, space = arch.spec, arch.space
    target = search.summary["target"]
    # Costed for the workload the search wrote (older searches: the space's defaults).
    saved = search.summary.get("argmax", {}).get("workload")
    workload = (Workload(saved["image_size"], get_task(**saved["task"]),
                         saved.get("input_channels", 3)) if saved else Workload.default(space))
    network = describe(spec, workload.image_size, workload.task,
                       input_channels=workload.input_channels)
    costs = SimulatorCostModel(space, workload).cost([network], [target], per_layer=True)
    share: dict[str, float] = {}
    for layer in costs[target].layers[0]:
        parts = layer["name"].split(".")
        key = ".".join(parts[:2]) if parts[0] == "blocks" else (
            "stem" if parts[0] == "stem" else "head")
        share[key] = share.get(key, 0.0) + layer["latency_ps"] / 1e9
    layers_total = sum(share.values())
    boxes = [("stem", f"stem\n{spec.stem_kernel_size}x{spec.stem_kernel_size}/"
                      f"{spec.stem_stride}\n{spec.stem_filters} ch")]
    for i, block in enumerate(spec.blocks):
        if block.skipped:
            boxes.append((f"blocks.{i}", "skip"))
            continue
        text = f"{block.block_type}\nk{block.kernel_size} e{block.expansion_ratio}"
        if block.block_type in GROUPED_TYPES:
            text += f" g{block.groups}"
        boxes.append((f"blocks.{i}", f"{text}\n{block.output_filters} ch /{block.stride}"))
    boxes.append(("head", f"head\n{spec.head_filters} ch\npool+fc"))
    cmap = plt.get_cmap("Reds")
    fig, ax = plt.subplots(figsize=(1.25 * len(boxes) + 0.5, 2.6))
    for x, (key, text) in enumerate(boxes):
        fraction = share.get(key, 0.0) / layers_total if layers_total else 0.0
        dashed = text == "skip"
        ax.add_patch(plt.Rectangle((x + 0.05, 0.1), 0.9, 0.8, facecolor=cmap(0.1 + 0.8 * fraction)
                                   if not dashed else "white", edgecolor="k",
                                   ls="--" if dashed else "-"))
        ax.text(x + 0.5, 0.55, text, ha="center", va="center", fontsize=7)
        if not dashed:
            ax.text(x + 0.5, 0.0, f"{fraction:.0%}", ha="center", va="center", fontsize=8)
    ax.set_xlim(0, len(boxes))
    ax.set_ylim(-0.15, 1)
    ax.axis("off")
    fixed = float(costs[target].latency_ms[0]) - layers_total  # overhead and I/O
    ax.set_title(f"{search.name}: {arch.indices_string} on {target}: layers {layers_total:.4f} ms "
                 f"(shares below boxes) + fixed {fixed:.4f} ms", fontsize=8)
    _save(fig, path)


def device_rows(search: SearchRun) -> list[tuple[str, dict[str, Any]]]:
    """(label, entry) of the argmax and the top architectures of a search that wrote
    per-target latencies (`latency_ms_by_target`); [] for one written before them."""
    best = search.summary.get("argmax", {})
    if "latency_ms_by_target" not in best:
        return []
    space, spec = search.architecture.space, search.architecture.spec
    rows = [("argmax", best)]
    # A top network that decodes to the argmax (its inactive decisions written as 0) is
    # the argmax: left out.
    rows += [(f"top {i + 1} (p={t['probability']:.2f})", t)
             for i, t in enumerate(search.summary.get("top_architectures", []))
             if "latency_ratio_by_target" in t and space.decode(t["indices"]) != spec]
    return rows


def device_latency_bars(search: SearchRun, path: str) -> bool:
    """A multi-hardware search's architectures on each device: grouped bars of
    T_i / T0_i (1 = on that device's target), labelled with T_i in ms; False (nothing
    drawn) for a single-target search."""
    rows = device_rows(search)
    if not rows or len(rows[0][1]["latency_ms_by_target"]) < 2:
        return False
    plt = _plt()
    best = rows[0][1]
    targets = list(best["latency_ms_by_target"])
    metric = best["multi_hardware_metric"]
    width = 0.8 / len(rows)
    fig, ax = plt.subplots(figsize=(1.9 * len(targets) + 2.5, 3.8))
    x = np.arange(len(targets))
    for j, (label, entry) in enumerate(rows):
        ratios = [entry["latency_ratio_by_target"][t] for t in targets]
        bars = ax.bar(x + (j - (len(rows) - 1) / 2) * width, ratios, width,
                      label=f"{label}: {metric} {entry['combined_latency_ratio']:.3f}",
                      color=f"C{j}", alpha=1.0 if j == 0 else 0.55)
        for bar, t in zip(bars, targets, strict=True):
            ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(),
                    f"{entry['latency_ms_by_target'][t]:.3g}", ha="center", va="bottom",
                    fontsize=6, rotation=90)
    ax.axhline(1.0, color="tab:red", lw=0.8, ls="--")
    highest = max([1.0] + [r for _, e in rows for r in e["latency_ratio_by_target"].values()])
    ax.set_ylim(0, 1.2 * highest)  # room for the rotated ms labels above the bars
    ax.set_xticks(x)
    ax.set_xticklabels([f"{t}\nT0 {best['target_latency_ms_by_target'][t]:.4g} ms"
                        for t in targets], fontsize=8)
    ax.set_ylabel(f"simulated / target latency ({search.summary.get('latency_metric')})")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(alpha=0.3, axis="y")
    ax.set_title(f"{search.name}: latency per device (labels: ms; dashed: target)",
                 fontsize=9)
    _save(fig, path)
    return True


def study_plot(study: Any, path: str) -> None:
    """A multi-trial study: each objective over the trials, and quality vs latency and vs
    energy, each with its Pareto front, the best trial by reward and the latency target."""
    plt = _plt()
    done = [t for t in study.trials if t["state"] == "completed"]
    failed = [t["id"] for t in study.trials if t["state"] != "completed"]
    ids = np.asarray([t["id"] for t in done])
    quality = np.asarray([t["quality"] for t in done])
    latency = np.asarray([t["latency_ms"] for t in done])
    energy = np.asarray([t.get("energy_mj", np.nan) for t in done])  # older studies: none
    metric = done[0]["quality_metric"] if done else "quality"
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(17, 4), layout="constrained")
    left.plot(ids, quality, "o-", lw=0.8, ms=3, color="C0", label=metric)
    left.set_xlabel("trial")
    left.set_ylabel(metric, color="C0")
    for f in failed:
        left.axvline(f, color="0.7", lw=0.8, ls=":")
    twin = left.twinx()
    twin.plot(ids, latency, "s-", lw=0.8, ms=3, color="C3")
    twin.axhline(study.target_latency_ms, color="C3", lw=0.8, ls="--")
    twin.set_ylabel("simulated latency, ms (dashed: target)", color="C3")
    left.set_title(f"{study.name}: objectives over trials"
                   + (f" ({len(failed)} failed: dotted)" if failed else ""))
    best = int(np.argmax([t["reward"] for t in done])) if done else None
    for ax, cost, label in ((middle, latency, "simulated latency, ms"),
                            (right, energy, "simulated energy, mJ")):
        ax.scatter(cost, quality, s=14, c=ids, cmap="viridis", label="trials (by id)")
        if len(done) and np.isfinite(cost).all():
            front = pareto_front(cost, quality)
            ax.step(cost[front], quality[front], where="post", color="k", lw=1, ls="--",
                    label="Pareto front")
            ax.scatter(cost[best], quality[best], s=80, facecolors="none",
                       edgecolors="C3", label="best reward")
        ax.set_xlabel(label)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.set_title(f"{study.name}: {metric} vs {label.split(',')[0].split()[-1]}")
    middle.axvline(study.target_latency_ms, color="C3", lw=0.8, ls="--")
    middle.legend(fontsize=7)
    _save(fig, path)


def draw_all(collection: Collection, out_dir: str) -> list[tuple[str, str]]:
    """Every figure; returns (path, caption) in page order."""
    images = []
    if collection.points:
        path = os.path.join(out_dir, "accuracy_vs_latency.png")
        accuracy_vs_latency(collection, path)
        images.append((path, f"{collection.quality_metric} vs simulated latency of every "
                             "trained architecture"))
    for search in collection.searches:
        prefix = os.path.join(out_dir, search.name)
        search_curves(search, prefix + "_curves.png")
        images.append((prefix + "_curves.png", f"{search.name}: reward and latency over steps"))
        if probability_heatmap(search, prefix + "_probabilities.png"):
            images.append((prefix + "_probabilities.png",
                           f"{search.name}: controller probabilities over steps"))
        architecture_diagram(search, prefix + "_architecture.png")
        images.append((prefix + "_architecture.png",
                       f"{search.name}: the found architecture, blocks shaded by latency share"))
        if device_latency_bars(search, prefix + "_devices.png"):
            images.append((prefix + "_devices.png",
                           f"{search.name}: each architecture's latency on each device"))
    for study in collection.studies:
        path = os.path.join(out_dir, f"{study.name}_study.png")
        study_plot(study, path)
        images.append((path, f"{study.name}: multi-trial study"))
    return images
