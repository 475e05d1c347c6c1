"""Fast, exact costs of many architectures of one search space (dataset generation).

`ArchitectureCoster(space, target).cost_batch(indices)` gives, for every index
vector, exactly what `simulate(describe(space.decode(idx), ...), target)`
gives, thousands of architectures per second per core. How:

- A network is the stem, one segment per block position and the head
  (head conv, pool, logits). A segment's layers depend only on a few
  decisions (its own, its input and output widths), so each segment's
  per-layer costs are computed once per distinct choice of those decisions
  and cached. Inactive decisions are zeroed first (`space.active_mask`), so
  e.g. a depthwise block does not get a new entry per unused group size.
- The only whole-network effect is which weights the on-chip cache holds:
  weights are cached in network order while the running sum fits. Each
  segment stores its subtotal with all weights cached and with all weights
  streamed; per architecture a prefix sum of segment weight bytes says which
  applies, and the (at most one) segment straddling the capacity is summed
  layer by layer.
- Totals are integer picoseconds / femtojoules (see `cost_models.simulator`),
  so adding per-segment subtotals gives bit-identical results.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from cost_models.hardware import LatencyModel, get_target
from cost_models.simulator import LayerCost, finish, io_terms
from search_spaces import Layer, SearchSpace, Unit
from search_spaces.graph import node_layers
from search_spaces.schema import mixed_radix
from tasks import Classification, Task


@dataclasses.dataclass(frozen=True)
class _SegmentCost:
    weight_bytes: int
    first_weight_bytes: int  # of the first layer that has weights
    params: int
    macs: int
    ps_cached: int
    ps_streamed: int
    fj_cached: int
    fj_streamed: int
    layer_weights: tuple[int, ...]
    layer_ps: tuple[tuple[int, int], ...]  # (cached, streamed) per layer
    layer_fj: tuple[tuple[int, int], ...]


def _segment_cost(layers: Sequence[Layer], target: LatencyModel,
                  memo: dict[tuple[Layer, bool], LayerCost]) -> _SegmentCost:
    def cost(layer: Layer, cached: bool) -> LayerCost:
        # Names do not enter the cost: blocks of the same shape share entries.
        key = (dataclasses.replace(layer, name="", inputs=("",) * len(layer.inputs)), cached)
        if key not in memo:
            memo[key] = target.layer_cost(layer, cached)
        return memo[key]

    cached = [cost(layer, True) for layer in layers]
    streamed = [cost(layer, False) for layer in layers]
    weights = tuple(target.weight_bytes(layer) for layer in layers)
    return _SegmentCost(
        weight_bytes=sum(weights),
        first_weight_bytes=next((w for w in weights if w), 0),
        params=sum(layer.params for layer in layers),
        macs=sum(layer.macs for layer in layers),
        ps_cached=sum(c.latency_ps for c in cached),
        ps_streamed=sum(c.latency_ps for c in streamed),
        fj_cached=sum(c.energy_fj for c in cached),
        fj_streamed=sum(c.energy_fj for c in streamed),
        layer_weights=weights,
        layer_ps=tuple((c.latency_ps, s.latency_ps) for c, s in zip(cached, streamed, strict=True)),
        layer_fj=tuple((c.energy_fj, s.energy_fj) for c, s in zip(cached, streamed, strict=True)),
    )


@dataclasses.dataclass(frozen=True)
class _Segment:
    unit: Unit
    positions: tuple[int, ...]  # decision positions the segment depends on
    radix: np.ndarray  # mixed-radix multipliers turning those indices into one code
    input_size: int  # spatial size of the segment's input


class ArchitectureCoster:
    """Latency/energy/params/MACs of index vectors of `space` on `target`, with `task`'s
    head (default: classification with `num_classes`, default the space's)."""

    def __init__(self, space: SearchSpace, target: LatencyModel | str,
                 image_size: int | None = None, num_classes: int | None = None,
                 task: Task | None = None, input_channels: int = 3) -> None:
        self.space = space
        self.target = get_target(target)
        self.image_size = image_size or space.default_image_size
        self.task = task or Classification(num_classes or space.default_num_classes)
        self.input_channels = input_channels
        self.segments = self._plan()
        self._ids: list[dict[int, int]] = [{} for _ in self.segments]  # canonical code -> entry
        self._raw_ids: list[dict[int, int]] = [{} for _ in self.segments]  # raw code -> entry
        self._entries: list[_SegmentCost] = []
        self._memo: dict[tuple[Layer, bool], LayerCost] = {}
        self._table: dict[str, np.ndarray] = {}
        head = self._layers_of(self.segments[-1], np.zeros(space.num_decisions, np.int64))
        output_values = math.prod(head[-1].output_shape)
        io_ps, io_fj = io_terms(self.image_size**2 * input_channels, output_values, self.target)
        self._io_ps, self._io_fj = io_ps, io_fj

    @property
    def num_classes(self) -> int:
        return self.task.num_classes

    # ---- planning -----------------------------------------------------------
    def _plan(self) -> list[_Segment]:
        segments, size = [], self.image_size
        units = self.space.units
        for unit in units:
            positions = unit.positions
            if unit.kind == "head":  # the task's head may read any endpoint's width
                positions = tuple(dict.fromkeys(positions + tuple(
                    units[i].output_width.position for i in self.space.endpoint_units.values()
                    if units[i].output_width.position is not None) + unit.task_positions))
            radix = mixed_radix([self.space.num_choices[p] for p in positions])
            segments.append(_Segment(unit, positions, np.asarray(radix, dtype=np.int64), size))
            size = math.ceil(size / unit.stride)
        return segments

    # ---- segment cache ------------------------------------------------------
    def _layers_of(self, seg: _Segment, row: np.ndarray) -> list[Layer]:
        """The description layers of one unit (the head's with the task's head layers),
        computed from the unit's lowering alone (decoding whole networks dominated
        misses)."""
        unit = seg.unit
        nodes = self.space.unit_nodes(unit, row, self.input_channels)
        size = seg.input_size
        source = nodes[0].inputs[0] if unit.kind != "block" else "block_input"
        cin = self.input_channels if unit.kind == "stem" else unit.input_width.value(row)
        shapes = {source: (size, size, cin)}
        layers = node_layers(nodes, shapes)
        if unit.kind == "head":
            endpoints = {"input": ("input", (self.image_size, self.image_size,
                                             self.input_channels)),
                         "features": (layers[-1].name, layers[-1].output_shape)}
            spatial = []
            size = self.image_size
            for u in self.space.units[:-1]:
                size = math.ceil(size / u.stride)
                spatial.append(size)
            for name, i in self.space.endpoint_units.items():
                if name != "features":
                    width = self.space.units[i].output_width.value(row)
                    endpoints[name] = (f"endpoint_{name}", (spatial[i], spatial[i], width))
            task = self.task.with_head(dict(self.space.head_values(row)))
            layers += task.head_layers(endpoints)
        return layers

    def entry_layer_weights(self, entry: int) -> tuple[int, ...]:
        """Weight bytes of each layer of a cached segment entry (see `segment_ids`)."""
        return self._entries[entry].layer_weights

    def segment_ids(self, indices: np.ndarray) -> np.ndarray:
        """[N, S] entry ids, filling the cache for new segment choices.

        Two levels: raw index codes -> entry (fast path, no `active_mask`), and,
        for raw codes not seen yet, canonical codes (inactive decisions zeroed)
        -> entry, so equivalent choices share one costed entry.
        """
        n = indices.shape[0]
        ids = np.empty((n, len(self.segments)), dtype=np.int64)
        raw_codes = [indices[:, seg.positions] @ seg.radix for seg in self.segments]
        missing: dict[int, list[tuple[int, int]]] = {}  # segment -> [(u, row)]
        uniques = []
        for s, codes in enumerate(raw_codes):
            uniq, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
            table = self._raw_ids[s]
            out = np.empty(len(uniq), dtype=np.int64)
            for u, code in enumerate(uniq.tolist()):
                entry = table.get(code)
                if entry is None:
                    missing.setdefault(s, []).append((u, int(first[u])))
                    entry = -1
                out[u] = entry
            uniques.append((uniq, out, inverse.reshape(-1)))
        if missing:
            rows = sorted({row for pairs in missing.values() for _, row in pairs})
            canon = np.where(self.space.active_mask(indices[rows]), indices[rows], 0)
            canon_of = dict(zip(rows, canon, strict=True))
            for s, pairs in missing.items():
                seg, table = self.segments[s], self._ids[s]
                uniq, out, _ = uniques[s]
                for u, row in pairs:
                    code = int(canon_of[row][list(seg.positions)] @ seg.radix)
                    entry = table.get(code)
                    if entry is None:
                        entry = table[code] = len(self._entries)
                        self._entries.append(_segment_cost(self._layers_of(seg, canon_of[row]),
                                                           self.target, self._memo))
                    out[u] = self._raw_ids[s][int(uniq[u])] = entry
            fields = ("weight_bytes", "first_weight_bytes", "params", "macs", "ps_cached",
                      "ps_streamed", "fj_cached", "fj_streamed")
            self._table = {f: np.array([getattr(e, f) for e in self._entries], dtype=np.int64)
                           for f in fields}
        for s, (_, out, inverse) in enumerate(uniques):
            ids[:, s] = out[inverse]
        return ids

    # ---- costing ------------------------------------------------------------
    def cost_batch(self, indices: Any) -> dict[str, np.ndarray]:
        """Costs of index vectors [N, D]: latency_ms, energy_mj (float64), params, macs (int64)."""
        indices = np.asarray(indices, dtype=np.int64)
        if indices.ndim != 2 or indices.shape[1] != self.space.num_decisions:
            raise ValueError(f"indices: shape {indices.shape}; expected [N, "
                             f"{self.space.num_decisions}]")
        bad = ((indices < 0) | (indices >= np.asarray(self.space.num_choices))).any(axis=1)
        if bad.any():
            self.space.check_indices(indices[np.argmax(bad)])  # raises a SpecError naming it
        ids = self.segment_ids(indices)
        t = self._table
        weights = t["weight_bytes"][ids]
        cap = self.target.param_memory_bytes
        before = np.cumsum(weights, axis=1) - weights  # weight bytes ahead of each segment
        all_cached = before + weights <= cap
        all_streamed = before + t["first_weight_bytes"][ids] > cap
        ps = np.where(all_cached, t["ps_cached"][ids], t["ps_streamed"][ids])
        fj = np.where(all_cached, t["fj_cached"][ids], t["fj_streamed"][ids])
        for row, s in zip(*np.nonzero(~all_cached & ~all_streamed), strict=True):
            entry = self._entries[ids[row, s]]
            running, ps_sum, fj_sum = int(before[row, s]), 0, 0
            for w, (pc, pst), (fc, fst) in zip(entry.layer_weights, entry.layer_ps,
                                               entry.layer_fj, strict=True):
                running += w
                hit = running <= cap
                ps_sum += pc if hit else pst
                fj_sum += fc if hit else fst
            ps[row, s], fj[row, s] = ps_sum, fj_sum
        latency_ms, energy_mj = finish(ps.sum(axis=1) + self._io_ps, fj.sum(axis=1) + self._io_fj,
                                       self.target)
        return {"latency_ms": latency_ms, "energy_mj": energy_mj,
                "params": t["params"][ids].sum(axis=1), "macs": t["macs"][ids].sum(axis=1)}

    def cost(self, indices: Sequence[int]) -> dict[str, float | int]:
        """Costs of one index vector (same numbers as `simulate` of the decoded network)."""
        out = self.cost_batch(np.asarray(self.space.check_indices(indices))[None])
        return {"latency_ms": float(out["latency_ms"][0]), "energy_mj": float(out["energy_mj"][0]),
                "params": int(out["params"][0]), "macs": int(out["macs"][0])}

    @property
    def cache_size(self) -> int:
        """Number of distinct segment choices costed so far."""
        return len(self._entries)
