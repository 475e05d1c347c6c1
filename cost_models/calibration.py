"""Fit a hardware target's free parameters to published model latencies.

Least squares on log latency (`scipy.optimize.least_squares`, parameters
searched in log space within bounds, from a few starts) over the published
rows of the target's device (the Coral benchmark page and the Edge TPU NAS
paper's tables; `PUBLISHED` below is a copy of `published_latency.csv`; the
mobile CPU/GPU/DSP rows are copied from `published_latency_mobile.csv`,
each target from one table of one source, as its cautions ask).
Mobile targets also have held-out rows (`HELD_OUT`): published models of
the same table and device that the fit never sees, chosen unlike the fit
set (other blocks, activations, squeeze-excite), so their error is that of
the model on a new kind of network, not of the fit.
`tunas-jax calibrate --target T` prints, per model, published vs simulated
latency and error, plus Pearson (of latencies) and Spearman (rank)
correlation, and the fitted values to paste into `cost_models/targets/T.py`
(the shipped files hold them).

Reference networks: MobileNetEdgeTPU v2 tiny..l from `search_spaces.presets`;
v1 at width w scales every filter count of the v1 preset (stem, blocks,
head) with `round_filters(w * f, 8)`; MobileNetV1/V2/V3 at any width and
input size and the TuNAS multi-hardware models come from
`cost_models.reference_networks`; the other Coral models are the
hand-written descriptions in `cost_models/networks/`.

Free parameters (`FIT_FIELDS`). Each Edge TPU target frees three fields, the ones no public figure
pins: `compute_efficiency` (stalls the cycle model does not see),
`offchip_bandwidth_bytes_per_s` (what the host link or DRAM share really
delivers: it prices streamed weights) and `inference_overhead_ms` (driver,
USB round trip). Everything else is a physical quantity of the target: the
array, clock and cache size, the on-chip bandwidth that prices the
memory-bound ops, and `layer_overhead_ms`, fixed at 10 ns (the per-op cost
is mostly the pipeline fill of pe_rows + pe_cols cycles the cycle model
already counts; a fourth free field for it went to this lower bound in both
fits and, with Coral's five points, let the fits interpolate: EXPERIMENTS.md
has the leave-one-out errors with and without it). The mobile targets free
what their table can pin: the MAC rate and memory bandwidth and the cost
each op cannot avoid (a CPU's per-op overhead, a GPU's launch floor and
delegate overhead, a DSP's per-inference floor and slow-op penalty).

Leave-one-out (`leave_one_out`): each published model is predicted by a fit
of the same fields to the other models only (started from the target's
values, like the full fit). `tunas-jax calibrate` prints it next to the
in-sample fit and writes both to a JSON file (`calibration_report`), so
later simulator changes can be compared; EXPERIMENTS.md has the figures of
the shipped targets.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import math
import os
from collections.abc import Sequence

import numpy as np

from cost_models.hardware import LatencyModel, get_target
from cost_models.reference_networks import (
    mobilenet_v1,
    mobilenet_v2,
    mobilenet_v3,
    with_pre_logits,
)
from cost_models.simulator import simulate
from search_spaces.blocks import round_filters
from search_spaces.errors import SpecError
from search_spaces.ibn import BlockType
from search_spaces.model_spec import ModelSpec
from search_spaces.network import NetworkDescription, load
from search_spaces.presets import get_preset
from tasks import describe

NETWORKS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "networks")

# (model, input size, device, latency_ms): the rows of published_latency.csv
# (tensorflow/models edgetpu READMEs; coral.ai Edge TPU benchmark table).
EDGETPU_ROWS: tuple[tuple[str, int, str, float], ...] = (
    ("mobilenet_edgetpu_v2_tiny", 224, "pixel6_edgetpu", 0.78),
    ("mobilenet_edgetpu_v2_xs", 224, "pixel6_edgetpu", 0.82),
    ("mobilenet_edgetpu_v2_s", 224, "pixel6_edgetpu", 1.03),
    ("mobilenet_edgetpu_v2_m", 224, "pixel6_edgetpu", 1.35),
    ("mobilenet_edgetpu_v2_l", 224, "pixel6_edgetpu", 1.64),
    ("mobilenet_edgetpu_v1_w1.0", 224, "pixel6_edgetpu", 0.92),
    ("mobilenet_edgetpu_v1_w1.25", 224, "pixel6_edgetpu", 1.20),
    ("mobilenet_edgetpu_v1_w1.5", 224, "pixel6_edgetpu", 1.42),
    ("mobilenet_edgetpu_v1_w1.75", 224, "pixel6_edgetpu", 1.93),
    ("mobilenet_v1_w1.0", 224, "coral_usb_edgetpu", 2.4),
    ("mobilenet_v2_w1.0", 224, "coral_usb_edgetpu", 2.6),
    ("efficientnet_edgetpu_s", 224, "coral_usb_edgetpu", 5.1),
    ("resnet50_v1", 299, "coral_usb_edgetpu", 49.0),
    ("vgg16", 224, "coral_usb_edgetpu", 296.0),
)
# published_latency_mobile.csv: the mobile targets' fit rows (device = target name).
# S1 (TF-slim MobileNetV2 README): Pixel 1, one big core, fp32.
PIXEL1_CPU_ROWS = tuple(
    (f"mobilenet_v2_w{w}", size, "pixel1_cpu", lat) for w, size, lat in (
        (1.4, 224, 138.0), (1.3, 224, 123.0), (1.0, 224, 73.8), (1.0, 192, 55.1),
        (1.0, 160, 40.2), (1.0, 128, 27.6), (1.0, 96, 17.6), (0.75, 224, 55.8),
        (0.75, 192, 41.6), (0.75, 160, 30.4), (0.75, 128, 21.9), (0.75, 96, 14.2),
        (0.5, 224, 28.7), (0.5, 192, 21.1), (0.5, 160, 14.9), (0.5, 128, 9.9), (0.5, 96, 6.4),
        (0.35, 224, 19.7), (0.35, 192, 14.6), (0.35, 160, 10.5), (0.35, 128, 6.9),
        (0.35, 96, 4.5)))
# S5 (TF-Lite hosted models): Pixel 3 MobileNetV1 fp32, CPU 4 threads / GPU delegate.
PIXEL3_ROWS = tuple(
    (f"mobilenet_v1_w{w}", size, target, lat)
    for target, table in (
        ("pixel3_cpu_4t", ((24.0, 18.1, 13.4, 9.0), (14.6, 11.0, 8.2, 5.5),
                           (7.9, 6.0, 4.4, 3.0), (3.3, 2.4, 1.7, 1.2))),
        ("pixel3_gpu", ((6.5, 6.3, 5.0, 4.4), (4.9, 4.5, 3.1, 2.6), (2.8, 2.5, 2.0, 1.7),
                        (1.8, 1.8, 1.7, 1.6))))
    for w, row in zip((1.0, 0.75, 0.5, 0.25), table, strict=True)
    for size, lat in zip((224, 192, 160, 128), row, strict=True))
# S8 (MobileNetV4 paper, table 6): Pixel 4 Hexagon DSP, int8.
PIXEL4_DSP_ROWS = (
    ("mobilenet_v2_w0.5", 224, "pixel4_dsp", 2.9), ("mobilenet_v2_w1.0", 224, "pixel4_dsp", 3.9),
    ("mobilenet_v2_w1.5", 224, "pixel4_dsp", 5.6), ("mobilenet_v2_w2.0", 224, "pixel4_dsp", 6.9),
    ("mobilenet_v1_w1.0", 224, "pixel4_dsp", 3.2),
    ("mobilenet_v3_large_w0.5", 224, "pixel4_dsp", 3.5),
)
PUBLISHED = (*EDGETPU_ROWS, *PIXEL1_CPU_ROWS, *PIXEL3_ROWS, *PIXEL4_DSP_ROWS)
# Rows of the same table and device the fit never sees: (model, input size, latency_ms).
HELD_OUT: dict[str, tuple[tuple[str, int, float], ...]] = {
    "pixel1_cpu": (("mobilenet_v3_large_w1.0", 224, 51.2),   # S1, 1 thread, fp32
                   ("mobilenet_v3_small_w1.0", 224, 15.8)),
    "pixel3_cpu_4t": (("mobilenet_v2_w1.0", 224, 17.5),),    # S5
    "pixel3_gpu": (("mobilenet_v2_w1.0", 224, 6.2),),        # S5
    "pixel4_dsp": (("mobilenet_multi_avg_w1.5", 224, 6.1),   # S8
                   ("mobilenet_multi_max_w1.5", 224, 5.7)),
}
# The CSV's device name for each target, and the fields each fit frees.
DEVICE_OF_TARGET = {"pixel6_edgetpu": "pixel6_edgetpu", "coral_edgetpu": "coral_usb_edgetpu",
                    **{t: t for t in HELD_OUT}}
FIT_FIELDS = {
    # Memory bandwidth is not free on pixel1_cpu: freed, it ran to its upper bound
    # (the MobileNetV2 grid does not pin it), so it stays the assumed value.
    "pixel1_cpu": ("dense_macs_per_s", "depthwise_efficiency", "op_overhead_ms"),
    "pixel3_cpu_4t": ("dense_macs_per_s", "depthwise_efficiency",
                      "memory_bandwidth_bytes_per_s", "op_overhead_ms"),
    "pixel3_gpu": ("dense_macs_per_s", "memory_bandwidth_bytes_per_s", "op_floor_ms",
                   "inference_overhead_ms"),
    "pixel4_dsp": ("dense_macs_per_s", "inference_overhead_ms", "slow_op_ms"),
    "pixel6_edgetpu": ("compute_efficiency", "offchip_bandwidth_bytes_per_s",
                       "inference_overhead_ms"),
    "coral_edgetpu": ("compute_efficiency", "offchip_bandwidth_bytes_per_s",
                      "inference_overhead_ms"),
}
# The goals for the leave-one-out predictions (reported, not enforced).
GOALS = {"loo_mape_percent": {"coral_edgetpu": 15.0, "pixel6_edgetpu": 10.0},
         "spearman": 0.95, "ratio_range": (0.67, 1.5)}
# Search bounds per field (the fit works on their logs).
BOUNDS = {
    "compute_efficiency": (0.01, 1.0),
    "layer_overhead_ms": (1e-5, 1.0),
    "inference_overhead_ms": (1e-4, 10.0),
    "offchip_bandwidth_bytes_per_s": (1e7, 1e12),
    "clock_hz": (1e7, 1e10),
    "onchip_bandwidth_bytes_per_s": (1e8, 1e13),
    "dense_macs_per_s": (1e8, 1e13),
    "depthwise_efficiency": (0.01, 1.0),
    "memory_bandwidth_bytes_per_s": (1e8, 1e12),
    "op_overhead_ms": (1e-5, 1.0),
    "op_floor_ms": (1e-5, 1.0),
    "slow_op_ms": (1e-5, 5.0),
}


@dataclasses.dataclass(frozen=True)
class Row:
    model: str
    published_ms: float
    simulated_ms: float
    input_size: int = 224

    @property
    def error_percent(self) -> float:
        return 100.0 * (self.simulated_ms - self.published_ms) / self.published_ms


@dataclasses.dataclass(frozen=True)
class FitReport:
    """Per-model comparison and summary statistics of one target."""

    target: LatencyModel
    rows: tuple[Row, ...]

    @property
    def rms_log_error(self) -> float:
        return math.sqrt(np.mean([math.log(r.simulated_ms / r.published_ms) ** 2
                                  for r in self.rows]))

    @property
    def mean_abs_error_percent(self) -> float:
        return float(np.mean([abs(r.error_percent) for r in self.rows]))

    @property
    def ratio_range(self) -> tuple[float, float]:
        """Smallest and largest simulated / published ratio."""
        ratios = [r.simulated_ms / r.published_ms for r in self.rows]
        return min(ratios), max(ratios)

    @property
    def pearson(self) -> float | None:
        """None below 3 rows (a held-out set may be one or two models)."""
        from scipy import stats

        if len(self.rows) < 3:
            return None
        return float(stats.pearsonr([r.published_ms for r in self.rows],
                                    [r.simulated_ms for r in self.rows])[0])

    @property
    def spearman(self) -> float | None:
        """None below 3 rows."""
        from scipy import stats

        if len(self.rows) < 3:
            return None
        return float(stats.spearmanr([r.published_ms for r in self.rows],
                                     [r.simulated_ms for r in self.rows])[0])

    def table(self) -> str:
        lines = [f"{'model':30s} {'px':>4s} {'published_ms':>12s} {'simulated_ms':>12s} "
                 f"{'error_%':>8s}"]
        lines += [f"{r.model:30s} {r.input_size:4d} {r.published_ms:12.3f} "
                  f"{r.simulated_ms:12.3f} {r.error_percent:+8.1f}" for r in self.rows]
        def fmt(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.3f}"

        lines.append(f"mean |error| {self.mean_abs_error_percent:.1f}%, rms log error "
                     f"{self.rms_log_error:.3f}, Pearson {fmt(self.pearson)}, "
                     f"Spearman {fmt(self.spearman)}")
        return "\n".join(lines)

    def to_json(self) -> dict:
        lo, hi = self.ratio_range
        return {
            "mean_abs_error_percent": self.mean_abs_error_percent,
            "rms_log_error": self.rms_log_error, "pearson": self.pearson,
            "spearman": self.spearman, "min_ratio": lo, "max_ratio": hi,
            "rows": [{"model": r.model, "input_size": r.input_size,
                      "published_ms": r.published_ms,
                      "simulated_ms": r.simulated_ms, "error_percent": r.error_percent}
                     for r in self.rows],
        }


def scale_width(spec: ModelSpec, width: float) -> ModelSpec:
    """A ModelSpec with every filter count scaled by `width` (round_filters to 8)."""
    def r(f: int) -> int:
        return round_filters(width * f, 8)

    blocks = []
    for b in spec.blocks:
        cin, cout = r(b.input_filters), r(b.output_filters)
        groups = b.groups
        if b.block_type == BlockType.DW_IBN:
            groups = cin * b.expansion_ratio
        blocks.append(dataclasses.replace(b, input_filters=cin, output_filters=cout,
                                          groups=groups))
    return ModelSpec(r(spec.stem_filters), spec.stem_kernel_size, spec.stem_stride,
                     tuple(blocks), r(spec.head_filters)).validate()


@functools.cache
def reference_network(model: str, input_size: int = 224) -> NetworkDescription:
    """The network description of a published model name."""
    if model.startswith("mobilenet_edgetpu_v1_w"):
        width = float(model.rsplit("_w", 1)[1])
        spec = scale_width(get_preset("mobilenet_edgetpu_v1"), width)
        return describe(spec, input_size, 1001, name=model)
    if model.startswith("mobilenet_edgetpu_v2_"):
        return describe(get_preset(model), input_size, 1001, name=model)
    base, _, width_text = model.rpartition("_w")
    builders = {"mobilenet_v1": mobilenet_v1, "mobilenet_v2": mobilenet_v2,
                "mobilenet_v3_large": lambda w, s: mobilenet_v3("large", w, s),
                "mobilenet_v3_small": lambda w, s: mobilenet_v3("small", w, s)}
    if base in builders:
        return builders[base](float(width_text), input_size)
    if base in ("mobilenet_multi_avg", "mobilenet_multi_max"):
        width = float(width_text)
        spec = scale_width(get_preset(base), width)
        net = describe(spec, input_size, 1001, name=model)
        return with_pre_logits(net, round_filters(1280 * max(width, 1.0), 8), model)
    stem = model.removesuffix("_w1.0")
    path = os.path.join(NETWORKS_DIR, f"{stem}.json")
    if not os.path.exists(path):
        raise SpecError(f"model {model!r}: no preset and no {path}; add a network description")
    net = load(path)
    if net.input_shape[0] != input_size:
        raise SpecError(f"model {model!r}: {path} is {net.input_shape[0]} px, "
                        f"the published row {input_size} px")
    return net


def published_rows(target_name: str, csv_path: str | None = None
                   ) -> list[tuple[str, int, float]]:
    """(model, input size, latency_ms) published for the target's device."""
    if target_name not in DEVICE_OF_TARGET:
        raise SpecError(f"target {target_name!r} has no published latencies; choose one of "
                        f"{sorted(DEVICE_OF_TARGET)}")
    device = DEVICE_OF_TARGET[target_name]
    if csv_path is not None and target_name in HELD_OUT:
        # published_latency_mobile.csv names models, widths and devices in its own
        # words; which rows a mobile target fits is a choice recorded here.
        raise SpecError(f"--csv: target {target_name!r} is fitted to its rows of "
                        "published_latency_mobile.csv as copied in cost_models/calibration.py "
                        "(one table per target); --csv reads published_latency.csv rows for "
                        "the Edge TPU targets only: drop --csv")
    if csv_path is None:
        rows = [(m, s, lat) for m, s, d, lat in PUBLISHED if d == device]
    else:
        with open(csv_path) as f:
            rows = [(r["model"], int(r["input_size"]), float(r["latency_ms"]))
                    for r in csv.DictReader(f) if r["device"] == device]
    if not rows:
        raise SpecError(f"no published latencies for device {device!r}")
    return rows


