"""The tunas_jax.ppe.v1 cost service: a real grpcio server on loopback, its client, the CLI.

Servers run in this process (`cost_service.server.running`) or, for signal
handling, as a `tunas-jax serve-costs` subprocess; every one is stopped by
the test that started it.
"""

import datetime
import filecmp
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cost_models.calibration import FIT_FIELDS
from cost_models.hardware import get_target, target_names
from cost_models.interface import SimulatorCostModel, Workload, get_cost_model
from cost_models.simulator import simulate
from cost_service import codegen
from cost_service.client import RemoteCostModel, ServiceError
from cost_service.server import SERVICE_NAME, TlsFiles, running
from cost_service.v1 import ppe_pb2, ppe_pb2_grpc
from search_spaces import get_space
from search_spaces import network as network_lib
from tasks import Classification
from tunas_jax import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VGG16 = os.path.join(ROOT, "cost_models", "networks", "vgg16.json")
TARGETS = list(target_names())


@pytest.fixture(scope="module")
def server():
    with running() as srv:
        yield srv


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.address) as channel:
        yield ppe_pb2_grpc.PerformancePowerEvaluatorStub(channel)


def bits(x):
    return np.asarray(x, np.float64).view(np.int64)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_checked_in_stubs_are_what_the_proto_generates(tmp_path):
    for path in codegen.generate(str(tmp_path)):
        checked_in = os.path.join(ROOT, os.path.relpath(path, tmp_path))
        assert filecmp.cmp(path, checked_in, shallow=False), (
            f"{checked_in} is stale: run python -m cost_service.codegen")


def test_remote_network_costs_equal_simulate_to_the_last_bit(server):
    network = network_lib.load(VGG16)
    with RemoteCostModel(server.address) as remote:
        results = remote.evaluate(network, TARGETS)
        assert list(results) == TARGETS
        for target in TARGETS:
            # Dataclass equality: every total and every field of every layer, exactly.
            assert results[target] == simulate(network, get_target(target))
        local = SimulatorCostModel(None, Workload(224, Classification(1000)))
        nets = [network, network_lib.load(os.path.join(ROOT, "cost_models", "networks",
                                                       "mobilenet_v2.json"))]
        for per_layer in (False, True):
            got = remote.cost(nets, TARGETS, per_layer=per_layer)
            want = local.cost(nets, TARGETS, per_layer=per_layer)
            for t in TARGETS:
                assert (bits(got[t].latency_ms) == bits(want[t].latency_ms)).all()
                assert (bits(got[t].energy_mj) == bits(want[t].energy_mj)).all()
                assert (got[t].params == want[t].params).all()
                assert (got[t].macs == want[t].macs).all()
                assert got[t].layers == want[t].layers


def test_remote_index_costs_equal_local_to_the_last_bit(server):
    space = get_space("micro")
    workload = Workload(64, Classification(17))
    # More than one streamed chunk (cost_service.evaluator.CHUNK = 4096 rows).
    indices = space.sample(np.random.default_rng(0), 9000)
    want = SimulatorCostModel(space, workload).cost(indices, TARGETS)
    models_before = server.servicer.evaluator.num_cost_models
    with get_cost_model("remote", server.address, space, workload) as remote:
        got = remote.cost(indices, TARGETS)
        # The three streamed chunks shared one coster (its caches reused).
        assert server.servicer.evaluator.num_cost_models == models_before + 1
        for t in TARGETS:
            for key in ("latency_ms", "energy_mj"):
                assert (bits(getattr(got[t], key)) == bits(getattr(want[t], key))).all()
            assert (got[t].params == want[t].params).all() and len(got[t].params) == 9000
            assert (got[t].macs == want[t].macs).all()
        # One architecture through Evaluate: the decoded network, per layer, same totals.
        one = remote.evaluate(indices[7], ["pixel6_edgetpu"])["pixel6_edgetpu"]
        assert bits(one.latency_ms) == bits(want["pixel6_edgetpu"].latency_ms[7])
        assert {layer.bound for layer in one.layers} <= {"compute", "memory", "streaming"}
        assert one.layers[-1].op == "fully_connected"


