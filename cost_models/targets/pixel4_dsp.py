"""Pixel 4 Hexagon DSP (Snapdragon 855, HVX), int8: kind `dsp`.

A DSP has a fixed per-inference floor (Pixel 4: MobileNetV2 1.0x -> 2.0x
width only moves 3.9 -> 6.9 ms) and penalizes ops it runs badly: non-ReLU
activations and elementwise products (MobileNetV3's hard-swish and
squeeze-excite; `slow_ops`/`slow_activations`, `slow_op_ms` each).
Calibrated on one table: the MobileNetV4 paper's table 6 Pixel 4 Hexagon
int8 rows of MobileNetV1 1.0, MobileNetV2 0.5/1.0/1.5/2.0 and
MobileNetV3-Large 0.5 (the only fit row with slow ops); held out: the same
table's MobileNet-MultiHW-AVG and -MAX 1.5x. Assumed: 1 MiB of local memory
caches weights. Fields marked FIT: `tunas-jax calibrate --target pixel4_dsp`.
"""

from cost_models.hardware import MIB
from cost_models.processor import ProcessorTarget

PIXEL4_DSP = ProcessorTarget(
    name="pixel4_dsp",
    kind="dsp",
    bytes_per_value=1,
    dense_macs_per_s=345300000000.0,  # FIT
    depthwise_efficiency=0.25,
    memory_bandwidth_bytes_per_s=15e9,
    param_memory_bytes=1 * MIB,
    op_overhead_ms=0.005,
    op_floor_ms=0.0,
    inference_overhead_ms=1.876,  # FIT
    slow_op_ms=0.014,  # FIT
    slow_ops=("mul",),
    slow_activations=("hard_swish", "swish", "hard_sigmoid", "sigmoid", "gelu"),
    energy_per_mac_pj=0.5,
    energy_per_byte_pj=20.0,
    static_power_mw=300.0,
    description="Pixel 4 Hexagon 690 DSP, int8 (fitted to MobileNetV4 paper table 6)",
)
