"""`RemoteCostModel`: the host-side cost interface (`cost_models.interface`) over gRPC.

    model = RemoteCostModel("127.0.0.1:50051", space, workload)
    model.cost(indices, ["pixel6_edgetpu"])      # same numbers as SimulatorCostModel
    model.simulate(network, "coral_edgetpu")      # a SimulationResult, per layer

Several addresses share one channel with gRPC's `round_robin` load balancing
(each RPC goes to the next ready server; a dead one is skipped once its
connection fails). A call that fails with UNAVAILABLE (no server reachable,
a server shutting down) is retried with exponential backoff and jitter;
every call is idempotent, so a retry can at worst repeat work, never change
an answer. INVALID_ARGUMENT comes back as `SpecError` with the server's
message (which names the field); any other failure as `ServiceError`.

Index vectors go out in chunks of `cost_service.evaluator.CHUNK` rows on one
`EvaluateStream` call, so a 100,000-architecture request never becomes one
huge message.
"""

from __future__ import annotations

import json
import random
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

import grpc
import numpy as np

from cost_models.interface import CostBatch, Items, Workload
from cost_models.simulator import SimulationResult
from cost_service import messages
from cost_service.evaluator import CHUNK
from cost_service.server import MAX_MESSAGE_BYTES, format_address
from cost_service.v1 import ppe_pb2, ppe_pb2_grpc
from search_spaces import NetworkDescription, SearchSpace, SpecError
from tasks import Classification

# Network descriptions per EvaluateBatch (the server's limit is higher).
NETWORKS_PER_REQUEST = 256


class ServiceError(RuntimeError):
    """The service failed (unreachable after the retries, deadline, server error)."""

    def __init__(self, code: grpc.StatusCode, details: str, address: str) -> None:
        super().__init__(f"cost service {address}: {code.name}: {details}")
        self.code = code


def channel_target(addresses: str | Sequence[str]) -> str:
    """The gRPC target of one address or of a list (a static list for round_robin).

    A list must be literal IPs or resolvable names: names are resolved here,
    because a static list (`ipv4:a,b`) takes addresses only.
    """
    if isinstance(addresses, str):
        addresses = [a.strip() for a in addresses.split(",") if a.strip()]
    if not addresses:
        raise SpecError("service: no address; give HOST:PORT (or a list of them)")
    if len(addresses) == 1:
        return addresses[0]
    families, resolved = set(), []
    for address in addresses:
        host, sep, port = address.rpartition(":")
        if not sep or not port.isdigit():
            raise SpecError(f"service: {address!r} is not HOST:PORT")
        try:
            info = socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)
        except socket.gaierror as err:
            raise SpecError(f"service: cannot resolve {host!r} ({err})") from None
        family, *_, sockaddr = info[0]
        families.add(family)
        resolved.append(format_address(sockaddr[0], int(port)))
    if len(families) > 1:
        raise SpecError("service: mix of IPv4 and IPv6 addresses; use one family")
    scheme = "ipv6" if socket.AF_INET6 in families else "ipv4"
    return f"{scheme}:{','.join(resolved)}"