def held_out_rows(target_name: str) -> list[tuple[str, int, float]]:
    """(model, input size, latency_ms) of the target's table that its fit never sees."""
    return list(HELD_OUT.get(target_name, ()))


def evaluate(target: LatencyModel | str, rows: Sequence[tuple[str, int, float]] | None = None
             ) -> FitReport:
    """Published vs simulated latency of every published model of the target's device."""
    target = get_target(target)
    rows = rows if rows is not None else published_rows(target.name)
    return FitReport(target, tuple(
        Row(m, lat, simulate(reference_network(m, size), target).latency_ms, size)
        for m, size, lat in rows))


def calibrate(target: LatencyModel | str, fields: Sequence[str] | None = None,
              rows: Sequence[tuple[str, int, float]] | None = None,
              restarts: int = 4, seed: int = 0) -> tuple[FitReport, FitReport]:
    """Fit `fields` of `target` to the published latencies; (before, after) reports.

    Starts from the target's own values and from `restarts - 1` random points
    inside the bounds; keeps the best least-squares solution.
    """
    from scipy import optimize  # only the fit needs scipy

    target = get_target(target)
    fields = tuple(fields or FIT_FIELDS.get(target.name, FIT_FIELDS["pixel6_edgetpu"]))
    rows = list(rows if rows is not None else published_rows(target.name))
    nets = [reference_network(m, size) for m, size, _ in rows]
    log_pub = np.log([lat for _, _, lat in rows])
    lo = np.log([BOUNDS[f][0] for f in fields])
    hi = np.log([BOUNDS[f][1] for f in fields])

    def with_x(x: np.ndarray) -> LatencyModel:
        return target.replace(**{f: float(np.exp(v)) for f, v in zip(fields, x, strict=True)})

    def residuals(x: np.ndarray) -> np.ndarray:
        t = with_x(x)
        return np.log([simulate(n, t).latency_ms for n in nets]) - log_pub

    rng = np.random.default_rng(seed)
    x0 = np.clip(np.log([getattr(target, f) for f in fields]), lo, hi)
    starts = [x0] + [rng.uniform(lo, hi) for _ in range(restarts - 1)]
    best = None
    for start in starts:
        sol = optimize.least_squares(residuals, start, bounds=(lo, hi), diff_step=1e-3,
                                     x_scale=1.0)
        if best is None or sol.cost < best.cost:
            best = sol
    before = evaluate(target, rows)
    after = evaluate(with_x(best.x), rows)
    if after.rms_log_error > before.rms_log_error:  # never hand back a worse target
        after = before
    return before, after


