"""Fit a hardware target's free parameters to published model latencies.

Least squares on log latency (`scipy.optimize.least_squares`, parameters
searched in log space within bounds, from a few starts) over the published
rows of the target's device (NOTES; `PUBLISHED` below is a copy of
`published_latency.csv`). `tunas-jax calibrate --target T` prints, per model,
published vs simulated latency and error, plus Pearson (of latencies) and
Spearman (rank) correlation, and the fitted values to paste into
`cost_models/targets/T.py` (the shipped files hold them).

Reference networks: MobileNetEdgeTPU v2 tiny..l from `search_spaces.presets`;
v1 at width w scales every filter count of the v1 preset (stem, blocks,
head) with `round_filters(w * f, 8)`; the Coral models are the hand-written
descriptions in `cost_models/networks/`.

Fit results (shipped values; regenerate with `tunas-jax calibrate --target T`):

pixel6_edgetpu (fitted: compute_efficiency, layer_overhead_ms, inference_overhead_ms,
offchip_bandwidth_bytes_per_s):
    model                          published_ms simulated_ms  error_%
    mobilenet_edgetpu_v2_tiny             0.780        0.771     -1.2
    mobilenet_edgetpu_v2_xs               0.820        0.847     +3.3
    mobilenet_edgetpu_v2_s                1.030        0.982     -4.7
    mobilenet_edgetpu_v2_m                1.350        1.313     -2.8
    mobilenet_edgetpu_v2_l                1.640        1.631     -0.6
    mobilenet_edgetpu_v1_w1.0             0.920        0.954     +3.7
    mobilenet_edgetpu_v1_w1.25            1.200        1.199     -0.1
    mobilenet_edgetpu_v1_w1.5             1.420        1.419     -0.1
    mobilenet_edgetpu_v1_w1.75            1.930        1.979     +2.6
    mean |error| 2.1%, rms log error 0.026, Pearson 0.997, Spearman 1.000
    (from the initial guesses: mean |error| 57.2%, rms log error 0.454.)
    Leave-one-out (refit on 8, predict the 9th): mean |error| 2.9%, worst -5.6% (v2-s).
    Fitted: compute_efficiency 0.976 (the assumed 8.2-TOPS array runs near its
    mapped peak), layer_overhead_ms at its 1e-5 floor, inference_overhead_ms 0.40,
    off-chip 10.3 GB/s (v2-m, v2-l and v1-w1.75 exceed the assumed 8 MiB cache
    and stream 1.3-2.9 MiB of weights per inference).

coral_edgetpu (fitted: compute_efficiency, offchip_bandwidth_bytes_per_s,
layer_overhead_ms, inference_overhead_ms):
    model                          published_ms simulated_ms  error_%
    mobilenet_v1_w1.0                     2.400        2.383     -0.7
    mobilenet_v2_w1.0                     2.600        2.623     +0.9
    efficientnet_edgetpu_s                5.100        5.117     +0.3
    resnet50_v1                          49.000       46.272     -5.6
    vgg16                               296.000      311.652     +5.3
    mean |error| 2.6%, rms log error 0.035, Pearson 1.000, Spearman 1.000
    (from the initial guesses: mean |error| 81.6%, rms log error 0.631.)
    Caveat: 4 free parameters for 5 points. Leave-one-out is much worse: mean
    |error| 17.8% (MobileNetV1 -11%, MobileNetV2 +41%, EfficientNet-EdgeTPU-S
    +15%, ResNet-50 -10%, VGG-16 +12%). The streaming-dominated models pin the
    host bandwidth (443 MB/s fitted: ResNet-50 streams 16.5 MiB, VGG-16 125 MiB
    per inference); the MobileNets pin compute_efficiency (0.61) and the
    per-inference overhead (0.47 ms).
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import math
import os
from collections.abc import Sequence

import numpy as np

from cost_models.hardware import HardwareTarget, get_target
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
PUBLISHED: tuple[tuple[str, int, str, float], ...] = (
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
# The CSV's device name for each target, and the fields each fit frees.
DEVICE_OF_TARGET = {"pixel6_edgetpu": "pixel6_edgetpu", "coral_edgetpu": "coral_usb_edgetpu"}
FIT_FIELDS = {
    "pixel6_edgetpu": ("compute_efficiency", "layer_overhead_ms", "inference_overhead_ms",
                       "offchip_bandwidth_bytes_per_s"),
    "coral_edgetpu": ("compute_efficiency", "offchip_bandwidth_bytes_per_s",
                      "layer_overhead_ms", "inference_overhead_ms"),
}
# Search bounds per field (the fit works on their logs).
BOUNDS = {
    "compute_efficiency": (0.01, 1.0),
    "layer_overhead_ms": (1e-5, 1.0),
    "inference_overhead_ms": (1e-4, 10.0),
    "offchip_bandwidth_bytes_per_s": (1e7, 1e12),
    "clock_hz": (1e7, 1e10),
    "onchip_bandwidth_bytes_per_s": (1e8, 1e13),
}


@dataclasses.dataclass(frozen=True)
class Row:
    model: str
    published_ms: float
    simulated_ms: float

    @property
    def error_percent(self) -> float:
        return 100.0 * (self.simulated_ms - self.published_ms) / self.published_ms


@dataclasses.dataclass(frozen=True)
class FitReport:
    """Per-model comparison and summary statistics of one target."""

    target: HardwareTarget
    rows: tuple[Row, ...]

    @property
    def rms_log_error(self) -> float:
        return math.sqrt(np.mean([math.log(r.simulated_ms / r.published_ms) ** 2
                                  for r in self.rows]))

    @property
    def mean_abs_error_percent(self) -> float:
        return float(np.mean([abs(r.error_percent) for r in self.rows]))

    @property
    def pearson(self) -> float:
        from scipy import stats

        return float(stats.pearsonr([r.published_ms for r in self.rows],
                                    [r.simulated_ms for r in self.rows])[0])

    @property
    def spearman(self) -> float:
        from scipy import stats

        return float(stats.spearmanr([r.published_ms for r in self.rows],
                                     [r.simulated_ms for r in self.rows])[0])

    def table(self) -> str:
        lines = [f"{'model':30s} {'published_ms':>12s} {'simulated_ms':>12s} {'error_%':>8s}"]
        lines += [f"{r.model:30s} {r.published_ms:12.3f} {r.simulated_ms:12.3f} "
                  f"{r.error_percent:+8.1f}" for r in self.rows]
        lines.append(f"mean |error| {self.mean_abs_error_percent:.1f}%, rms log error "
                     f"{self.rms_log_error:.3f}, Pearson {self.pearson:.3f}, "
                     f"Spearman {self.spearman:.3f}")
        return "\n".join(lines)


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
    if csv_path is None:
        rows = [(m, s, lat) for m, s, d, lat in PUBLISHED if d == device]
    else:
        with open(csv_path) as f:
            rows = [(r["model"], int(r["input_size"]), float(r["latency_ms"]))
                    for r in csv.DictReader(f) if r["device"] == device]
    if not rows:
        raise SpecError(f"no published latencies for device {device!r}")
    return rows


def evaluate(target: HardwareTarget | str, rows: Sequence[tuple[str, int, float]] | None = None
             ) -> FitReport:
    """Published vs simulated latency of every published model of the target's device."""
    target = get_target(target)
    rows = rows if rows is not None else published_rows(target.name)
    return FitReport(target, tuple(
        Row(m, lat, simulate(reference_network(m, size), target).latency_ms)
        for m, size, lat in rows))


def calibrate(target: HardwareTarget | str, fields: Sequence[str] | None = None,
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

    def with_x(x: np.ndarray) -> HardwareTarget:
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


def target_source(target: HardwareTarget, fields: Sequence[str]) -> str:
    """Lines to paste into the target's file for the fitted fields."""
    return "\n".join(f"    {f}={float(f'{getattr(target, f):.4g}')!r},  # FIT" for f in fields)
