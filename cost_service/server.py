"""The `tunas_jax.ppe.v1` gRPC server (what `tunas-jax serve-costs` runs).

- Health: the standard `grpc.health.v1.Health` service reports SERVING for
  "" and for `tunas_jax.ppe.v1.PerformancePowerEvaluator`, NOT_SERVING once
  shutdown starts (load balancers stop sending before the listener closes).
- Shutdown: SIGTERM (or SIGINT) stops accepting RPCs and lets the in-flight
  ones finish, up to `grace_s`; then the process exits 0.
- Deadlines: the evaluator checks the caller's remaining time between chunks
  of work and answers DEADLINE_EXCEEDED instead of finishing work nobody
  waits for.
- Limits: messages up to `MAX_MESSAGE_BYTES` each way; per-request limits
  (`cost_service.evaluator.Limits`) below that answer INVALID_ARGUMENT naming
  the field. At most `threads * QUEUE_PER_THREAD` RPCs are admitted at once
  (RESOURCE_EXHAUSTED beyond), so a flood cannot queue without bound.
- Bad input: INVALID_ARGUMENT with the field named; an unexpected error while
  costing is INTERNAL for that RPC and logged; the server keeps serving.
- Security: binds to loopback by default. Any other host requires TLS (server
  certificate and key; with a client CA, clients must present certificates
  signed by it): the service has no other authentication.
- Workers: `workers` > 1 runs that many server processes on one port
  (SO_REUSEPORT; the kernel spreads connections), since costing is
  CPU-bound Python and one process runs one thread at a time.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import ipaddress
import multiprocessing
import signal
import socket
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from cost_service.evaluator import DeadlineExceeded, Evaluator, RequestError
from cost_service.v1 import ppe_pb2, ppe_pb2_grpc

SERVICE_NAME = "tunas_jax.ppe.v1.PerformancePowerEvaluator"
MAX_MESSAGE_BYTES = 64 * 2**20
DEFAULT_THREADS = 8
QUEUE_PER_THREAD = 16
DEFAULT_GRACE_S = 30.0


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def format_address(host: str, port: int) -> str:
    host = host.strip("[]")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclasses.dataclass(frozen=True)
class TlsFiles:
    """PEM files: the server's certificate chain and key; optional CA of client certificates."""

    cert: str
    key: str
    client_ca: str | None = None

    def credentials(self) -> grpc.ServerCredentials:
        def read(path: str, field: str) -> bytes:
            try:
                with open(path, "rb") as f:
                    return f.read()
            except OSError as err:
                raise ValueError(f"{field}: cannot read {path} ({err.strerror})") from None

        ca = read(self.client_ca, "--tls-client-ca") if self.client_ca else None
        return grpc.ssl_server_credentials(
            [(read(self.key, "--tls-key"), read(self.cert, "--tls-cert"))],
            root_certificates=ca, require_client_auth=ca is not None)


def check_exposure(host: str, tls: TlsFiles | None) -> None:
    """ValueError unless `host` is loopback or TLS is configured."""
    if not is_loopback(host) and tls is None:
        raise ValueError(f"--host {host}: not a loopback address; the service has no "
                         "authentication of its own, so exposing it needs TLS: pass --tls-cert "
                         "and --tls-key (and --tls-client-ca to require client certificates)")


@dataclasses.dataclass(frozen=True)
class Undecodable:
    """Stands in for a request whose bytes do not parse as its message type, so the
    servicer answers INVALID_ARGUMENT (gRPC's own deserializer failure is INTERNAL)."""

    message_type: str
    error: str


def _deserializer(cls: Any) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return cls.FromString(data)
        except Exception as err:  # any parse failure is the sender's
            return Undecodable(cls.DESCRIPTOR.full_name, str(err)[:200])
    return deserialize