def leave_one_out(target: LatencyModel | str, fields: Sequence[str] | None = None,
                  rows: Sequence[tuple[str, int, float]] | None = None,
                  restarts: int = 4, seed: int = 0) -> FitReport:
    """Each row predicted by a fit of `fields` to the other rows only."""
    target = get_target(target)
    rows = list(rows if rows is not None else published_rows(target.name))
    if len(rows) < 2:
        raise SpecError(f"leave-one-out needs at least 2 published models, got {len(rows)}")
    predicted = []
    for i, row in enumerate(rows):
        _, fit = calibrate(target, fields, rows[:i] + rows[i + 1:], restarts, seed)
        predicted.append(evaluate(fit.target, [row]).rows[0])
    return FitReport(target, tuple(predicted))


@dataclasses.dataclass(frozen=True)
class CalibrationResult:
    """A fit of `fields` (before/after), the fitted target's error on held-out models
    (None when the target has none) and, optionally, the leave-one-out predictions."""

    target: str
    fields: tuple[str, ...]
    before: FitReport
    after: FitReport
    loo: FitReport | None
    held_out: FitReport | None = None

    def goals(self) -> dict:
        """The issue's goals checked on the leave-one-out predictions."""
        if self.loo is None:
            return {}
        lo, hi = self.loo.ratio_range
        goal = GOALS["loo_mape_percent"].get(self.target)
        low, high = GOALS["ratio_range"]
        return {
            "loo_mape_percent": goal,
            "loo_mape_met": None if goal is None else self.loo.mean_abs_error_percent <= goal,
            "spearman": GOALS["spearman"], "spearman_met": self.loo.spearman >= GOALS["spearman"],
            "ratio_range": [low, high], "ratio_range_met": low <= lo and hi <= high,
        }

    def to_json(self) -> dict:
        return {
            "format": "tunas-jax/calibration", "format_version": 1, "target": self.target,
            "fitted_fields": list(self.fields),
            "fitted_values": {f: getattr(self.after.target, f) for f in self.fields},
            "start": self.before.to_json(), "in_sample": self.after.to_json(),
            "leave_one_out": None if self.loo is None else self.loo.to_json(),
            "held_out": None if self.held_out is None else self.held_out.to_json(),
            "goals": self.goals(),
        }