class RemoteCostModel:
    """The cost interface served by `tunas-jax serve-costs` (see module docstring)."""

    name = "remote"

    def __init__(self, addresses: str | Sequence[str], space: SearchSpace | None = None,
                 workload: Workload | None = None, *, timeout_s: float = 120.0,
                 retries: int = 6, backoff_s: float = 0.1, max_backoff_s: float = 5.0,
                 tls_ca: str | None = None, tls_cert: str | None = None,
                 tls_key: str | None = None, tls_server_name: str | None = None) -> None:
        if workload is not None and not isinstance(workload.task, Classification):
            raise SpecError("workload.task: the v1 service costs classification heads only")
        self.space, self.workload = space, workload
        self.address = channel_target(addresses)
        self.timeout_s, self.retries = timeout_s, retries
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self._random = random.Random()
        options = [("grpc.lb_policy_name", "round_robin"),
                   ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                   ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]
        if tls_ca or tls_cert:
            def read(path: str | None) -> bytes | None:
                if path is None:
                    return None
                with open(path, "rb") as f:
                    return f.read()

            credentials = grpc.ssl_channel_credentials(read(tls_ca), read(tls_key),
                                                       read(tls_cert))
            if tls_server_name:
                options.append(("grpc.ssl_target_name_override", tls_server_name))
            self.channel = grpc.secure_channel(self.address, credentials, options)
        else:
            self.channel = grpc.insecure_channel(self.address, options)
        self.stub = ppe_pb2_grpc.PerformancePowerEvaluatorStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> RemoteCostModel:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- calls with retries -------------------------------------------------------
    def _with_retries(self, call: Callable[[], Any]) -> Any:
        for attempt in range(self.retries + 1):
            try:
                return call()
            except grpc.RpcError as err:
                code = err.code()
                if code == grpc.StatusCode.INVALID_ARGUMENT:
                    raise SpecError(err.details()) from None
                if code != grpc.StatusCode.UNAVAILABLE or attempt == self.retries:
                    raise ServiceError(code, err.details(), self.address) from None
                delay = min(self.max_backoff_s, self.backoff_s * 2**attempt)
                time.sleep(delay * (0.5 + self._random.random()))  # jitter: no herd
        raise AssertionError("unreachable")

    def _unary(self, method: Callable, request: Any) -> Any:
        return self._with_retries(lambda: method(request, timeout=self.timeout_s))

    def _stream(self, requests: Sequence[Any]) -> list[Any]:
        # The whole stream is retried: its requests are idempotent.
        return self._with_retries(
            lambda: list(self.stub.EvaluateStream(iter(requests), timeout=self.timeout_s)))

    # ---- the cost interface -------------------------------------------------------
    def cost(self, items: Items, targets: Sequence[str], per_layer: bool = False
             ) -> dict[str, CostBatch]:
        """As `SimulatorCostModel.cost`: index vectors [N, D] of this model's space, or
        network descriptions (per-layer breakdown on request)."""
        targets = [targets] if isinstance(targets, str) else list(targets)
        if isinstance(items, np.ndarray) or (len(items) and not isinstance(
                items[0], NetworkDescription)):
            return self._cost_indices(np.asarray(items), targets)
        if per_layer:
            results = [self.evaluate(net, targets) for net in items]
            return {t: CostBatch(
                t, np.array([r[t].latency_ms for r in results]),
                np.array([r[t].energy_mj for r in results]),
                np.array([net.params for net in items], np.int64),
                np.array([net.macs for net in items], np.int64),
                [[messages.layer_dict(c) for c in r[t].layers] for r in results])
                for t in targets}
        texts = [json.dumps(net.to_json()) for net in items]
        responses = [self._unary(self.stub.EvaluateBatch, ppe_pb2.EvaluateBatchRequest(
            networks=ppe_pb2.NetworkBatch(network_json=texts[s:s + NETWORKS_PER_REQUEST]),
            targets=targets)) for s in range(0, len(texts), NETWORKS_PER_REQUEST)]
        return self._collect(responses, targets)

    def dataset_columns(self, indices: np.ndarray, target: str) -> dict[str, np.ndarray]:
        """The columns `cost_models.dataset.cost_chunk` computes locally (costs and each
        architecture's half-segment weight bytes), computed by the service."""
        responses = self._batch_requests(np.asarray(indices), [target], segments=True)
        batch = messages.batch_from_proto([r.costs[0] for r in responses])
        segments = np.concatenate([
            np.frombuffer(r.costs[0].segment_weight_bytes, "<i8").reshape(
                -1, r.costs[0].segment_columns) for r in responses]).astype(np.int64)
        return {"latency_ms": batch.latency_ms, "energy_mj": batch.energy_mj,
                "params": batch.params, "macs": batch.macs, "segment_weight_bytes": segments}

    def _cost_indices(self, indices: np.ndarray, targets: list[str]) -> dict[str, CostBatch]:
        return self._collect(self._batch_requests(indices, targets), targets)

    def _batch_requests(self, indices: np.ndarray, targets: list[str], segments: bool = False
                        ) -> list[ppe_pb2.EvaluateBatchResponse]:
        """Stream [N, D] index vectors in chunks; the responses, in order."""
        if self.space is None:
            raise SpecError("cost model: index vectors need a space; build it with one")
        if indices.ndim != 2 or indices.shape[1] != self.space.num_decisions:
            raise SpecError(f"indices: shape {indices.shape}; expected [N, "
                            f"{self.space.num_decisions}]")
        packed = indices.astype("<i4")
        if not (packed == indices).all():  # a wrapped value could pass as a valid index
            raise SpecError("indices: values outside int32; indices are choice numbers")
        requests = [ppe_pb2.EvaluateBatchRequest(
            architectures=ppe_pb2.ArchitectureBatch(
                space=self.space.name, space_fingerprint=self.space.fingerprint,
                num_decisions=self.space.num_decisions,
                packed_indices=packed[s:s + CHUNK].tobytes(),
                workload=self._workload_proto(), segment_weight_bytes=segments),
            targets=targets) for s in range(0, len(indices), CHUNK)]
        return self._stream(requests)

    @staticmethod
    def _collect(responses: Sequence[ppe_pb2.EvaluateBatchResponse],
                 targets: list[str]) -> dict[str, CostBatch]:
        return {t: messages.batch_from_proto([r.costs[i] for r in responses])
                for i, t in enumerate(targets)}

    def _workload_proto(self) -> ppe_pb2.Workload:
        w = self.workload
        if w is None:
            return ppe_pb2.Workload()
        return ppe_pb2.Workload(image_size=w.image_size, num_classes=w.task.num_classes,
                                input_channels=w.input_channels)

    # ---- single networks ------------------------------------------------------------
    def evaluate(self, network: NetworkDescription | Sequence[int], targets: Sequence[str],
                 layers: bool = True) -> dict[str, SimulationResult]:
        """One network description (or index vector of this model's space) on each
        target, as `simulate` returns it."""
        targets = [targets] if isinstance(targets, str) else list(targets)
        request = ppe_pb2.EvaluateRequest(targets=targets, omit_layers=not layers)
        if isinstance(network, NetworkDescription):
            request.network_json = json.dumps(network.to_json())
        else:
            if self.space is None:
                raise SpecError("cost model: index vectors need a space; build it with one")
            request.architecture.CopyFrom(ppe_pb2.Architecture(
                space=self.space.name, space_fingerprint=self.space.fingerprint,
                indices=[int(i) for i in network], workload=self._workload_proto()))
        response = self._unary(self.stub.Evaluate, request)
        return {c.target: messages.result_from_proto(c) for c in response.costs}

    def simulate(self, network: NetworkDescription, target: str) -> SimulationResult:
        """`cost_models.simulator.simulate(network, target)`, computed by the service."""
        return self.evaluate(network, [target])[target]

    def list_targets(self) -> list[dict[str, Any]]:
        """The server's targets with their numbers and calibration."""
        response = self._unary(self.stub.ListTargets, ppe_pb2.ListTargetsRequest())
        return [{"name": t.name, "description": t.description,
                 "config": json.loads(t.config_json), "fitted_fields": list(t.fitted_fields),
                 "mean_abs_error_percent": t.mean_abs_error_percent, "spearman": t.spearman,
                 "calibration": [{"model": r.model, "published_ms": r.published_ms,
                                  "simulated_ms": r.simulated_ms} for r in t.calibration]}
                for t in response.targets]
