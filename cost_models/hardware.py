"""Hardware targets for the analytical simulator: what one accelerator is made of.

A `HardwareTarget` is a frozen dataclass of the quantities the simulator's
model uses (see `cost_models.simulator` for how each one enters the cost).
Every name carries its unit. Shipped targets live one per file in
`cost_models/targets/`; `get_target(name)` looks them up.

The model of the compute array: `pe_rows` x `pe_cols` processing elements,
each with `simd_lanes` int8 MAC lanes, one MAC per lane per cycle at
`clock_hz`. Rows take the reduction dimension (input channels per group,
optionally times folded kernel taps); columns and the lanes inside each PE
take the output channels of ONE group, because a fetched activation is
broadcast along its row to every column and lane (that broadcast is the
activation reuse a full conv has and a depthwise conv lacks).
`compute_efficiency` is the achievable fraction of that cycle count (stalls
the model does not see), fitted by `cost_models.calibration`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from search_spaces.errors import SpecError

MIB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class HardwareTarget:
    """One accelerator. Sizes in bytes, times in ms, rates per second, energy in pJ."""

    name: str
    # Compute array.
    pe_rows: int
    pe_cols: int
    simd_lanes: int
    clock_hz: float
    compute_efficiency: float
    # On-chip memory: parameters cached across inferences, activations per layer.
    param_memory_bytes: int
    activation_memory_bytes: int
    onchip_bandwidth_bytes_per_s: float
    # Off-chip / host link: uncached parameters (streamed every inference),
    # spilled activations, and the input image / output logits.
    offchip_bandwidth_bytes_per_s: float
    # Fixed costs.
    layer_overhead_ms: float
    inference_overhead_ms: float
    # Energy.
    energy_per_mac_pj: float
    energy_per_onchip_byte_pj: float
    energy_per_offchip_byte_pj: float
    static_power_mw: float
    description: str = ""

    @property
    def macs_per_cycle(self) -> int:
        return self.pe_rows * self.pe_cols * self.simd_lanes

    @property
    def peak_macs_per_s(self) -> float:
        """int8 MAC throughput of the array at 100% utilization."""
        return self.macs_per_cycle * self.clock_hz

    @property
    def peak_int8_tops(self) -> float:
        """Peak int8 tera-operations per second (1 MAC = 2 ops)."""
        return 2.0 * self.peak_macs_per_s / 1e12

    def replace(self, **changes: Any) -> HardwareTarget:
        """A copy with some fields changed (e.g. calibrated values)."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise SpecError(f"hardware target {self.name!r}: unknown field(s) {unknown}")
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def target_names() -> tuple[str, ...]:
    from cost_models.targets import TARGETS

    return tuple(sorted(TARGETS))


def get_target(name: str | HardwareTarget) -> HardwareTarget:
    """The shipped target called `name` (a HardwareTarget passes through)."""
    if isinstance(name, HardwareTarget):
        return name
    from cost_models.targets import TARGETS

    if name not in TARGETS:
        raise SpecError(f"hardware target {name!r} is unknown; choose one of {sorted(TARGETS)}")
    return TARGETS[name]
