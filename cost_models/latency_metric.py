"""Which latency a search targets: the whole inference, or its architecture-dependent part.

The simulated latency of one inference is the sum of its layers plus a fixed
part: the target's per-inference overhead (driver, dispatch) and moving the
input image and the logits over the off-chip link. The fixed part is the same
for every architecture of a space (same input size, same class count), so it
never changes which architecture is faster, but it does change what a
relative reward sees. On `pixel6_edgetpu` the fitted overhead is 0.40 ms while
the whole `micro` space computes in 0.003-0.029 ms: end to end, micro spans
only 0.404-0.430 ms, so `|T/T0 - 1|` cannot tell its architectures apart.

- `end_to_end`: what a stopwatch around one inference measures (the
  published latencies; use it for full-size spaces).
- `layers`: the sum of the per-layer latencies, i.e. end to end minus
  `fixed_latency_ms`. This is what TuNAS's cost model adds up (per-op lookup
  tables, no fixed term); use it for spaces so small that the fixed part
  dominates.

Every output file that states a `latency_metric` gives its `*_latency_ms`
fields in that metric, and `simulated_end_to_end_latency_ms` besides.
"""

from __future__ import annotations

from cost_models.hardware import HardwareTarget, get_target
from cost_models.simulator import io_terms
from search_spaces import SpecError

END_TO_END = "end_to_end"
LAYERS = "layers"
LATENCY_METRICS = (END_TO_END, LAYERS)


def check_latency_metric(name: str, field: str = "latency_metric") -> str:
    """`name` if it is a known metric, else a SpecError naming `field` and the choices."""
    if name not in LATENCY_METRICS:
        raise SpecError(f"{field}: {name!r} is not a latency metric; use one of "
                        f"{list(LATENCY_METRICS)} (see cost_models/latency_metric.py)")
    return name


def fixed_latency_ms(target: HardwareTarget | str, image_size: int, output_values: int,
                     input_channels: int = 3) -> float:
    """The architecture-independent part of one inference's latency, in ms; the output
    holds `output_values` values (`Task.output_values`: the classes of a classifier)."""
    io_ps, _ = io_terms(image_size * image_size * input_channels, output_values,
                        get_target(target))
    return io_ps / 1e9


def metric_offset_ms(metric: str, target: HardwareTarget | str, image_size: int,
                     output_values: int, input_channels: int = 3) -> float:
    """What to subtract from an end-to-end latency to get `metric` (0 for end_to_end)."""
    if check_latency_metric(metric) == END_TO_END:
        return 0.0
    return fixed_latency_ms(target, image_size, output_values, input_channels)
