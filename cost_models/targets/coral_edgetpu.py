"""Coral USB Accelerator Edge TPU, from public facts (coral.ai datasheet and benchmarks),
calibrated on the Coral rows.

Public: 4 TOPS int8 at about 2 TOPS/W; a 64x64 PE systolic array (so one MAC
lane per PE at 480 MHz gives 3.93 TOPS); about 8 MiB of on-chip memory that
caches parameters; parameters that do not fit are streamed over USB from the
host on every inference. Assumed (not public): the split of on-chip memory
for activations, on-chip bandwidth, and the energy split between MACs, SRAM
and the USB link (chosen so that a fully busy array draws about 2 W).
Fitted by `tunas-jax calibrate --target coral_edgetpu` (values marked FIT):
see `cost_models/calibration.py` for the fit table.
"""

from cost_models.hardware import MIB, HardwareTarget

CORAL_EDGETPU = HardwareTarget(
    name="coral_edgetpu",
    pe_rows=64,
    pe_cols=64,
    simd_lanes=1,
    clock_hz=480e6,
    compute_efficiency=0.6053,  # FIT
    param_memory_bytes=8 * MIB,
    activation_memory_bytes=4 * MIB,
    onchip_bandwidth_bytes_per_s=128 * 480e6,  # 128 B/cycle (assumed)
    offchip_bandwidth_bytes_per_s=442600000.0,  # FIT: effective USB 3 throughput
    layer_overhead_ms=1e-05,  # fixed: the array model counts pipeline fill
    inference_overhead_ms=0.4653,  # FIT: USB round trip, driver
    energy_per_mac_pj=0.4,
    energy_per_onchip_byte_pj=2.0,
    energy_per_offchip_byte_pj=200.0,
    static_power_mw=400.0,
    description="Coral USB Accelerator (Edge TPU, 64x64 int8 PEs, 8 MiB param cache, USB 3)",
)
