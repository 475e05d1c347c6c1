"""Hardware targets for the analytical simulator: the target protocol and the Edge TPU kind.

Every target is a `LatencyModel`: a frozen, named value with a `kind`
(`edgetpu`, `cpu`, `gpu`, `dsp`, ...) that prices one layer
(`layer_cost`, integer ps / fJ) and the per-inference fixed part
(`io_terms`), and says how many bytes a layer's weights take and how many
its cache holds (`param_memory_bytes`, filled in network order).
`cost_models.simulator` and the fast `ArchitectureCoster` only add up what
a target returns, so a new kind is one class with these members (see
`cost_models.processor` for the CPU/GPU/DSP kinds) and bit-identical
accounting comes with it.

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
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from search_spaces.errors import SpecError

if TYPE_CHECKING:
    from cost_models.simulator import LayerCost
    from search_spaces.network import Layer

MIB = 1024 * 1024


@runtime_checkable
class LatencyModel(Protocol):
    """What the simulator needs of a target, whatever its kind."""

    name: str
    kind: str
    param_memory_bytes: int
    static_power_mw: float
    description: str

    def layer_cost(self, layer: Layer, weights_cached: bool = True) -> LayerCost: ...

    def io_terms(self, input_values: int, output_values: int) -> tuple[int, int]: ...

    def weight_bytes(self, layer: Layer) -> int: ...

    def replace(self, **changes: Any) -> LatencyModel: ...

    def to_json(self) -> dict[str, Any]: ...


@dataclasses.dataclass(frozen=True)
class HardwareTarget:
    """One accelerator. Sizes in bytes, times in ms, rates per second, energy in pJ."""

    kind: ClassVar[str] = "edgetpu"
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

    def layer_cost(self, layer: Layer, weights_cached: bool = True) -> LayerCost:
        from cost_models.simulator import edgetpu_layer_cost

        return edgetpu_layer_cost(layer, self, weights_cached)

    def io_terms(self, input_values: int, output_values: int) -> tuple[int, int]:
        from cost_models.simulator import edgetpu_io_terms

        return edgetpu_io_terms(input_values, output_values, self)

    def weight_bytes(self, layer: Layer) -> int:
        return layer.weight_count  # int8

    def replace(self, **changes: Any) -> HardwareTarget:
        """A copy with some fields changed (e.g. calibrated values)."""
        return replace_fields(self, changes)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def replace_fields(target: Any, changes: dict[str, Any]) -> Any:
    """`dataclasses.replace` on a target, refusing fields it does not have."""
    unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(target)})
    if unknown:
        raise SpecError(f"hardware target {target.name!r}: unknown field(s) {unknown}; "
                        f"its fields are {[f.name for f in dataclasses.fields(target)]}")
    return dataclasses.replace(target, **changes)


def target_names() -> tuple[str, ...]:
    from cost_models.targets import TARGETS

    return tuple(sorted(TARGETS))


def get_target(name: str | LatencyModel) -> LatencyModel:
    """The shipped target called `name` (a target object passes through)."""
    if not isinstance(name, str):
        if not isinstance(name, LatencyModel):
            raise SpecError(f"hardware target: {name!r} is neither a target name nor a "
                            "LatencyModel (see cost_models.hardware)")
        return name
    from cost_models.targets import TARGETS

    if name not in TARGETS:
        raise SpecError(f"hardware target {name!r} is unknown; choose one of {sorted(TARGETS)}")
    return TARGETS[name]
