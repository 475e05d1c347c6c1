"""Mobile CPU, GPU and DSP targets: a roofline-with-overheads latency model per layer.

A `ProcessorTarget` is a `cost_models.hardware.LatencyModel` of kind `cpu`,
`gpu` or `dsp`. What an Edge TPU's array mapping captures (activation reuse
across a weight-stationary array) is not how these run an op: a CPU/GPU/DSP
kernel is roughly bound by its arithmetic or by the bytes it moves, plus a
cost per op that does not shrink with the op. One layer costs

    max(compute, memory, op_floor) + op_overhead (+ slow_op if the unit handles it badly)

- compute = MACs / MAC rate. Full, group and fully connected layers run at
  `dense_macs_per_s`; depthwise convs at `dense_macs_per_s *
  depthwise_efficiency`. Either way a layer costs in proportion to its own
  MACs, which is what makes a CPU kind to depthwise convs: a depthwise conv
  costs its few MACs at a lower rate, not, as on the Edge TPU's array, the
  cycles of an array it cannot fill. The ratio is fitted per target where
  the published table pins it, assumed otherwise (the target files say
  which).
- memory = bytes moved / `memory_bandwidth_bytes_per_s`: activations read
  and written (`simulator.activation_values` x `bytes_per_value`: 4 fp32,
  2 fp16, 1 int8) plus the layer's weights when they are not in the cache.
  Weights are cached in network order while they fit in
  `param_memory_bytes` (a CPU's L2, a DSP's local memory), the simulator's
  rule for every target; cached weights cost nothing extra.
- `op_floor_ms`: no op finishes faster (a GPU's kernel launch and
  synchronization: what makes small layers cost the same on a GPU);
  `op_overhead_ms`: added to every op (a CPU interpreter's dispatch).
- `slow_op_ms`: added per layer whose op is in `slow_ops` or whose
  activation is in `slow_activations` (a DSP falls back or runs
  non-ReLU activations and elementwise products badly: why it penalizes
  MobileNetV3's hard-swish and squeeze-excite).
- Per inference: `inference_overhead_ms` (a DSP's fixed RPC/setup floor,
  a GPU delegate's transfers) plus the input and output over memory.

Batch norm and ReLU-like activations fused into a conv (`batch_norm`,
`activation`) cost nothing beyond `slow_op_ms`, as they ride the kernel.
Energy: MACs x pJ/MAC + bytes moved x pJ/B (+ static power x latency, charged
per network). Every layer is rounded to integer ps / fJ once, as for the
Edge TPU targets, so the fast coster stays bit-identical to `simulate`.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from cost_models.hardware import replace_fields
from cost_models.simulator import FJ_PER_PJ, PS_PER_S, LayerCost, activation_values, op_label
from search_spaces.errors import SpecError
from search_spaces.network import Layer

PROCESSOR_KINDS = ("cpu", "gpu", "dsp")


@dataclasses.dataclass(frozen=True)
class ProcessorTarget:
    """One mobile processor. Rates per second, times in ms, sizes in bytes, energy in pJ."""

    name: str
    kind: str  # one of PROCESSOR_KINDS
    bytes_per_value: int  # 4 fp32, 2 fp16, 1 int8 (weights and activations)
    dense_macs_per_s: float
    depthwise_efficiency: float  # depthwise MAC rate / dense MAC rate
    memory_bandwidth_bytes_per_s: float
    param_memory_bytes: int  # weight cache, filled in network order
    op_overhead_ms: float
    op_floor_ms: float
    inference_overhead_ms: float
    slow_op_ms: float = 0.0
    slow_ops: tuple[str, ...] = ()
    slow_activations: tuple[str, ...] = ()
    energy_per_mac_pj: float = 1.0
    energy_per_byte_pj: float = 20.0
    static_power_mw: float = 500.0
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in PROCESSOR_KINDS:
            raise SpecError(f"hardware target {self.name!r}: kind {self.kind!r} is unknown; "
                            f"a ProcessorTarget is one of {PROCESSOR_KINDS}")
        if self.bytes_per_value not in (1, 2, 4):
            raise SpecError(f"hardware target {self.name!r}: bytes_per_value "
                            f"{self.bytes_per_value} must be 1 (int8), 2 (fp16) or 4 (fp32)")
        if not isinstance(self.param_memory_bytes, int) or self.param_memory_bytes < 1:
            # The learned regressor measures weights in units of this cache.
            raise SpecError(f"hardware target {self.name!r}: param_memory_bytes "
                            f"{self.param_memory_bytes!r} must be a positive integer; give a "
                            "processor with no weight cache a small one (e.g. its L2)")
        if not 0.0 < self.depthwise_efficiency <= 1.0:
            raise SpecError(f"hardware target {self.name!r}: depthwise_efficiency "
                            f"{self.depthwise_efficiency} must be in (0, 1]")

    # ---- LatencyModel -------------------------------------------------------
    def weight_bytes(self, layer: Layer) -> int:
        return layer.weight_count * self.bytes_per_value

    def is_slow(self, layer: Layer) -> bool:
        return layer.op in self.slow_ops or (layer.activation is not None
                                             and layer.activation in self.slow_activations)

    def layer_cost(self, layer: Layer, weights_cached: bool = True) -> LayerCost:
        macs = layer.macs
        weight_bytes = self.weight_bytes(layer)
        depthwise = (layer.op == "conv2d" and layer.groups > 1
                     and layer.groups == layer.input_shape[2])
        rate = self.dense_macs_per_s * (self.depthwise_efficiency if depthwise else 1.0)
        compute_s = macs / rate
        moved = activation_values(layer) * self.bytes_per_value + (
            0 if weights_cached else weight_bytes)
        memory_s = moved / self.memory_bandwidth_bytes_per_s
        busy_s = max(compute_s, memory_s)
        latency_s = (max(busy_s, self.op_floor_ms * 1e-3) + self.op_overhead_ms * 1e-3
                     + (self.slow_op_ms * 1e-3 if self.is_slow(layer) else 0.0))
        if latency_s - busy_s > busy_s:
            bound = "overhead"  # the per-op floor / overhead / slow-op penalty dominates
        else:
            bound = "compute" if compute_s >= memory_s else "memory"
        energy_pj = macs * self.energy_per_mac_pj + moved * self.energy_per_byte_pj
        return LayerCost(
            name=layer.name, op=op_label(layer), macs=macs, weight_bytes=weight_bytes,
            weights_cached=weights_cached, compute_cycles=0, compute_ms=compute_s * 1e3,
            memory_ms=memory_s * 1e3, bound=bound,
            utilization=macs / (latency_s * self.dense_macs_per_s),
            onchip_bytes=weight_bytes if weights_cached else 0, offchip_bytes=moved,
            latency_ps=round(latency_s * PS_PER_S), energy_fj=round(energy_pj * FJ_PER_PJ))

    def io_terms(self, input_values: int, output_values: int) -> tuple[int, int]:
        io_bytes = (input_values + output_values) * self.bytes_per_value
        seconds = io_bytes / self.memory_bandwidth_bytes_per_s + self.inference_overhead_ms * 1e-3
        return round(seconds * PS_PER_S), round(io_bytes * self.energy_per_byte_pj * FJ_PER_PJ)

    def replace(self, **changes: Any) -> ProcessorTarget:
        """A copy with some fields changed (e.g. calibrated values)."""
        return replace_fields(self, changes)

    def to_json(self) -> dict[str, Any]:
        # JSON values (tuples as lists): what a reader of the JSON gets back.
        return json.loads(json.dumps(dataclasses.asdict(self)))
