"""The cycle_accurate fidelity: real SCALE-Sim runs (its own venv, `.venv-scalesim`) on tiny layers.

Needs the SCALE-Sim environment the README's test command creates
(`python3 -m venv .venv-scalesim && .venv-scalesim/bin/pip install scalesim==3.0.0
'numpy<2.4'`); without it these tests fail with that command in the message.
Every runner here caches under the test's temporary folder.
"""

import json
import math
import sys

import grpc
import pytest

from cost_models.hardware import get_target
from cost_models.interface import get_cost_model
from cost_models.scalesim_runner import (
    CACHE_ENV,
    PYTHON_ENV,
    ArrayConfig,
    ConvSignature,
    ScaleSimRunner,
    ScaleSimUnavailable,
    scalesim_layer,
    simulate_cycle_accurate,
)
from cost_models.simulator import simulate
from cost_service.evaluator import Evaluator
from cost_service.server import running
from cost_service.v1 import ppe_pb2, ppe_pb2_grpc
from search_spaces import SpecError
from search_spaces.network import Layer, NetworkDescription

SMALL = ArrayConfig(rows=8, cols=8, dataflow="ws", ifmap_sram_kb=64, filter_sram_kb=64,
                    ofmap_sram_kb=64)
# (ifmap_h, ifmap_w, kh, kw, channels, filters, stride): several fold counts; the last
# two double the filters past the array width (one column fold -> two).
SIGNATURES = [ConvSignature(6, 6, 3, 3, 2, 12, 1), ConvSignature(9, 9, 3, 3, 1, 1, 2),
              ConvSignature(1, 1, 1, 1, 20, 5, 1), ConvSignature(5, 7, 1, 1, 3, 3, 1),
              ConvSignature(4, 4, 1, 1, 8, 8, 1), ConvSignature(4, 4, 1, 1, 8, 16, 1)]


def hand_cycles(sig: ConvSignature, rows: int, cols: int) -> int:
    """SCALE-Sim's weight-stationary timing, derived by hand: each fold (a rows x cols
    tile of the K x N weights) loads its weights (rows cycles), then the T output
    pixels stream through with rows + cols - 2 cycles of skew; folds run back to back
    and the last cycle of the last fold is not counted."""
    out_h = math.ceil((sig.ifmap_h - sig.filter_h + sig.stride) / sig.stride)
    out_w = math.ceil((sig.ifmap_w - sig.filter_w + sig.stride) / sig.stride)
    depth = sig.filter_h * sig.filter_w * sig.channels
    folds = math.ceil(depth / rows) * math.ceil(sig.num_filters / cols)
    return folds * (2 * rows + cols + out_h * out_w - 2) - 1


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("scalesim-cache"))


def test_cycles_match_the_hand_derivation_and_the_cache_skips_scalesim(cache_dir):
    runner = ScaleSimRunner(cache_dir=cache_dir)
    cycles = runner.cycles(SIGNATURES, SMALL)
    assert cycles == [hand_cycles(s, SMALL.rows, SMALL.cols) for s in SIGNATURES]
    assert runner.simulations == len(SIGNATURES) and runner.cache_hits == 0
    # Doubling the filters past the array width adds a column fold.
    assert cycles[-1] == 2 * cycles[-2] + 1
    # A second runner on the same cache never starts SCALE-Sim: its Python does not even
    # exist, so any subprocess would fail.
    again = ScaleSimRunner(python="/nonexistent/python", cache_dir=cache_dir)
    assert again.cycles(SIGNATURES, SMALL) == cycles
    assert again.simulations == 0 and again.cache_hits == len(SIGNATURES)
    # A signature not in the cache needs SCALE-Sim: the error names the setting and the fix.
    with pytest.raises(ScaleSimUnavailable) as info:
        again.cycles([ConvSignature(3, 3, 1, 1, 1, 1, 1)], SMALL)
    assert PYTHON_ENV in str(info.value) and "pip install scalesim" in str(info.value)
    # A Python that exists but cannot run SCALE-Sim (this project's: no scalesim) is refused
    # the same way, before any simulation.
    with pytest.raises(ScaleSimUnavailable, match=r"cannot import scalesim|numpy<2\.4"):
        ScaleSimRunner(python=sys.executable, cache_dir=cache_dir).check()


def test_groups_are_emulated_as_independent_convs(cache_dir):
    coral = get_target("coral_edgetpu")
    dw = Layer("dw", "conv2d", ("input",), (8, 8, 16), (8, 8, 16), 3, 1, "same", 16)
    sig, repeats = scalesim_layer(dw)
    # One group: a 3x3 conv of 1 -> 1 channel whose unpadded ifmap gives 8x8 outputs.
    assert sig == ConvSignature(10, 10, 3, 3, 1, 1, 1) and repeats == 16
    net = NetworkDescription("dw", (8, 8, 16), (dw,)).validate()
    runner = ScaleSimRunner(cache_dir=cache_dir)
    array = ArrayConfig.from_target(coral)
    assert (array.rows, array.cols, array.dataflow) == (64, 64, "ws")
    one_group = runner.cycles([sig], array)[0]
    assert runner.layer_cycles(net, coral) == {"dw": 16 * one_group}
    assert one_group == hand_cycles(sig, 64, 64)
    # Pixel 6: 16 columns of 4-lane PEs = 64 SCALE-Sim columns.
    assert ArrayConfig.from_target(get_target("pixel6_edgetpu")).cols == 64


