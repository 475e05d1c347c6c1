"""Conversions between the simulator's Python results and `tunas_jax.ppe.v1` messages.

Both directions live here so the server's encoding and the client's decoding
cannot drift apart. Floats travel as protobuf doubles (IEEE binary64), so a
number decoded by the client is the simulator's number to the last bit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from cost_models.interface import CostBatch
from cost_models.simulator import LayerCost, SimulationResult
from cost_service.v1 import ppe_pb2

LAYER_FIELDS = tuple(f.name for f in dataclasses.fields(LayerCost))


def result_to_proto(result: SimulationResult,
                    shapes: Mapping[str, Sequence[int]] | None = None,
                    layers: bool = True) -> ppe_pb2.NetworkCost:
    """One target's `SimulationResult` (with each layer's output shape from `shapes`)."""
    msg = ppe_pb2.NetworkCost(
        target=result.target, network=result.network, latency_ms=result.latency_ms,
        energy_mj=result.energy_mj, params=result.params, macs=result.macs,
        weight_bytes=result.weight_bytes, streamed_weight_bytes=result.streamed_weight_bytes,
        io_ms=result.io_ms)
    if layers:
        shapes = shapes or {}
        # Field by field, not `dataclasses.asdict` (which deep-copies every value and
        # was half of an Evaluate's server time for a 64-layer network).
        msg.layers.extend(
            ppe_pb2.LayerCost(**{f: getattr(c, f) for f in LAYER_FIELDS},
                              output_shape=list(shapes.get(c.name, ())))
            for c in result.layers)
    return msg


def result_from_proto(msg: ppe_pb2.NetworkCost) -> SimulationResult:
    """The `SimulationResult` the server computed (layers empty if it sent none)."""
    layers = tuple(LayerCost(**{f: getattr(layer, f) for f in LAYER_FIELDS})
                   for layer in msg.layers)
    return SimulationResult(msg.network, msg.target, msg.latency_ms, msg.energy_mj, msg.params,
                            msg.macs, msg.weight_bytes, msg.streamed_weight_bytes, msg.io_ms,
                            layers)


def layer_dict(layer: LayerCost) -> dict:
    """A layer as `SimulatorCostModel.cost(..., per_layer=True)` lists it."""
    return dataclasses.asdict(layer)


def batch_to_proto(batch: CostBatch) -> ppe_pb2.BatchCosts:
    msg = ppe_pb2.BatchCosts(target=batch.target)
    msg.latency_ms.extend(np.asarray(batch.latency_ms, np.float64).tolist())
    for key in ("energy_mj", "params", "macs"):
        value = getattr(batch, key)
        if value is not None:
            getattr(msg, key).extend(np.asarray(value).tolist())
    return msg


def batch_from_proto(msgs: Sequence[ppe_pb2.BatchCosts]) -> CostBatch:
    """One target's costs from its per-chunk messages, concatenated in order."""
    def column(key: str, dtype: type) -> np.ndarray:
        return np.concatenate([np.asarray(getattr(m, key), dtype) for m in msgs])

    return CostBatch(msgs[0].target, column("latency_ms", np.float64),
                     column("energy_mj", np.float64), column("params", np.int64),
                     column("macs", np.int64))
