"""Analytical Edge TPU performance and energy model of one inference (int8, batch 1),
and the per-layer dispatch every target kind goes through.

`layer_cost(layer, target, cached)` and `io_terms` ask the target's own
latency model (`cost_models.hardware.LatencyModel`): the Edge TPU model is
the rest of this module; CPU/GPU/DSP targets are `cost_models.processor`.
`simulate` and the fast `ArchitectureCoster` only add up what those return,
so every kind keeps the integer accounting below.

Input: any `search_spaces.network.NetworkDescription`; output: latency_ms and
energy_mj per inference plus a per-layer breakdown. The model keeps the
effects the Edge TPU NAS paper's argument rests on and nothing finer:

Compute ops (conv2d, conv2d_transpose, fully_connected, matmul, attention)
are mapped onto a weight-stationary array of `pe_rows` x `pe_cols` PEs with
`simd_lanes` lanes each (`HardwareTarget`):
- rows take the reduction depth K = input channels per group (times the
  kernel taps folded in, im2col-style: the mapper tries folding 1, kw or
  kh*kw taps and keeps the fastest; unfolded taps run as extra passes);
- columns x lanes take N = output channels per group. An activation entering
  a row is broadcast to every column and lane, so it is reused across the
  output channels of its group only: a full conv fills the array, a group
  conv fills K x N of it, a depthwise conv (K = k*k, N = 1) almost nothing.
  Lanes of one PE share the activation, so a group narrower than the lanes
  wastes lanes (why wide SIMD needs group sizes >= lanes);
- small groups are packed block-diagonally (min(rows // K, cols // PE
  columns per group) groups per pass);
- each pass streams the output pixels through the array (a transposed conv
  streams its input pixels, each scattering its kernel; a matmul [B, M, K] x
  [B, K, N] is B groups of M pixels; attention is its four C x C projections
  plus the per-head Q.K^T and scores.V matmuls); loading the next weight tile
  (pe_rows cycles) is double-buffered behind that, so a pass costs
  max(pixels, pe_rows) cycles. Late stages (small H'W', many channels, hence
  many weight tiles) become weight-load bound: the reason Fused-IBNs get
  expensive there;
- plus one pipeline fill of pe_rows + pe_cols cycles per layer, and
  time = cycles / (clock_hz * compute_efficiency). Dilation changes which
  pixels a tap reads, not the work.

Memory-bound ops (batch_norm, activation, add, mul, concat, pool, resize,
reshape, flatten, softmax, layer_norm, argmax) do no array work: they cost
the bytes they move through on-chip memory (every input read once, softmax
and layer norm read theirs twice: statistics, then the normalization; the
output written once) at `onchip_bandwidth_bytes_per_s`. Batch norm and an
activation fused into a conv (`batch_norm: true`, `activation`) are free:
they ride the array's output path.

Memory: int8, one byte per weight and per activation. Weights are cached in
`param_memory_bytes` in network order (inclusive running sum <= capacity,
the Edge TPU compiler's behaviour); cached weights are read on chip, the
rest are streamed from off-chip/host every inference. A layer's activations
(inputs + output) that exceed `activation_memory_bytes` spill off chip.
memory time = on-chip bytes / on-chip bandwidth + off-chip bytes /
off-chip bandwidth.

A layer costs max(compute, memory) + `layer_overhead_ms`; its `bound` names
the larger term: `compute`, `memory` (on-chip traffic or spilled
activations) or `streaming` (its uncached weights over the off-chip link
take longer than anything else). The network adds `inference_overhead_ms`
and moving the input image and the output over the off-chip link. Energy =
MACs * pJ/MAC + on-chip bytes * pJ/B + off-chip bytes * pJ/B + static power
* latency.

Totals are accumulated in integer picoseconds and femtojoules (each layer
rounded once), so they do not depend on summation order: the fast
`ArchitectureCoster`, which adds cached per-block subtotals, gives exactly
the numbers `simulate` gives.
"""

from __future__ import annotations

import dataclasses
import math

from cost_models.hardware import HardwareTarget, LatencyModel, get_target
from search_spaces.network import Layer, NetworkDescription

PS_PER_S = 1e12
FJ_PER_PJ = 1e3


