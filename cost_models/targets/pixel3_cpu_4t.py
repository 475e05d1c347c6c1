"""Pixel 3 CPU, 4 threads on the big cores (Cortex-A75, Snapdragon 845), fp32: kind `cpu`.

Thread count is part of the device (Pixel 3 MobileNetV2 fp32: 56 ms on one
core, 17.5 ms on four), so this is a target of its own. Calibrated on one
table: the TF-Lite hosted-models page's Pixel 3 CPU (4 threads) fp32
MobileNetV1 rows (16: widths 0.25-1.0 x inputs 128-224); held out: the
same page's MobileNetV2 1.0 row. Assumed: 2 MiB of shared cache holds cached
weights. Fields marked FIT: `tunas-jax calibrate --target pixel3_cpu_4t`.
"""

from cost_models.hardware import MIB
from cost_models.processor import ProcessorTarget

PIXEL3_CPU_4T = ProcessorTarget(
    name="pixel3_cpu_4t",
    kind="cpu",
    bytes_per_value=4,
    dense_macs_per_s=30780000000.0,  # FIT
    depthwise_efficiency=0.1094,  # FIT
    memory_bandwidth_bytes_per_s=6431000000.0,  # FIT
    param_memory_bytes=2 * MIB,
    op_overhead_ms=0.005121,  # FIT
    op_floor_ms=0.0,
    inference_overhead_ms=0.1,
    energy_per_mac_pj=5.0,
    energy_per_byte_pj=100.0,
    static_power_mw=2000.0,
    description="Pixel 3 CPU, 4 big-core threads, fp32 (fitted to TF-Lite hosted MobileNetV1)",
)