def _tiny_network() -> NetworkDescription:
    layers = (
        Layer("stem", "conv2d", ("input",), (8, 8, 3), (4, 4, 8), 3, 2, "same", 1, False, True,
              "relu"),
        Layer("pool", "pool", ("stem",), (4, 4, 8), (1, 1, 8), pool_type="avg",
              global_pool=True),
        Layer("logits", "fully_connected", ("pool",), (1, 1, 8), (1, 1, 10), use_bias=True),
    )
    return NetworkDescription("tiny", (8, 8, 3), layers).validate()


def test_service_answers_cycle_accurate_evaluate(cache_dir):
    net = _tiny_network()
    runner = ScaleSimRunner(cache_dir=cache_dir)
    with running(evaluator=Evaluator(scalesim=runner)) as server, \
            grpc.insecure_channel(server.address) as channel:
        stub = ppe_pb2_grpc.PerformancePowerEvaluatorStub(channel)
        assert ppe_pb2.CYCLE_ACCURATE in stub.ListTargets(ppe_pb2.ListTargetsRequest(),
                                                          timeout=60).fidelities
        text = json.dumps(net.to_json())
        response = stub.Evaluate(ppe_pb2.EvaluateRequest(
            network_json=text, targets=["coral_edgetpu"], fidelity=ppe_pb2.CYCLE_ACCURATE),
            timeout=120)
        cost = response.costs[0]
        assert cost.fidelity == ppe_pb2.CYCLE_ACCURATE
        assert list(cost.cycle_accurate_layers) == ["stem", "logits"]
        expected, names = simulate_cycle_accurate(net, "coral_edgetpu", runner)
        analytical = simulate(net, "coral_edgetpu")
        by_name = {layer.name: layer for layer in cost.layers}
        scalesim_cycles = runner.layer_cycles(net, get_target("coral_edgetpu"))
        for name in names:  # SCALE-Sim's cycles, which differ from the analytical model's
            assert by_name[name].compute_cycles == scalesim_cycles[name]
        assert scalesim_cycles["stem"] != analytical.layers[0].compute_cycles
        assert by_name["pool"].compute_cycles == analytical.layers[1].compute_cycles
        assert cost.latency_ms == expected.latency_ms != analytical.latency_ms
        # The local cost interface gives the same number.
        local = get_cost_model("cycle_accurate", runner=runner).cost([net], ["coral_edgetpu"])
        assert local["coral_edgetpu"].latency_ms[0] == cost.latency_ms
        # Bad requests name the field; the server keeps serving.
        for request, field in (
                (ppe_pb2.EvaluateRequest(network_json=text, targets=["pixel1_cpu"],
                                         fidelity=ppe_pb2.CYCLE_ACCURATE), "targets[0]"),
                (ppe_pb2.EvaluateBatchRequest(networks=ppe_pb2.NetworkBatch(network_json=[text]),
                                              targets=["coral_edgetpu"],
                                              fidelity=ppe_pb2.CYCLE_ACCURATE), "fidelity")):
            call = stub.Evaluate if isinstance(request, ppe_pb2.EvaluateRequest) else (
                stub.EvaluateBatch)
            with pytest.raises(grpc.RpcError) as info:
                call(request, timeout=30)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert info.value.details().startswith(field), info.value.details()
    # A server without SCALE-Sim refuses the fidelity, naming it and the install command.
    bare = Evaluator(scalesim=ScaleSimRunner(python="/nonexistent/python", cache_dir=cache_dir))
    assert ppe_pb2.CYCLE_ACCURATE not in bare.list_targets().fidelities
    with pytest.raises(ValueError, match=r"^fidelity: .*pip install scalesim"):
        bare.fidelity(ppe_pb2.CYCLE_ACCURATE)
    with pytest.raises(SpecError, match="edgetpu"):
        get_cost_model("cycle_accurate", runner=runner).cost([net], ["pixel3_gpu"])


def test_simulate_command_cycle_accurate(cache_dir, tmp_path, monkeypatch, capsys):
    from tunas_jax.cli import main

    monkeypatch.setenv(CACHE_ENV, cache_dir)
    net = _tiny_network()
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(net.to_json()))
    args = ["simulate", "--network", str(path), "--target", "coral_edgetpu", "--format", "json"]
    assert main([*args, "--fidelity", "cycle_accurate"]) == 0
    doc = json.loads(capsys.readouterr().out)
    expected, names = simulate_cycle_accurate(net, "coral_edgetpu",
                                              ScaleSimRunner(cache_dir=cache_dir))
    assert doc["cycle_accurate_layers"] == list(names) == ["stem", "logits"]
    assert doc["latency_ms"] == expected.latency_ms != simulate(net, "coral_edgetpu").latency_ms
    # A CPU target is refused naming the flag (exit status 2, message on stderr).
    assert main(["simulate", "--network", str(path), "--target", "pixel1_cpu",
                 "--fidelity", "cycle_accurate"]) == 2
    assert "--target: 'pixel1_cpu' is a cpu target" in capsys.readouterr().err