@dataclasses.dataclass(frozen=True)
class LayerCost:
    """One layer's cost. `utilization` is MACs / (array cycles * MACs per cycle)."""

    name: str
    op: str
    macs: int
    weight_bytes: int
    weights_cached: bool
    compute_cycles: int
    compute_ms: float
    memory_ms: float
    bound: str  # "compute", "memory" or "streaming"
    utilization: float
    onchip_bytes: int
    offchip_bytes: int
    latency_ps: int
    energy_fj: int

    @property
    def latency_ms(self) -> float:
        return self.latency_ps / 1e9

    @property
    def energy_mj(self) -> float:
        """Dynamic energy of the layer (static power is charged per network)."""
        return self.energy_fj / 1e12


@dataclasses.dataclass(frozen=True)
class SimulationResult:
    network: str
    target: str
    latency_ms: float
    energy_mj: float
    params: int
    macs: int
    weight_bytes: int
    streamed_weight_bytes: int
    io_ms: float
    layers: tuple[LayerCost, ...]

    def as_dict(self) -> dict[str, float]:
        return {"latency_ms": self.latency_ms, "energy_mj": self.energy_mj,
                "params": self.params, "macs": self.macs}

    def to_json(self) -> dict:
        """Totals and one entry per layer (what `simulate --format json` prints)."""
        return {
            "network": self.network, "target": self.target, "latency_ms": self.latency_ms,
            "energy_mj": self.energy_mj, "params": self.params, "macs": self.macs,
            "weight_bytes": self.weight_bytes,
            "streamed_weight_bytes": self.streamed_weight_bytes, "io_ms": self.io_ms,
            "layers": [{**dataclasses.asdict(c), "latency_ms": c.latency_ms}
                       for c in self.layers],
        }

    def table(self) -> str:
        """A per-layer text table."""
        rows = [f"{'layer':28s} {'op':15s} {'MMACs':>8s} {'cycles':>9s} {'comp_ms':>8s} "
                f"{'mem_ms':>8s} {'bound':9s} {'util':>5s} {'cached':6s} {'lat_ms':>8s}"]
        for c in self.layers:
            rows.append(f"{c.name[:28]:28s} {c.op:15s} {c.macs / 1e6:8.2f} {c.compute_cycles:9d} "
                        f"{c.compute_ms:8.4f} {c.memory_ms:8.4f} {c.bound:9s} "
                        f"{c.utilization:5.2f} {('yes' if c.weights_cached else 'NO'):6s} "
                        f"{c.latency_ms:8.4f}")
        rows.append(f"total: {self.latency_ms:.4f} ms, {self.energy_mj:.4f} mJ, "
                    f"{self.params / 1e6:.3f} M params, {self.macs / 1e6:.1f} MMACs, "
                    f"{self.streamed_weight_bytes / 2**20:.2f} MiB weights streamed")
        return "\n".join(rows)


