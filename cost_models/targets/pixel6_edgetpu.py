"""Pixel 6 (Google Tensor) Edge TPU: an assumed microarchitecture fitted to nine latencies.

The microarchitecture is not public: only model-level latencies of
MobileNetEdgeTPU v1 (w1.0..w1.75) and v2 (tiny..l) are. The array shape
(64 rows x 16 columns of 4-lane SIMD PEs: SIMD that needs at least 4
output channels per group to fill, the paper's reason for a minimum group size),
clock, memory sizes and energy values are assumptions of plausible size;
the values marked FIT are fitted by `tunas-jax calibrate --target
pixel6_edgetpu` (fit table in `cost_models/calibration.py`). Treat absolute
numbers as a calibrated proxy, not a description of the real chip.
"""

from cost_models.hardware import MIB, HardwareTarget

PIXEL6_EDGETPU = HardwareTarget(
    name="pixel6_edgetpu",
    pe_rows=64,
    pe_cols=16,
    simd_lanes=4,
    clock_hz=1.0e9,
    compute_efficiency=0.9757,  # FIT
    param_memory_bytes=8 * MIB,
    activation_memory_bytes=4 * MIB,
    onchip_bandwidth_bytes_per_s=256 * 1.0e9,  # 256 B/cycle (assumed)
    offchip_bandwidth_bytes_per_s=10340000000.0,  # FIT: LPDDR5 share
    layer_overhead_ms=1e-05,  # fixed: the array model counts pipeline fill
    inference_overhead_ms=0.4,  # FIT
    energy_per_mac_pj=0.2,
    energy_per_onchip_byte_pj=1.0,
    energy_per_offchip_byte_pj=20.0,
    static_power_mw=300.0,
    description="Pixel 6 Edge TPU (assumed 64x16x4-lane array; fitted to published latencies)",
)
