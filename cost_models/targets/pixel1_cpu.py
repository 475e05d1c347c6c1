"""Pixel 1 CPU, one big core (Kryo, Snapdragon 821), fp32 TF-Lite: kind `cpu`.

Calibrated on one table: the TF-slim MobileNetV2 README's Pixel 1 latencies
(22 rows: widths 0.35-1.4 x inputs 96-224, fp32), held out: the same
table's MobileNetV3 rows (squeeze-excite and hard-swish, which the fit never
saw). Assumed: 1 MiB of L2 holds cached weights (the big cluster's L2),
fp32 weights and activations; the fields marked FIT come from
`tunas-jax calibrate --target pixel1_cpu` (figures in EXPERIMENTS.md).
A CPU is MAC- and memory-bound with a per-op dispatch cost and runs
depthwise convs near its dense rate.
"""

from cost_models.hardware import MIB
from cost_models.processor import ProcessorTarget

PIXEL1_CPU = ProcessorTarget(
    name="pixel1_cpu",
    kind="cpu",
    bytes_per_value=4,
    dense_macs_per_s=4451000000.0,  # FIT
    depthwise_efficiency=0.3246,  # FIT
    memory_bandwidth_bytes_per_s=8e9,  # assumed: one core's share of LPDDR4
    param_memory_bytes=1 * MIB,
    op_overhead_ms=0.01335,  # FIT
    op_floor_ms=0.0,
    inference_overhead_ms=0.1,
    energy_per_mac_pj=5.0,
    energy_per_byte_pj=100.0,
    static_power_mw=800.0,
    description="Pixel 1 CPU, 1 big core, fp32 (fitted to TF-slim MobileNetV2 latencies)",
)