def mapping_cycles(pixels: int, kernel_taps: int, kernel_size: int, cin_per_group: int,
                   cout_per_group: int, groups: int, target: HardwareTarget) -> int:
    """Array cycles of a (group) conv / matmul under the mapping in the module docstring.

    `kernel_size` is the tap count of one kernel row (kw): the mapper may fold
    1, kw or all `kernel_taps` taps into the rows.
    """
    rows, cols, lanes = target.pe_rows, target.pe_cols, target.simd_lanes
    pe_cols_per_group = -(-cout_per_group // lanes)
    col_tiles = -(-pe_cols_per_group // cols)
    pass_cycles = max(pixels, rows)
    best = None
    for fold in sorted({1, kernel_size, kernel_taps}):
        depth = cin_per_group * fold
        row_tiles = -(-depth // rows)
        if row_tiles == 1 and col_tiles == 1:
            pack = min(rows // depth, cols // pe_cols_per_group, groups)
        else:
            pack = 1
        passes = -(-groups // pack) * row_tiles * col_tiles * (kernel_taps // fold)
        cycles = passes * pass_cycles
        best = cycles if best is None else min(best, cycles)
    return best + rows + cols


def _compute_cycles(layer: Layer, target: HardwareTarget) -> int:
    op = layer.op
    if op in ("conv2d", "conv2d_transpose"):
        # A conv streams its output pixels; a transposed conv its input pixels.
        h, w, _ = layer.output_shape if op == "conv2d" else layer.input_shape
        cout = layer.output_shape[2]
        return mapping_cycles(h * w, layer.kernel_taps, layer.kernel_hw[1],
                              layer.input_shape[2] // layer.groups, cout // layer.groups,
                              layer.groups, target)
    if op == "fully_connected":
        return mapping_cycles(1, 1, 1, layer.input_shape[2], layer.output_shape[2], 1, target)
    if op == "matmul":
        batch, m, n = layer.output_shape
        return mapping_cycles(m, 1, 1, layer.matmul_depth, n, batch, target)
    if op == "attention":
        h, w, c = layer.input_shape
        tokens, heads = h * w, layer.num_heads
        return (mapping_cycles(tokens, 1, 1, c, 3 * c, 1, target)       # Q, K, V
                + mapping_cycles(tokens, 1, 1, c // heads, tokens, heads, target)  # Q.K^T
                + mapping_cycles(tokens, 1, 1, tokens, c // heads, heads, target)  # scores.V
                + mapping_cycles(tokens, 1, 1, c, c, 1, target))        # output projection
    return 0


# Reads of each input by the memory-bound ops that pass over it twice
# (statistics first, then the normalization); every other op reads once.
INPUT_PASSES = {"softmax": 2, "layer_norm": 2}


def activation_values(layer: Layer) -> int:
    """Activation values the layer reads and writes (bytes at int8)."""
    out = math.prod(layer.output_shape)
    if layer.op in ("add", "mul"):
        # Inputs other than the first are as big as the output unless they
        # broadcast; the layer alone knows only the first input's shape, so a
        # broadcast operand is charged at most the output's size.
        return math.prod(layer.input_shape) + (len(layer.inputs) - 1) * out + out
    if layer.op == "concat":
        return 2 * out  # the inputs together are as big as the output
    if layer.op == "matmul":
        batch, _, n = layer.output_shape
        return math.prod(layer.input_shape) + batch * layer.matmul_depth * n + out
    if layer.op == "attention":
        h, w, c = layer.input_shape
        tokens = h * w
        # Q, K, V written and read back; the scores written, read by the
        # softmax twice, its output written and read by scores.V.
        internal = 6 * tokens * c + 5 * layer.num_heads * tokens * tokens
        return math.prod(layer.input_shape) + internal + out
    return INPUT_PASSES.get(layer.op, 1) * math.prod(layer.input_shape) + out


def layer_cost(layer: Layer, target: LatencyModel | str, weights_cached: bool = True
               ) -> LayerCost:
    """The cost of one layer on any target, given whether its weights sit in its cache."""
    if isinstance(target, str):  # objects skip get_target's protocol check: hot path
        target = get_target(target)
    return target.layer_cost(layer, weights_cached)


def edgetpu_layer_cost(layer: Layer, target: HardwareTarget, weights_cached: bool = True,
                       compute_cycles: int | None = None) -> LayerCost:
    """The Edge TPU model's cost of one layer (`HardwareTarget.layer_cost`).

    `compute_cycles` replaces the array model's cycle count (the cycle-accurate
    fidelity passes SCALE-Sim's); memory, energy and overheads stay analytical.
    """
    macs = layer.macs
    weight_bytes = layer.weight_count  # int8; batch norm folds into the weights
    cycles = _compute_cycles(layer, target) if compute_cycles is None else compute_cycles
    compute_s = cycles / (target.clock_hz * target.compute_efficiency)
    act_bytes = activation_values(layer)
    spilled = max(0, act_bytes - target.activation_memory_bytes)
    onchip = act_bytes - spilled + (weight_bytes if weights_cached else 0)
    offchip = spilled + (0 if weights_cached else weight_bytes)
    stream_s = 0.0 if weights_cached else weight_bytes / target.offchip_bandwidth_bytes_per_s
    memory_s = (onchip / target.onchip_bandwidth_bytes_per_s
                + offchip / target.offchip_bandwidth_bytes_per_s)
    latency_s = max(compute_s, memory_s) + target.layer_overhead_ms * 1e-3
    energy_pj = (macs * target.energy_per_mac_pj + onchip * target.energy_per_onchip_byte_pj
                 + offchip * target.energy_per_offchip_byte_pj)
    utilization = macs / (cycles * target.macs_per_cycle) if cycles else 0.0
    if compute_s >= memory_s:
        bound = "compute"
    else:
        # Streaming when the weights' trip over the link is the largest part.
        bound = "streaming" if stream_s > memory_s - stream_s else "memory"
    return LayerCost(
        name=layer.name, op=op_label(layer), macs=macs, weight_bytes=weight_bytes,
        weights_cached=weights_cached, compute_cycles=cycles, compute_ms=compute_s * 1e3,
        memory_ms=memory_s * 1e3, bound=bound,
        utilization=utilization, onchip_bytes=onchip, offchip_bytes=offchip,
        latency_ps=round(latency_s * PS_PER_S), energy_fj=round(energy_pj * FJ_PER_PJ))


def op_label(layer: Layer) -> str:
    if layer.op not in ("conv2d", "conv2d_transpose"):
        if layer.op == "activation":
            return layer.activation or "activation"
        if layer.op == "resize":
            return f"resize_{layer.mode}"
        return layer.op
    kh, kw = layer.kernel_hw
    cin = layer.input_shape[2]
    if layer.op == "conv2d_transpose":
        kind = "tconv"
    elif layer.groups == 1:
        kind = "conv"
    elif layer.groups == cin:
        kind = "dw"
    else:
        kind = "gconv"
    label = f"{kind}{kh}x{kw}"
    if kind == "dw" and layer.output_shape[2] != cin:
        label += f"*{layer.output_shape[2] // cin}"  # depth multiplier
    if kind == "gconv" or (kind == "tconv" and layer.groups > 1):
        label += f"/g{layer.groups}"
    return label


def io_terms(input_values: int, output_values: int, target: LatencyModel) -> tuple[int, int]:
    """(ps, fJ) of the per-inference overhead and moving input and output (any target)."""
    return target.io_terms(input_values, output_values)


def edgetpu_io_terms(input_bytes: int, output_bytes: int, target: HardwareTarget
                     ) -> tuple[int, int]:
    """(ps, fJ) of the per-inference overhead and moving input and output off chip."""
    io_bytes = input_bytes + output_bytes
    seconds = io_bytes / target.offchip_bandwidth_bytes_per_s + target.inference_overhead_ms * 1e-3
    return round(seconds * PS_PER_S), round(io_bytes * target.energy_per_offchip_byte_pj
                                            * FJ_PER_PJ)


def finish(latency_ps: int, energy_fj: int, target: LatencyModel) -> tuple[float, float]:
    """(latency_ms, energy_mj) from exact integer totals; static power charged on latency."""
    latency_ms = latency_ps / 1e9
    return latency_ms, energy_fj / 1e12 + target.static_power_mw * latency_ms * 1e-6


def cached_mask(weight_bytes: list[int], target: LatencyModel) -> list[bool]:
    """Which layers' weights the on-chip cache holds (network order, running sum)."""
    out, running = [], 0
    for w in weight_bytes:
        running += w
        out.append(running <= target.param_memory_bytes)
    return out


def simulate(network: NetworkDescription, target: LatencyModel | str) -> SimulationResult:
    """Latency, energy and a per-layer breakdown of one inference of `network` on `target`."""
    target = get_target(target)
    layers = network.layers
    costs = tuple(target.layer_cost(layer, c)
                  for layer, c in zip(layers, weights_cached(network, target), strict=True))
    return assemble(network, target, costs)


def weights_cached(network: NetworkDescription, target: LatencyModel) -> list[bool]:
    """Per layer, whether `target`'s cache holds its weights."""
    return cached_mask([target.weight_bytes(layer) for layer in network.layers], target)


def assemble(network: NetworkDescription, target: LatencyModel, costs: tuple[LayerCost, ...]
             ) -> SimulationResult:
    """The network's result from its per-layer costs (adds I/O and static power)."""
    layers = network.layers
    io_ps, io_fj = io_terms(math.prod(network.input_shape), math.prod(layers[-1].output_shape),
                            target)
    latency_ms, energy_mj = finish(sum(c.latency_ps for c in costs) + io_ps,
                                   sum(c.energy_fj for c in costs) + io_fj, target)
    return SimulationResult(
        network=network.name, target=target.name, latency_ms=latency_ms, energy_mj=energy_mj,
        params=network.params, macs=network.macs,
        weight_bytes=sum(c.weight_bytes for c in costs),
        streamed_weight_bytes=sum(c.weight_bytes for c in costs if not c.weights_cached),
        io_ms=io_ps / 1e9, layers=costs)