def method_handlers(servicer: Servicer) -> grpc.GenericRpcHandler:
    """The service's handlers (as the generated `add_..._to_server` registers them),
    with deserializers that hand bad bytes to the servicer instead of failing."""
    pb = ppe_pb2
    unary = grpc.unary_unary_rpc_method_handler
    return grpc.method_handlers_generic_handler(SERVICE_NAME, {
        "Evaluate": unary(servicer.Evaluate, _deserializer(pb.EvaluateRequest),
                          pb.EvaluateResponse.SerializeToString),
        "EvaluateBatch": unary(servicer.EvaluateBatch, _deserializer(pb.EvaluateBatchRequest),
                               pb.EvaluateBatchResponse.SerializeToString),
        "EvaluateStream": grpc.stream_stream_rpc_method_handler(
            servicer.EvaluateStream, _deserializer(pb.EvaluateBatchRequest),
            pb.EvaluateBatchResponse.SerializeToString),
        "ListTargets": unary(servicer.ListTargets, _deserializer(pb.ListTargetsRequest),
                             pb.ListTargetsResponse.SerializeToString),
    })


class Servicer(ppe_pb2_grpc.PerformancePowerEvaluatorServicer):
    """Maps evaluator outcomes to gRPC status codes."""

    def __init__(self, evaluator: Evaluator) -> None:
        self.evaluator = evaluator
        self.calls: collections.Counter[str] = collections.Counter()  # RPCs answered, by status
        self._calls_lock = threading.Lock()  # handlers run on many threads

    def _count(self, status: str) -> None:
        with self._calls_lock:
            self.calls[status] += 1

    def _call(self, fn: Callable[..., Any], request: Any, context: grpc.ServicerContext,
              where: str = "") -> Any:
        def check_deadline() -> None:
            remaining = context.time_remaining()
            if remaining is not None and remaining <= 0:
                raise DeadlineExceeded

        try:
            if isinstance(request, Undecodable):
                raise RequestError(f"request: not a valid {request.message_type} message "
                                   f"({request.error}); send the message the method takes")
            response = fn(request, check_deadline)
            self._count("OK")
            return response
        except RequestError as err:
            self._count("INVALID_ARGUMENT")
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{where}{err}")
        except DeadlineExceeded:
            self._count("DEADLINE_EXCEEDED")
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                          "deadline passed before the work was done; raise the timeout or "
                          "send fewer architectures per request")
        except Exception as err:
            self._count("INTERNAL")
            traceback.print_exc(file=sys.stderr)
            context.abort(grpc.StatusCode.INTERNAL, f"{where}server error: "
                          f"{type(err).__name__}: {err}")

    def Evaluate(self, request, context):
        return self._call(self.evaluator.evaluate, request, context)

    def EvaluateBatch(self, request, context):
        return self._call(self.evaluator.evaluate_batch, request, context)

    def EvaluateStream(self, request_iterator, context):
        for i, request in enumerate(request_iterator):
            yield self._call(self.evaluator.evaluate_batch, request, context,
                             where=f"request[{i}].")

    def ListTargets(self, request, context):
        return self._call(lambda _r, _c: self.evaluator.list_targets(), request, context)


class CostServer:
    """One server process's gRPC server; `start()` binds and returns the port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, threads: int = DEFAULT_THREADS,
                 tls: TlsFiles | None = None, evaluator: Evaluator | None = None,
                 reuse_port: bool = False) -> None:
        check_exposure(host, tls)
        self.host, self.requested_port, self.tls = host, port, tls
        self.health = health.HealthServicer(experimental_non_blocking=True)
        self.server = grpc.server(
            concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="ppe"),
            maximum_concurrent_rpcs=threads * QUEUE_PER_THREAD,
            options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                     ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                     # grpc's default is on: without this a second server on a busy port
                     # would start silently instead of failing.
                     ("grpc.so_reuseport", int(reuse_port))])
        self.servicer = Servicer(evaluator or Evaluator())
        self.server.add_generic_rpc_handlers((method_handlers(self.servicer),))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.port = 0

    def start(self) -> int:
        address = format_address(self.host, self.requested_port)
        try:
            if self.tls is None:
                self.port = self.server.add_insecure_port(address)
            else:
                self.port = self.server.add_secure_port(address, self.tls.credentials())
        except RuntimeError as err:
            raise ValueError(f"--port: cannot bind {address} ({err})") from None
        if self.port == 0:  # older grpcio returns 0 instead of raising
            raise ValueError(f"--port: cannot bind {address} (in use?)")
        self.server.start()
        for name in ("", SERVICE_NAME):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        return self.port

    def stop(self, grace_s: float = DEFAULT_GRACE_S) -> None:
        """Report NOT_SERVING, refuse new RPCs, let in-flight ones finish (up to grace_s)."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace_s).wait()

    @property
    def address(self) -> str:
        return format_address(self.host, self.port)


