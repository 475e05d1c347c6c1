"""Throughput, latency and robustness of the cost service (`tunas-jax serve-costs`).

    python benchmarks/bench_service.py [--num 20000] [--requests 640] [--fuzz 1200]
        [--workers 1] [--parts batch,single,fuzz] [--ray] [--json FILE]

The server runs as its own process (as deployed; the clients' Python threads
then do not share its interpreter lock), on loopback. Measures:
- batch: architectures/s of `RemoteCostModel.cost` on `--num` random
  `mobilenet_edgetpu_v2` index vectors (streamed in 4,096-row chunks) vs the
  in-process `SimulatorCostModel.cost` of the same vectors, both cold (fresh
  caches) and warm (the same vectors again);
- single network: `Evaluate` of one MobileNet-size network description
  (`cost_models/networks/mobilenet_v2.json`, per-layer breakdown included)
  from 1, 8 and 64 concurrent clients: requests/s and p50/p99 latency;
- fuzz: `--fuzz` malformed or mutated requests (mutated JSON, wrong types,
  huge and negative numbers, bad indices and fingerprints, unknown targets,
  random bytes on the wire), each with a deadline; counts every status code
  and checks that a valid request succeeds after every 100 and at the end;
- with `--ray`: a `--num`-architecture dataset build on a local Ray cluster
  with 1 and 2 actors vs the local executor (startup excluded).
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import datetime
import json
import os
import platform
import random
import subprocess
import sys
import time

import grpc
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cost_models.interface import SimulatorCostModel, Workload  # noqa: E402
from cost_service.client import RemoteCostModel  # noqa: E402
from cost_service.v1 import ppe_pb2, ppe_pb2_grpc  # noqa: E402
from search_spaces import get_space  # noqa: E402
from search_spaces import network as network_lib  # noqa: E402

NETWORK = os.path.join(ROOT, "cost_models", "networks", "mobilenet_v2.json")
TARGET = "pixel6_edgetpu"


class ServerProcess:
    """`tunas-jax serve-costs --port 0` in a child process."""

    def __init__(self, workers: int = 1) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tunas_jax.cli", "serve-costs", "--port", "0",
             "--workers", str(workers), "--threads", "16"], cwd=ROOT, text=True,
            stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": ROOT})
        line = self.proc.stdout.readline()
        if not line.startswith("serving on"):
            raise RuntimeError(f"server did not start: {line!r}")
        self.address = line.split()[-1]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        self.proc.terminate()
        return self.proc.wait(60)


def batch(num: int, seed: int = 0) -> dict:
    space = get_space("mobilenet_edgetpu_v2")
    workload = Workload.default(space)
    indices = space.sample(np.random.default_rng(seed), num)
    out = {"space": space.name, "num": num}
    local = SimulatorCostModel(space, workload)
    for phase in ("cold", "warm"):
        start = time.perf_counter()
        want = local.cost(indices, [TARGET])[TARGET]
        out[f"in_process_{phase}_archs_per_second"] = num / (time.perf_counter() - start)
    server = ServerProcess()
    try:
        with RemoteCostModel(server.address, space, workload) as remote:
            for phase in ("cold", "warm"):
                start = time.perf_counter()
                got = remote.cost(indices, [TARGET])[TARGET]
                out[f"service_{phase}_archs_per_second"] = num / (time.perf_counter() - start)
                assert (got.latency_ms == want.latency_ms).all()
    finally:
        server.stop()
    for phase in ("cold", "warm"):
        out[f"{phase}_ratio"] = (out[f"service_{phase}_archs_per_second"]
                                 / out[f"in_process_{phase}_archs_per_second"])
    return out


def single(requests: int, clients: tuple[int, ...] = (1, 8, 64), workers: int = 1) -> dict:
    text = json.dumps(network_lib.load(NETWORK).to_json())
    request = ppe_pb2.EvaluateRequest(network_json=text, targets=[TARGET])
    start = time.perf_counter()
    for _ in range(20):
        network_lib.NetworkDescription.from_json(json.loads(text))
    out = {"network": os.path.basename(NETWORK), "workers": workers,
           "in_process_parse_ms": 1e3 * (time.perf_counter() - start) / 20}
    server = ServerProcess(workers)
    try:
        for n in clients:
            # One channel per client, as separate client processes would have.
            channels = [grpc.insecure_channel(server.address) for _ in range(n)]
            stubs = [ppe_pb2_grpc.PerformancePowerEvaluatorStub(c) for c in channels]
            for stub in stubs:  # connect and warm up
                stub.Evaluate(request, timeout=30)
            per_client = max(1, requests // n) if n > 1 else requests

            def run(stub, per_client=per_client):
                times = []
                for _ in range(per_client):
                    t = time.perf_counter()
                    stub.Evaluate(request, timeout=60)
                    times.append(time.perf_counter() - t)
                return times

            start = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(n) as pool:
                times = [t for ts in pool.map(run, stubs) for t in ts]
            wall = time.perf_counter() - start
            out[f"clients_{n}"] = {
                "requests": len(times), "requests_per_second": len(times) / wall,
                "p50_ms": 1e3 * float(np.percentile(times, 50)),
                "p99_ms": 1e3 * float(np.percentile(times, 99))}
            for c in channels:
                c.close()
    finally:
        server.stop()
    return out


# ---- fuzz ----------------------------------------------------------------------
def _mutate_json(value, rng: random.Random, depth: int = 0):
    """A randomly damaged copy of a JSON value."""
    junk = [None, -1, 0, 2**63, -(2**40), 1e308, float("nan"), "", "x" * 50, [], {}, True,
            [[[[]]]], {"a": {"b": {}}}, [-5, -5, -5], "conv2d", 3.5]
    if isinstance(value, dict) and value and rng.random() < 0.7:
        out = dict(value)
        key = rng.choice(list(out))
        roll = rng.random()
        if roll < 0.25:
            del out[key]
        elif roll < 0.5:
            out[key] = rng.choice(junk)
        elif roll < 0.6:
            out[f"extra_{rng.randrange(9)}"] = rng.choice(junk)
        else:
            out[key] = _mutate_json(out[key], rng, depth + 1)
        return out
    if isinstance(value, list) and value and rng.random() < 0.7:
        out = list(value)
        i = rng.randrange(len(out))
        roll = rng.random()
        if roll < 0.2:
            del out[i]
        elif roll < 0.4:
            out.insert(i, rng.choice(junk))
        elif roll < 0.5:
            out = out[::-1]
        else:
            out[i] = _mutate_json(out[i], rng, depth + 1)
        return out
    if isinstance(value, int) and not isinstance(value, bool):
        return rng.choice([-value, value * 1000, 0, value + 1, 2**31, str(value)])
    return rng.choice(junk)


def fuzz_requests(num: int, seed: int = 0):
    """(method, request bytes) pairs: mutated network JSON, bad architectures, raw bytes."""
    rng = random.Random(seed)
    base = network_lib.load(NETWORK).to_json()
    text = json.dumps(base)
    space = get_space("micro")
    for i in range(num):
        kind = i % 6
        if kind in (0, 1, 2):  # mutated JSON documents, several mutations deep
            doc = base
            for _ in range(rng.randint(1, 4)):
                doc = _mutate_json(doc, rng)
            req = ppe_pb2.EvaluateRequest(network_json=json.dumps(doc), targets=[TARGET])
        elif kind == 3:  # damaged text: truncation, byte flips, nesting bombs
            roll = rng.random()
            if roll < 0.4:
                bad = text[:rng.randrange(len(text))]
            elif roll < 0.8:
                chars = list(text)
                for _ in range(rng.randint(1, 20)):
                    chars[rng.randrange(len(chars))] = chr(rng.randrange(1, 0x2FF))
                bad = "".join(chars)
            else:
                bad = "[" * rng.randint(1000, 200_000)
            req = ppe_pb2.EvaluateRequest(network_json=bad,
                                          targets=[rng.choice([TARGET, "nope", ""])])
        elif kind == 4:  # architectures with bad fields
            indices = [rng.randrange(-3, 12) for _ in range(rng.choice(
                [space.num_decisions, space.num_decisions, 0, 5, 200]))]
            req = ppe_pb2.EvaluateBatchRequest(
                architectures=ppe_pb2.ArchitectureBatch(
                    space=rng.choice(["micro", "micro", "nope", ""]),
                    space_fingerprint=rng.choice([space.fingerprint, "", "0" * 16]),
                    num_decisions=rng.choice([space.num_decisions, 0, -1, 7]),
                    indices=indices,
                    workload=ppe_pb2.Workload(image_size=rng.choice([0, 32, -1, 10**6]),
                                              num_classes=rng.choice([0, 10, -7]))),
                targets=rng.sample([TARGET, "coral_edgetpu", "x", "pixel6_edgetpu "],
                                   rng.randint(0, 3)),
                fidelity=rng.choice([0, 1, 2, 99]))
            yield "EvaluateBatch", req.SerializeToString()
            continue
        else:  # random bytes where a message should be
            yield rng.choice(["Evaluate", "EvaluateBatch", "ListTargets"]), bytes(
                rng.randrange(256) for _ in range(rng.randint(1, 300)))
            continue
        yield "Evaluate", req.SerializeToString()


def fuzz(num: int) -> dict:
    server = ServerProcess()
    codes: collections.Counter = collections.Counter()
    valid = ppe_pb2.EvaluateRequest(network_json=json.dumps(
        network_lib.load(NETWORK).to_json()), targets=[TARGET])
    valid_ok = 0
    try:
        with grpc.insecure_channel(server.address, options=[
                ("grpc.max_send_message_length", 64 * 2**20)]) as channel:
            stub = ppe_pb2_grpc.PerformancePowerEvaluatorStub(channel)
            calls = {m: channel.unary_unary(
                f"/tunas_jax.ppe.v1.PerformancePowerEvaluator/{m}",
                request_serializer=None, response_deserializer=None)
                for m in ("Evaluate", "EvaluateBatch", "ListTargets")}
            start = time.perf_counter()
            for i, (method, payload) in enumerate(fuzz_requests(num)):
                try:
                    calls[method](payload, timeout=30)
                    codes["OK"] += 1
                except grpc.RpcError as err:
                    codes[err.code().name] += 1
                if i % 100 == 99:
                    valid_ok += stub.Evaluate(valid, timeout=30).costs[0].latency_ms > 0
            seconds = time.perf_counter() - start
            valid_ok += stub.Evaluate(valid, timeout=30).costs[0].latency_ms > 0
        alive = server.alive()
    finally:
        exit_code = server.stop()
    return {"requests": num, "answered": sum(codes.values()), "codes": dict(codes),
            "hung (DEADLINE_EXCEEDED)": codes.get("DEADLINE_EXCEEDED", 0),
            "valid_requests_ok": valid_ok, "valid_requests_sent": num // 100 + 1,
            "server_alive_after": alive, "server_exit_code": exit_code, "seconds": seconds}


def ray_scaling(num: int) -> dict:
    import ray

    from cost_models import dataset as dataset_lib
    from cost_models.ray_executor import RayCostExecutor

    space = get_space("mobilenet_edgetpu_v2")
    indices, _ = dataset_lib.sample_architectures(space, num, seed=0)
    out = {"num": num}
    for workers in (1, 2):
        start = time.perf_counter()
        dataset_lib.simulate_architectures(space, TARGET, indices, workers=workers)
        out[f"local_{workers}_workers_seconds"] = time.perf_counter() - start
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        for workers in (1, 2):
            with RayCostExecutor(space, TARGET, workers=workers) as pool:
                pool.pids()  # actors up: startup excluded
                start = time.perf_counter()
                pool.cost(indices)
                out[f"ray_{workers}_workers_seconds"] = time.perf_counter() - start
    finally:
        ray.shutdown()
    out["ray_scaling_efficiency"] = out["ray_1_workers_seconds"] / (
        2 * out["ray_2_workers_seconds"])
    out["ray_overhead_us_per_arch_1_worker"] = 1e6 * (
        out["ray_1_workers_seconds"] - out["local_1_workers_seconds"]) / num
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=20000)
    parser.add_argument("--requests", type=int, default=640)
    parser.add_argument("--fuzz", type=int, default=1200)
    parser.add_argument("--workers", type=int, default=1, help="server processes")
    parser.add_argument("--ray", action="store_true", help="also time Ray dataset builds")
    parser.add_argument("--parts", default="batch,single,fuzz",
                        help="comma-separated subset of batch,single,fuzz")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    figures = {"machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores",
               "date": datetime.date.today().isoformat(),
               "command": "python benchmarks/bench_service.py " + " ".join(sys.argv[1:])}
    runs = {"batch": lambda: batch(args.num),
            "single": lambda: single(args.requests, workers=args.workers),
            "fuzz": lambda: fuzz(args.fuzz)}
    if args.ray:
        runs["ray"] = lambda: ray_scaling(args.num)
        parts.add("ray")
    for name, run in runs.items():
        if name in parts:
            figures[name] = run()
            print(json.dumps(figures[name], indent=1), flush=True)
    if "batch" in figures:
        figures["service_archs_per_second"] = figures["batch"]["service_cold_archs_per_second"]
    if "single" in figures:
        figures["service_p99_ms_64_clients"] = figures["single"]["clients_64"]["p99_ms"]
    if args.json:
        from search_spaces import write_json_atomic

        write_json_atomic(args.json, figures)


if __name__ == "__main__":
    main()
