"""Pixel 3 GPU (Adreno 630) through the TF-Lite GPU delegate, fp16: kind `gpu`.

A GPU runs each op as at least one kernel launch: the per-op floor
(`op_floor_ms`) makes small layers cost the same, and depthwise convs use
its wide units poorly. Calibrated on one table: the TF-Lite hosted-models
page's Pixel 3 GPU-delegate MobileNetV1 rows (16: widths 0.25-1.0 x inputs
128-224; precision is the delegate's default, taken as fp16); held out:
the same page's MobileNetV2 1.0 row. Assumed: a 128 KiB cache (the GPU's
L2) holds the first weights; the rest are read from memory every inference. Fields marked FIT:
`tunas-jax calibrate --target pixel3_gpu`.
"""

from cost_models.processor import ProcessorTarget

PIXEL3_GPU = ProcessorTarget(
    name="pixel3_gpu",
    kind="gpu",
    bytes_per_value=2,
    dense_macs_per_s=111600000000.0,  # FIT
    depthwise_efficiency=0.25,
    memory_bandwidth_bytes_per_s=5340000000.0,  # FIT
    param_memory_bytes=128 * 1024,
    op_overhead_ms=0.0,
    op_floor_ms=0.04695,  # FIT
    inference_overhead_ms=0.1786,  # FIT
    energy_per_mac_pj=1.0,
    energy_per_byte_pj=50.0,
    static_power_mw=1000.0,
    description="Pixel 3 Adreno 630 GPU delegate, fp16 (fitted to TF-Lite hosted MobileNetV1)",
)