@contextlib.contextmanager
def running(host: str = "127.0.0.1", port: int = 0, **kwargs: Any) -> Iterator[CostServer]:
    """A started server for the duration of a `with` block (tests, notebooks, benchmarks)."""
    server = CostServer(host, port, **kwargs)
    server.start()
    try:
        yield server
    finally:
        server.stop(grace_s=5.0)


def _wait_for_signal(healthy: Callable[[], bool] = lambda: True) -> bool:
    """Block until SIGTERM or SIGINT (True) or until `healthy()`, polled every second,
    turns False (False). Main thread only."""
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM,
                                                                     signal.SIGINT)}
    try:
        while not stop.wait(1.0):
            if not healthy():
                return False
        return True
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _worker_main(host: str, port: int, threads: int, tls: TlsFiles | None, grace_s: float,
                 ready: Any) -> None:
    server = CostServer(host, port, threads, tls, reuse_port=True)
    server.start()
    ready.set()
    _wait_for_signal()
    server.stop(grace_s)


def serve(host: str = "127.0.0.1", port: int = 0, workers: int = 1,
          threads: int = DEFAULT_THREADS, tls: TlsFiles | None = None,
          grace_s: float = DEFAULT_GRACE_S, on_ready: Callable[[str], Any] = print) -> None:
    """Serve until SIGTERM/SIGINT, then shut down gracefully. `on_ready(address)` is called
    once every worker listens (the CLI prints it; a test reads the port from it)."""
    check_exposure(host, tls)
    if workers < 1 or threads < 1:
        raise ValueError(f"--workers {workers} / --threads {threads}: both must be >= 1")
    if workers == 1:
        server = CostServer(host, port, threads, tls)
        server.start()
        on_ready(server.address)
        _wait_for_signal()
        server.stop(grace_s)
        return
    # Several processes on one port: hold the port (SO_REUSEPORT) while they bind it,
    # so --port 0 resolves to one port for all of them.
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind((host.strip("[]"), port))
        port = holder.getsockname()[1]
        context = multiprocessing.get_context("spawn")
        procs = []
        for _ in range(workers):
            ready = context.Event()
            proc = context.Process(target=_worker_main,
                                   args=(host, port, threads, tls, grace_s, ready), daemon=False)
            proc.start()
            procs.append((proc, ready))
        for proc, ready in procs:
            while not ready.wait(0.2):
                if not proc.is_alive():
                    for other, _ in procs:
                        other.terminate()
                    raise RuntimeError(f"a server worker exited with code {proc.exitcode} "
                                       "before listening")
    on_ready(format_address(host, port))
    try:
        if not _wait_for_signal(lambda: all(proc.is_alive() for proc, _ in procs)):
            dead = [proc.exitcode for proc, _ in procs if not proc.is_alive()]
            raise RuntimeError(f"a server worker exited (codes {dead}); stopping the others "
                               "so a supervisor restarts the whole server")
    finally:
        for proc, _ in procs:  # forward the shutdown; each drains its in-flight RPCs
            if proc.is_alive():
                proc.terminate()
        for proc, _ in procs:
            proc.join()