def calibration_report(target: LatencyModel | str, fields: Sequence[str] | None = None,
                       rows: Sequence[tuple[str, int, float]] | None = None,
                       loo: bool = True, restarts: int = 4,
                       held_out: Sequence[tuple[str, int, float]] | None = None
                       ) -> CalibrationResult:
    """The in-sample fit of `fields`, the fitted target on `held_out` rows (default the
    target's `HELD_OUT`) and (with `loo`) the leave-one-out predictions."""
    target = get_target(target)
    fields = tuple(fields or FIT_FIELDS.get(target.name, FIT_FIELDS["pixel6_edgetpu"]))
    rows = list(rows if rows is not None else published_rows(target.name))
    before, after = calibrate(target, fields, rows, restarts)
    loo_report = leave_one_out(target, fields, rows, restarts) if loo else None
    held_out = list(held_out if held_out is not None else held_out_rows(target.name))
    held_report = evaluate(after.target, held_out) if held_out else None
    return CalibrationResult(target.name, fields, before, after, loo_report, held_report)


def target_source(target: LatencyModel, fields: Sequence[str]) -> str:
    """Lines to paste into the target's file for the fitted fields."""
    return "\n".join(f"    {f}={float(f'{getattr(target, f):.4g}')!r},  # FIT" for f in fields)


def target_summaries() -> list[dict]:
    """Every shipped target with its kind and the shipped values' error against its
    published latencies: the fit rows (in-sample) and, for the mobile targets, the
    held-out rows. Leave-one-out needs refits (`calibration_report`), so it is not here."""
    from cost_models.targets import TARGETS

    out = []
    for name, target in TARGETS.items():
        fit = evaluate(target) if name in DEVICE_OF_TARGET else None
        held = held_out_rows(name)
        held_report = evaluate(target, held) if held else None
        out.append({
            "name": name, "kind": target.kind, "description": target.description,
            "fit_models": 0 if fit is None else len(fit.rows),
            "fit_mean_abs_error_percent": None if fit is None else fit.mean_abs_error_percent,
            "held_out_models": len(held),
            "held_out_mean_abs_error_percent": (None if held_report is None
                                                else held_report.mean_abs_error_percent),
        })
    return out