def test_list_targets_has_the_calibration(server):
    with RemoteCostModel(server.address) as remote:
        targets = {t["name"]: t for t in remote.list_targets()}
    assert sorted(targets) == TARGETS
    for name, info in targets.items():
        assert info["config"] == get_target(name).to_json()
        assert info["fitted_fields"] and info["fitted_fields"] == list(FIT_FIELDS[name])
        assert len(info["calibration"]) >= 3 and 0 < info["mean_abs_error_percent"] < 50


def _arch(space_, **changes):
    fields = {"space": space_.name, "space_fingerprint": space_.fingerprint,
              "indices": [0] * space_.num_decisions}
    fields.update(changes)
    return ppe_pb2.EvaluateRequest(architecture=ppe_pb2.Architecture(**fields),
                                   targets=["pixel6_edgetpu"])


def _broken_chain():
    doc = network_lib.load(VGG16).to_json()
    doc["layers"][3]["input_shape"] = [7, 7, 7]
    return json.dumps(doc)


MICRO = get_space("micro")
BAD_REQUESTS = {
    "malformed json": (ppe_pb2.EvaluateRequest(network_json="{not json",
                                               targets=["pixel6_edgetpu"]), "network_json"),
    "json not an object": (ppe_pb2.EvaluateRequest(network_json="[1, 2]",
                                                   targets=["pixel6_edgetpu"]), "network_json"),
    "unknown target": (ppe_pb2.EvaluateRequest(network_json="{}",
                                               targets=["pixel6_edgetpu", "tpu9"]),
                       "targets[1]"),
    "no target": (ppe_pb2.EvaluateRequest(architecture=_arch(MICRO).architecture), "targets"),
    "shapes do not chain": (ppe_pb2.EvaluateRequest(network_json=_broken_chain(),
                                                    targets=["coral_edgetpu"]),
                            "network_json: layers[3]"),
    "fingerprint mismatch": (_arch(MICRO, space_fingerprint="deadbeef"),
                             "architecture.space_fingerprint"),
    "unknown space": (_arch(MICRO, space="nope"), "architecture.space"),
    "index out of range": (_arch(MICRO, indices=[99] * MICRO.num_decisions),
                           "architecture.indices"),
    "too few indices": (_arch(MICRO, indices=[0]), "architecture.indices"),
    "bad image size": (_arch(MICRO, workload=ppe_pb2.Workload(image_size=-3)),
                       "architecture.workload.image_size"),
    "oversize json": (ppe_pb2.EvaluateRequest(network_json=" " * (9 * 2**20),
                                              targets=["pixel6_edgetpu"]), "network_json"),
    "no network": (ppe_pb2.EvaluateRequest(targets=["pixel6_edgetpu"]), "network"),
    "unknown fidelity": (ppe_pb2.EvaluateRequest(network_json="{}", targets=["pixel6_edgetpu"],
                                                 fidelity=99), "fidelity"),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_requests_are_invalid_argument_naming_the_field(case, stub):
    request, field = BAD_REQUESTS[case]
    with pytest.raises(grpc.RpcError) as info:
        stub.Evaluate(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith(field), info.value.details()
    # ... and the server still serves.
    assert stub.Evaluate(_arch(MICRO), timeout=30).costs[0].latency_ms > 0


def test_bad_batches_name_the_field_and_the_stream_chunk(stub):
    space = MICRO
    batch = ppe_pb2.ArchitectureBatch(space=space.name, num_decisions=space.num_decisions,
                                      indices=[0] * (2 * space.num_decisions - 1))
    with pytest.raises(grpc.RpcError) as info:
        stub.EvaluateBatch(ppe_pb2.EvaluateBatchRequest(architectures=batch,
                                                        targets=["pixel6_edgetpu"]))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith("architectures.indices")
    good = ppe_pb2.ArchitectureBatch(space=space.name, num_decisions=space.num_decisions,
                                     indices=[0] * space.num_decisions)
    requests = [ppe_pb2.EvaluateBatchRequest(architectures=good, targets=["pixel6_edgetpu"]),
                ppe_pb2.EvaluateBatchRequest(architectures=batch, targets=["pixel6_edgetpu"])]
    with pytest.raises(grpc.RpcError) as info:
        list(stub.EvaluateStream(iter(requests), timeout=30))
    assert info.value.details().startswith("request[1].architectures.indices")
    for packed, words in ((b"\x00" * 5, "multiple of 4 bytes"),
                          (bytes(4 * (8 * 2**20 + space.num_decisions)), "at most 8388608"),
                          (np.full(space.num_decisions, 99, "<i4").tobytes(), "out of range")):
        bad = ppe_pb2.ArchitectureBatch(space=space.name, num_decisions=space.num_decisions,
                                        packed_indices=packed)
        with pytest.raises(grpc.RpcError) as info:
            stub.EvaluateBatch(ppe_pb2.EvaluateBatchRequest(architectures=bad,
                                                            targets=["pixel6_edgetpu"]))
        assert info.value.details().startswith("architectures.packed_indices"), words
        assert words in info.value.details()


def test_client_maps_invalid_argument_to_spec_error(server):
    from search_spaces import SpecError

    with RemoteCostModel(server.address) as remote, pytest.raises(SpecError, match="targets"):
        remote.simulate(network_lib.load(VGG16), "tpu9")


def test_health_and_deadline(server, stub):
    with grpc.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE_NAME):
            status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
            assert status == health_pb2.HealthCheckResponse.SERVING
    space = get_space("mobilenet_edgetpu_v2")
    indices = space.sample(np.random.default_rng(1), 50_000)
    batch = ppe_pb2.ArchitectureBatch(space=space.name, num_decisions=space.num_decisions,
                                      indices=indices.reshape(-1).tolist(),
                                      workload=ppe_pb2.Workload(image_size=160))
    with pytest.raises(grpc.RpcError) as info:
        stub.EvaluateBatch(ppe_pb2.EvaluateBatchRequest(architectures=batch,
                                                        targets=["pixel6_edgetpu"]),
                           timeout=0.3)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # The server noticed too: it stopped between chunks instead of costing all 50,000.
    for _ in range(300):
        if server.servicer.calls["DEADLINE_EXCEEDED"]:
            break
        time.sleep(0.1)
    assert server.servicer.calls["DEADLINE_EXCEEDED"] == 1
    assert stub.Evaluate(_arch(MICRO), timeout=30).costs[0].latency_ms > 0


def test_round_robin_over_two_servers_survives_one_stopping():
    network = network_lib.load(VGG16)
    want = simulate(network, get_target("coral_edgetpu"))
    with running() as a, running() as b:
        remote = RemoteCostModel([a.address, b.address], backoff_s=0.02)
        for _ in range(12):
            assert remote.simulate(network, "coral_edgetpu") == want
        assert a.servicer.calls["OK"] > 0 and b.servicer.calls["OK"] > 0
        b.stop(grace_s=1)
        for _ in range(4):  # the stopped one is skipped (or retried past)
            assert remote.simulate(network, "coral_edgetpu") == want
        remote.close()


def test_client_retries_until_the_server_comes_up():
    port = free_port()
    remote = RemoteCostModel(f"127.0.0.1:{port}", backoff_s=0.05, max_backoff_s=0.5,
                             retries=20)
    result = {}
    thread = threading.Thread(target=lambda: result.update(
        r=remote.simulate(network_lib.load(VGG16), "coral_edgetpu")))
    thread.start()
    time.sleep(1.0)  # the first attempts find nothing listening: UNAVAILABLE, backoff
    with running(port=port):
        thread.join(30)
    remote.close()
    assert result["r"] == simulate(network_lib.load(VGG16), get_target("coral_edgetpu"))
    with RemoteCostModel(f"127.0.0.1:{port}", retries=1, backoff_s=0.01) as gone, \
            pytest.raises(ServiceError, match="UNAVAILABLE"):
        gone.simulate(network_lib.load(VGG16), "coral_edgetpu")


def test_simulate_cli_prints_the_same_with_service(server, capsys):
    for fmt in ("json", "table"):
        args = ["simulate", "--network", VGG16, "--target", "pixel6_edgetpu", "--format", fmt]
        assert cli.main(args) == 0
        local = capsys.readouterr().out
        assert cli.main([*args, "--service", server.address]) == 0
        assert capsys.readouterr().out == local
    assert cli.main(["simulate", "--network", VGG16, "--target", "x",
                     "--service", server.address]) == 2
    assert "targets[0]" in capsys.readouterr().err


def test_non_loopback_host_needs_tls(capsys):
    assert cli.main(["serve-costs", "--host", "0.0.0.0", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "--tls-cert" in err and len(err.strip().splitlines()) == 1


def _certificates(folder):
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def issue(name, issuer=None, issuer_key=None, ca=False, usage=None, san=None):
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        builder = (x509.CertificateBuilder().subject_name(subject)
                   .issuer_name(issuer.subject if issuer else subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(hours=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), True))
        if usage:
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), False)
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), False)
        cert = builder.sign(issuer_key or key, hashes.SHA256())
        return cert, key

    def write(name, cert, key):
        cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return str(cert_path), str(key_path)

    ca, ca_key = issue("svc test CA", ca=True)
    server, server_key = issue("127.0.0.1", ca, ca_key, usage=ExtendedKeyUsageOID.SERVER_AUTH,
                               san=[x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                    x509.DNSName("localhost")])
    client, client_key = issue("client", ca, ca_key, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    return write("ca", ca, ca_key)[0], write("server", server, server_key), write(
        "client", client, client_key)


def test_tls_with_client_certificates(tmp_path):
    ca, (cert, key), (client_cert, client_key) = _certificates(tmp_path)
    network = network_lib.load(VGG16)
    with running(tls=TlsFiles(cert, key, client_ca=ca)) as srv:
        with RemoteCostModel(srv.address, tls_ca=ca, tls_cert=client_cert,
                             tls_key=client_key) as remote:
            assert remote.simulate(network, "coral_edgetpu") == simulate(
                network, get_target("coral_edgetpu"))
        # Without a client certificate, or in plaintext, the handshake fails.
        for kwargs in ({"tls_ca": ca}, {}):
            with RemoteCostModel(srv.address, retries=0, timeout_s=5, **kwargs) as remote, \
                    pytest.raises(ServiceError, match="UNAVAILABLE"):
                remote.simulate(network, "coral_edgetpu")


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_lets_the_in_flight_request_finish(workers):
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunas_jax.cli", "serve-costs", "--port", "0",
         "--workers", str(workers)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving on "), (line, proc.stderr.read())
        address = line.split()[-1]
        space = get_space("mobilenet_edgetpu_v2")
        indices = space.sample(np.random.default_rng(2), 6000)
        outcome = {}

        def big_request():  # cold caches: a second or more of costing
            with RemoteCostModel(address, space, Workload(160, Classification(1001)),
                                 retries=0) as remote:
                outcome["costs"] = remote.cost(indices, ["pixel6_edgetpu"])

        thread = threading.Thread(target=big_request)
        thread.start()
        time.sleep(0.5)
        assert thread.is_alive()  # the request is in flight (else this tests nothing)
        proc.send_signal(signal.SIGTERM)
        thread.join(60)
        assert proc.wait(60) == 0
        assert len(outcome["costs"]["pixel6_edgetpu"].latency_ms) == 6000
        with RemoteCostModel(address, retries=0, timeout_s=5) as remote, \
                pytest.raises(ServiceError, match="UNAVAILABLE"):
            remote.list_targets()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_bytes_that_are_no_message_are_invalid_argument(server, stub):
    with grpc.insecure_channel(server.address) as channel:
        raw = channel.unary_unary(f"/{SERVICE_NAME}/Evaluate")  # bytes in, bytes out
        with pytest.raises(grpc.RpcError) as info:
            raw(b"\xff\xfe\x00garbage", timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith("request: not a valid tunas_jax.ppe.v1.EvaluateRequest")
    assert stub.Evaluate(_arch(MICRO), timeout=30).costs[0].latency_ms > 0


def test_datasets_built_through_the_service_equal_local_ones(server, tmp_path):
    from cost_models import dataset as dataset_lib
    from tunas_jax import cost_model_training
    from tunas_jax.config_defaults import cost_model_defaults

    space = get_space("micro")
    want = dataset_lib.simulate_dataset(space, "coral_edgetpu", 700, seed=4, image_size=48,
                                        workers=1)
    config = cost_model_defaults()
    config.update({"space": "micro", "target": "coral_edgetpu", "num_architectures": 700,
                   "dataset_seed": 4, "image_size": 48, "cost_service": server.address})
    got, path = cost_model_training.ensure_dataset(config, str(tmp_path), space,
                                                   get_target("coral_edgetpu"), log=print)
    assert path == str(tmp_path / "dataset.npz") and os.path.exists(path)
    for column in ("indices", "latency_ms", "energy_mj", "params", "macs",
                   "segment_weight_bytes"):
        assert getattr(got, column).dtype == getattr(want, column).dtype, column
        assert (getattr(got, column) == getattr(want, column)).all(), column
    assert got.metadata == want.metadata
    assert cli.main(["simulate", "--space", "micro", "--target", "pixel6_edgetpu", "--num", "50",
                     "--out", str(tmp_path / "x.npz"), "--service", server.address]) == 0
    small = dataset_lib.simulate_dataset(space, "pixel6_edgetpu", 50, workers=1)
    assert (dataset_lib.read_dataset(tmp_path / "x.npz").latency_ms == small.latency_ms).all()


def test_a_dead_worker_stops_the_server_with_an_error():
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunas_jax.cli", "serve-costs", "--port", "0", "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ROOT})
    try:
        assert proc.stdout.readline().startswith("serving on ")
        with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
            children = [int(p) for p in f.read().split()]

        def cmdline(pid):
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                return f.read()

        # The worker processes (multiprocessing also starts a resource tracker).
        workers = [pid for pid in children if b"spawn_main" in cmdline(pid)]
        assert len(workers) == 2, [cmdline(pid) for pid in children]
        os.kill(workers[0], signal.SIGKILL)
        assert proc.wait(30) == 1
        assert "a server worker exited" in proc.stderr.read()
        # The other workers were stopped and reaped by the server, not orphaned.
        assert not any(os.path.exists(f"/proc/{pid}") for pid in workers[1:])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _serve_costs_process():
    """A `tunas-jax serve-costs` replica in its own process, and its address."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunas_jax.cli", "serve-costs", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ROOT})
    line = proc.stdout.readline()
    assert line.startswith("serving on "), (line, proc.stderr.read() if proc.poll() else "")
    return proc, line.split()[-1]


def test_killing_a_replica_mid_build_loses_and_duplicates_nothing():
    """Two server replicas behind one round-robin client; one is SIGKILLed while a
    20,000-architecture dataset build is under way (just after its first chunk
    came back, so the next chunks are in flight). The client retries a failed
    chunk on the survivor, so the dataset equals the local one row for row."""
    from cost_models import dataset as dataset_lib

    space = get_space("micro")
    indices, _ = dataset_lib.sample_architectures(space, 20_000, seed=11)
    replicas = [_serve_costs_process() for _ in range(2)]
    first_chunk_done, killed = threading.Event(), []

    def killer():
        first_chunk_done.wait(120)
        time.sleep(0.02)  # into the next chunk's request
        replicas[0][0].kill()
        killed.append(replicas[0][0].wait(30))

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        got = dataset_lib.simulate_architectures(
            space, get_target("pixel6_edgetpu"), indices, None, None, chunk_size=1_000,
            cost_service=",".join(address for _, address in replicas),
            on_progress=lambda n: first_chunk_done.set())
        thread.join(60)
    finally:
        first_chunk_done.set()
        for proc, _ in replicas:
            proc.kill()
            proc.wait(30)
    assert killed == [-signal.SIGKILL]
    want = dataset_lib.simulate_architectures(space, get_target("pixel6_edgetpu"), indices,
                                              None, None, workers=1)
    for column, values in want.items():
        assert len(got[column]) == 20_000 and (got[column] == values).all(), column
