"""Request validation and costing behind the `tunas_jax.ppe.v1` service (no gRPC here).

The gRPC servicer (`cost_service.server`) hands each request message to an
`Evaluator` and maps its exceptions to status codes:
- `RequestError`: the request is wrong (INVALID_ARGUMENT). Its message
  starts with the request field at fault (`network_json`, `targets[1]`,
  `architecture.space_fingerprint`, ...) and says how to fix it. Every
  failure while *reading* a request is one, whatever raised it, so no input
  reaches the costing stage unvalidated and none can take the server down.
- `DeadlineExceeded`: the caller's deadline passed between chunks of work.

Fidelity: ANALYTICAL (the default) everywhere; CYCLE_ACCURATE in Evaluate on
edgetpu targets, through the evaluator's `ScaleSimRunner` (SCALE-Sim in its own
environment, its cycles cached on disk per layer signature; see
`cost_models.scalesim_runner`). A server without SCALE-Sim refuses it naming
the `fidelity` field and the install command, and leaves it out of
ListTargets' fidelities.

Costing reuses the host-side cost interface: `SimulatorCostModel` (the fast
per-unit `ArchitectureCoster` for index vectors, `simulate` for network
descriptions), one per (space, workload), kept in a bounded LRU cache so its
per-segment caches are reused across requests. A coster mutates its caches,
so each cost model is used under its own lock; `simulate` is pure.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from cost_models.calibration import FIT_FIELDS, evaluate
from cost_models.dataset import segment_weight_bytes
from cost_models.hardware import get_target, target_names
from cost_models.interface import CostBatch, SimulatorCostModel, Workload, check_targets
from cost_models.scalesim_runner import (
    ScaleSimRunner,
    ScaleSimUnavailable,
    check_target,
    simulate_cycle_accurate,
)
from cost_models.simulator import simulate
from cost_service import messages
from cost_service.v1 import ppe_pb2
from search_spaces import NetworkDescription, SearchSpace, SpecError, get_space
from tasks import Classification, describe

SERVER_VERSION = "tunas_jax.ppe.v1"
# Architectures costed between two deadline checks (and per streamed chunk on the client).
CHUNK = 4096


class RequestError(ValueError):
    """A bad request (INVALID_ARGUMENT); the message names the field and the fix."""


class DeadlineExceeded(Exception):
    """The caller's deadline passed before the work was done."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """Per-request limits (a larger request is refused, naming the field and the limit).

    A message larger than the transport's limit (`cost_service.server.
    MAX_MESSAGE_BYTES`, 64 MiB) is refused by gRPC itself (RESOURCE_EXHAUSTED)
    before any field is read. Below it these checks answer INVALID_ARGUMENT
    naming the field: one description's JSON, a batch's index values (8 Mi
    int32 values = 32 MiB packed, so the limit is reached before the
    transport's), layers, targets, workload ranges.
    """

    max_json_bytes: int = 8 * 2**20
    max_layers: int = 20_000
    max_batch_values: int = 8 * 2**20  # architectures x decisions
    max_networks: int = 1_024
    max_targets: int = 16
    max_image_size: int = 4_096
    max_num_classes: int = 1_000_000
    max_input_channels: int = 1_024
    max_cached_models: int = 64


def _fail_on_bad_input(field: str) -> Callable:
    """Decorator: any exception while reading request field `field` is a RequestError."""
    def wrap(fn: Callable) -> Callable:
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except RequestError:
                raise
            except SpecError as err:
                raise RequestError(f"{field}: {err}") from None
            except Exception as err:
                raise RequestError(f"{field}: malformed ({type(err).__name__}: "
                                   f"{str(err)[:200]})") from None
        return inner
    return wrap


class Evaluator:
    """Costs `tunas_jax.ppe.v1` requests; thread-safe."""

    def __init__(self, limits: Limits | None = None, scalesim: ScaleSimRunner | None = None
                 ) -> None:
        self.limits = limits or Limits()
        self.scalesim = scalesim or ScaleSimRunner()
        self._lock = threading.Lock()
        self._spaces: dict[str, SearchSpace] = {}
        self._models: collections.OrderedDict[Any, tuple[SimulatorCostModel, threading.Lock]] = (
            collections.OrderedDict())
        self._targets: ppe_pb2.ListTargetsResponse | None = None

    # ---- reading requests ---------------------------------------------------------
    def targets(self, names: Sequence[str]) -> tuple[str, ...]:
        if len(names) > self.limits.max_targets:
            raise RequestError(f"targets: {len(names)} given; at most "
                               f"{self.limits.max_targets} per request")
        for i, name in enumerate(names):
            try:
                check_targets([name])
            except SpecError:
                raise RequestError(f"targets[{i}]: {name!r} is unknown; choose from "
                                   f"{list(target_names())} (ListTargets)") from None
        if not names:
            raise RequestError("targets: empty; name at least one target (ListTargets)")
        return tuple(names)

    def fidelity(self, value: int, batch: bool = False) -> int:
        """The request's fidelity (UNSPECIFIED = ANALYTICAL) if this server serves it."""
        if value in (ppe_pb2.FIDELITY_UNSPECIFIED, ppe_pb2.ANALYTICAL):
            return ppe_pb2.ANALYTICAL
        if value == ppe_pb2.CYCLE_ACCURATE:
            if batch:
                raise RequestError("fidelity: CYCLE_ACCURATE is served by Evaluate (one "
                                   "network per request); batches are ANALYTICAL only")
            try:
                self.scalesim.check()
            except SpecError as err:
                raise RequestError(f"fidelity: CYCLE_ACCURATE is not available on this "
                                   f"server ({err})") from None
            return value
        name = ppe_pb2.Fidelity.Name(value) if value in ppe_pb2.Fidelity.values() else value
        raise RequestError(f"fidelity: {name} is unknown; use ANALYTICAL or CYCLE_ACCURATE "
                           "(ListTargets lists what this server serves)")

    def network(self, text: str, field: str = "network_json") -> NetworkDescription:
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > self.limits.max_json_bytes:
            raise RequestError(f"{field}: {size} bytes; at most {self.limits.max_json_bytes}")

        @_fail_on_bad_input(field)
        def parse() -> NetworkDescription:
            try:
                data = json.loads(text)
            except json.JSONDecodeError as err:
                raise RequestError(f"{field}: not JSON ({err})") from None
            layers = data.get("layers") if isinstance(data, dict) else None
            if isinstance(layers, list) and len(layers) > self.limits.max_layers:
                raise RequestError(f"{field}.layers: {len(layers)} layers; at most "
                                   f"{self.limits.max_layers}")
            return NetworkDescription.from_json(data)

        return parse()

    def space(self, name: str, fingerprint: str, field: str) -> SearchSpace:
        with self._lock:
            space = self._spaces.get(name)
        if space is None:
            try:
                space = get_space(name)
            except SpecError as err:
                raise RequestError(f"{field}.space: {err}") from None
            with self._lock:
                self._spaces[name] = space
        if fingerprint and fingerprint != space.fingerprint:
            raise RequestError(f"{field}.space_fingerprint: {fingerprint!r}, but this server's "
                               f"{name!r} is {space.fingerprint!r}; client and server run "
                               "different versions of the space: update one of them")
        return space

    def workload(self, space: SearchSpace, msg: ppe_pb2.Workload, field: str) -> Workload:
        lim = self.limits
        values = {}
        for key, default, high in (("image_size", space.default_image_size, lim.max_image_size),
                                   ("num_classes", space.default_num_classes,
                                    lim.max_num_classes),
                                   ("input_channels", 3, lim.max_input_channels)):
            value = getattr(msg, key) or default
            if not 1 <= value <= high:
                raise RequestError(f"{field}.workload.{key}: {value}; use 1..{high} "
                                   "(0 = the space's default)")
            values[key] = value
        return Workload(values["image_size"], Classification(values["num_classes"]),
                        values["input_channels"])

    def cost_model(self, space: SearchSpace, workload: Workload
                   ) -> tuple[SimulatorCostModel, threading.Lock]:
        # By value: a Task need not compare equal to an equal one (then every request
        # would build a new coster and cost everything cold).
        key = (space.name, space.fingerprint, workload.image_size, workload.task.num_classes,
               workload.input_channels)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            entry = (SimulatorCostModel(space, workload), threading.Lock())
            self._models[key] = entry
            while len(self._models) > self.limits.max_cached_models:
                self._models.popitem(last=False)
            return entry

    @property
    def num_cost_models(self) -> int:
        """Cost models (each with its coster caches) held for reuse across requests."""
        with self._lock:
            return len(self._models)

    # ---- RPCs ---------------------------------------------------------------------
    def evaluate(self, request: ppe_pb2.EvaluateRequest,
                 check_deadline: Callable[[], None] = lambda: None) -> ppe_pb2.EvaluateResponse:
        """One network on each requested target, with the per-layer breakdown."""
        fidelity = self.fidelity(request.fidelity)
        targets = self.targets(request.targets)
        if fidelity == ppe_pb2.CYCLE_ACCURATE:
            for i, target in enumerate(targets):
                try:
                    check_target(target, f"targets[{i}]")
                except SpecError as err:
                    raise RequestError(str(err)) from None
        kind = request.WhichOneof("network")
        if kind is None:
            raise RequestError("network: empty; set network_json or architecture")
        if kind == "network_json":
            network = self.network(request.network_json)
        else:
            arch = request.architecture
            space = self.space(arch.space, arch.space_fingerprint, "architecture")
            workload = self.workload(space, arch.workload, "architecture")
            try:
                indices = space.check_indices(arch.indices)
            except SpecError as err:
                raise RequestError(f"architecture.{err}") from None
            network = describe(space.decode(indices), workload.image_size, workload.task,
                               name=space.name, input_channels=workload.input_channels)
        shapes = {layer.name: layer.output_shape for layer in network.layers}
        response = ppe_pb2.EvaluateResponse()
        for target in targets:
            check_deadline()
            exact: tuple[str, ...] = ()
            if fidelity == ppe_pb2.CYCLE_ACCURATE:
                try:
                    result, exact = simulate_cycle_accurate(network, target, self.scalesim)
                except ScaleSimUnavailable as err:  # removed since the fidelity check
                    raise RequestError(f"fidelity: CYCLE_ACCURATE is not available on this "
                                       f"server ({err})") from None
            else:
                result = simulate(network, get_target(target))
            msg = messages.result_to_proto(result, shapes, layers=not request.omit_layers)
            msg.fidelity = fidelity
            msg.cycle_accurate_layers.extend(exact)
            response.costs.append(msg)
        return response

    def evaluate_batch(self, request: ppe_pb2.EvaluateBatchRequest,
                       check_deadline: Callable[[], None] = lambda: None
                       ) -> ppe_pb2.EvaluateBatchResponse:
        """Totals of many architectures (or network descriptions) per target."""
        self.fidelity(request.fidelity, batch=True)
        targets = self.targets(request.targets)
        kind = request.WhichOneof("items")
        if kind is None:
            raise RequestError("items: empty; set architectures or networks")
        response = ppe_pb2.EvaluateBatchResponse()
        if kind == "networks":
            texts = request.networks.network_json
            if len(texts) > self.limits.max_networks:
                raise RequestError(f"networks.network_json: {len(texts)} networks; at most "
                                   f"{self.limits.max_networks} per request")
            nets = [self.network(t, f"networks.network_json[{i}]") for i, t in enumerate(texts)]
            for target in targets:
                results = []
                for net in nets:
                    check_deadline()
                    results.append(simulate(net, get_target(target)))
                # params and MACs as SimulatorCostModel gives them: the description's own.
                response.costs.append(ppe_pb2.BatchCosts(
                    target=target, latency_ms=[r.latency_ms for r in results],
                    energy_mj=[r.energy_mj for r in results],
                    params=[net.params for net in nets], macs=[net.macs for net in nets]))
            response.num_items = len(nets)
            return response
        batch_msg = request.architectures
        space = self.space(batch_msg.space, batch_msg.space_fingerprint, "architectures")
        workload = self.workload(space, batch_msg.workload, "architectures")
        indices = self.index_matrix(space, batch_msg)
        model, lock = self.cost_model(space, workload)
        for target in targets:
            columns: dict[str, list[np.ndarray]] = collections.defaultdict(list)
            segments = []
            for start in range(0, len(indices), CHUNK):
                check_deadline()
                chunk = indices[start:start + CHUNK]
                with lock:
                    part = model.cost(chunk, [target])[target]
                    if batch_msg.segment_weight_bytes:
                        segments.append(segment_weight_bytes(model.coster(target), chunk))
                for key in ("latency_ms", "energy_mj", "params", "macs"):
                    columns[key].append(getattr(part, key))
            msg = messages.batch_to_proto(CostBatch(
                target, **{key: np.concatenate(parts) for key, parts in columns.items()}))
            if segments:
                table = np.concatenate(segments).astype("<i8")
                msg.segment_weight_bytes, msg.segment_columns = table.tobytes(), table.shape[1]
            response.costs.append(msg)
        response.num_items = len(indices)
        return response

    def index_matrix(self, space: SearchSpace, msg: ppe_pb2.ArchitectureBatch) -> np.ndarray:
        d = space.num_decisions
        if msg.num_decisions != d:
            raise RequestError(f"architectures.num_decisions: {msg.num_decisions}, but space "
                               f"{space.name!r} has {d} decisions")
        if msg.indices and msg.packed_indices:
            raise RequestError("architectures.packed_indices: set either indices or "
                               "packed_indices, not both")
        field = "architectures.packed_indices" if msg.packed_indices else "architectures.indices"
        if len(msg.packed_indices) % 4:
            raise RequestError(f"{field}: {len(msg.packed_indices)} bytes; expected "
                               "little-endian int32 values (a multiple of 4 bytes)")
        count = len(msg.packed_indices) // 4 if msg.packed_indices else len(msg.indices)
        if count > self.limits.max_batch_values:  # checked before converting anything
            raise RequestError(f"{field}: {count} values ({count // d} architectures x {d} "
                               f"decisions); at most {self.limits.max_batch_values} per "
                               "request (split it into EvaluateStream requests)")
        flat = (np.frombuffer(msg.packed_indices, "<i4").astype(np.int64) if msg.packed_indices
                else np.asarray(msg.indices, np.int64))
        if flat.size == 0 or flat.size % d:
            raise RequestError(f"{field}: {flat.size} values; expected a positive multiple "
                               f"of num_decisions ({d}), row-major [N, {d}]")
        n = flat.size // d
        indices = flat.reshape(n, d)
        bad = ((indices < 0) | (indices >= np.asarray(space.num_choices))).any(axis=1)
        if bad.any():
            row = int(np.argmax(bad))
            try:
                space.check_indices(indices[row])
            except SpecError as err:
                raise RequestError(f"{field}[{row}]: {err}") from None
        return indices

    def list_targets(self) -> ppe_pb2.ListTargetsResponse:
        """Every target with its numbers and its fit to published latencies (computed once)."""
        with self._lock:
            if self._targets is not None:
                return self._targets
        fidelities = [ppe_pb2.ANALYTICAL]
        try:
            self.scalesim.check()
            fidelities.append(ppe_pb2.CYCLE_ACCURATE)
        except SpecError:
            pass  # no SCALE-Sim here: Evaluate refuses CYCLE_ACCURATE, saying how to add it
        response = ppe_pb2.ListTargetsResponse(server_version=SERVER_VERSION,
                                               fidelities=fidelities)
        for name in target_names():
            target = get_target(name)
            fit = evaluate(target)
            response.targets.append(ppe_pb2.TargetInfo(
                name=name, description=target.description,
                config_json=json.dumps(target.to_json(), sort_keys=True),
                fitted_fields=list(FIT_FIELDS.get(name, ())),
                mean_abs_error_percent=fit.mean_abs_error_percent, spearman=fit.spearman,
                calibration=[ppe_pb2.CalibrationRow(model=r.model, published_ms=r.published_ms,
                                                    simulated_ms=r.simulated_ms)
                             for r in fit.rows]))
        with self._lock:
            self._targets = response
        return response
