"""The analytical simulator, the hardware targets, the fast coster and the network files."""

from __future__ import annotations

import dataclasses
import itertools
import os

import numpy as np
import pytest

from cost_models import (
    NETWORKS_DIR,
    ArchitectureCoster,
    get_target,
    layer_cost,
    simulate,
)
from search_spaces import SpecError, get_space
from search_spaces.network import Layer, NetworkDescription, load
from tasks import describe

CORAL = get_target("coral_edgetpu")
# Clean numbers for hand calculations: every cycle counts, no fixed costs.
IDEAL = CORAL.replace(compute_efficiency=1.0, layer_overhead_ms=0.0, inference_overhead_ms=0.0)


def conv(cin: int, cout: int, size: int, k: int = 1, groups: int = 1, name: str = "c") -> Layer:
    return Layer(name, "conv2d", ("input",), (size, size, cin), (size, size, cout), k, 1, "same",
                 groups, False, True, "relu")


def fc(cin: int, cout: int, name: str, src: str = "input") -> Layer:
    return Layer(name, "fully_connected", (src,), (1, 1, cin), (1, 1, cout), use_bias=True)


def test_targets_and_units():
    assert CORAL.peak_int8_tops == pytest.approx(4.0, rel=0.03)  # public: 4 TOPS int8
    assert CORAL.param_memory_bytes == 8 * 2**20
    with pytest.raises(SpecError, match="unknown; choose one of"):
        get_target("tpu_v9")
    with pytest.raises(dataclasses.FrozenInstanceError):
        CORAL.clock_hz = 1.0  # type: ignore[misc]
    for t in ("coral_edgetpu", "pixel6_edgetpu"):
        assert get_target(t).name == t


def test_1x1_conv_hand_calculation():
    # 64x64x64 -> 64 channels, 1x1: K = 64 rows, N = 64 columns, one weight tile;
    # the 4096 pixels stream through in 4096 cycles, + 64 + 64 pipeline fill.
    cost = layer_cost(conv(64, 64, 64), IDEAL)
    assert cost.compute_cycles == 4096 + 64 + 64
    assert cost.macs == 64 * 64 * 64 * 64
    assert cost.utilization == pytest.approx(4096 / 4224)
    assert cost.latency_ps == round(4224 / 480e6 * 1e12)  # compute bound, fits on chip
    assert cost.bound == "compute" and cost.weights_cached
    assert cost.onchip_bytes == 2 * 64 * 64 * 64 + 64 * 64 and cost.offchip_bytes == 0
    # Half the output channels: half the columns idle, same time.
    half = layer_cost(conv(64, 32, 64), IDEAL)
    assert half.compute_cycles == cost.compute_cycles
    assert half.utilization == pytest.approx(cost.utilization / 2)


def test_depthwise_gets_no_activation_reuse():
    full = layer_cost(conv(256, 256, 14, k=3), IDEAL)
    dw = layer_cost(conv(256, 256, 14, k=3, groups=256), IDEAL)
    assert full.utilization > 0.7
    assert dw.utilization < 0.02  # one output channel per group: one column per activation


def test_streamed_weights_cost_at_least_host_transfer():
    # 4096 x 2560 int8 weights = 10 MiB > the 8 MiB parameter cache.
    net = NetworkDescription("big_fc", (1, 1, 4096), (fc(4096, 2560, "fc"),)).validate()
    result = simulate(net, CORAL)
    (layer,) = result.layers
    assert not layer.weights_cached and result.streamed_weight_bytes == 4096 * 2560
    assert layer.latency_ms >= 4096 * 2560 / CORAL.offchip_bandwidth_bytes_per_s * 1e3
    assert layer.bound == "streaming"  # the weights over the host link dominate
    # The same layer with its weights cached is far faster.
    assert layer_cost(net.layers[0], CORAL, True).latency_ps < layer.latency_ps / 10


def test_weights_cached_in_network_order():
    # Two 5 MB layers: the first fits in 8 MiB and stays cached, the second streams.
    layers = (fc(2048, 2500, "a"), fc(2500, 2000, "b", src="a"))
    result = simulate(NetworkDescription("two", (1, 1, 2048), layers).validate(), CORAL)
    assert [c.weights_cached for c in result.layers] == [True, False]
    assert result.streamed_weight_bytes == 2500 * 2000


def test_activations_spill_off_chip():
    layer = conv(64, 64, 112)  # 2 x 784 KiB of activations
    small = CORAL.replace(activation_memory_bytes=2**20)
    fits, spills = layer_cost(layer, CORAL), layer_cost(layer, small)
    assert fits.offchip_bytes == 0 and spills.offchip_bytes > 0
    assert spills.memory_ms > fits.memory_ms and spills.energy_fj > fits.energy_fj


@pytest.mark.parametrize("target", ["coral_edgetpu", "pixel6_edgetpu"])
def test_more_macs_at_same_shape_never_faster(target):
    t = get_target(target)
    for size in (7, 14, 56):
        for cin, cout in ((32, 64), (128, 128), (256, 512)):
            by_kernel = [layer_cost(conv(cin, cout, size, k), t).latency_ps for k in (1, 3, 5, 7)]
            assert by_kernel == sorted(by_kernel)
        by_cout = [layer_cost(conv(64, c, size, 3), t).latency_ps for c in range(8, 520, 24)]
        assert by_cout == sorted(by_cout)
        by_cin = [layer_cost(conv(c, 64, size, 3), t).latency_ps for c in range(8, 520, 24)]
        assert by_cin == sorted(by_cin)


@pytest.mark.parametrize("target", ["coral_edgetpu", "pixel6_edgetpu"])
def test_smaller_groups_never_raise_utilization(target):
    t = get_target(target)
    for size in (7, 28, 112):
        for k in (1, 3, 5):
            for cin, cout in ((256, 256), (128, 512), (64, 256)):
                groups = [g for g in (1, 2, 4, 8, 16, 32, 64, 128) if cin % g == 0 == cout % g]
                util = [layer_cost(conv(cin, cout, size, k, g), t).utilization for g in groups]
                assert all(a >= b - 1e-12 for a, b in itertools.pairwise(util)), util


def test_energy_includes_static_power():
    net = load(os.path.join(NETWORKS_DIR, "mobilenet_v2.json"))
    r = simulate(net, CORAL)
    assert r.energy_mj > CORAL.static_power_mw * r.latency_ms * 1e-6 > 0
    assert r.latency_ms == pytest.approx(sum(c.latency_ms for c in r.layers) + r.io_ms)


# Well-known trainable parameter counts; tolerance 3% (batch-norm gamma/beta
# counted, conventions for biases and classes differ slightly between sources).
KNOWN_PARAMS = {
    "mobilenet_v1": 4.2e6, "mobilenet_v2": 3.5e6, "efficientnet_edgetpu_s": 5.4e6,
    "resnet50_v1": 25.6e6, "vgg16": 138.4e6,
}


@pytest.mark.parametrize("name", sorted(KNOWN_PARAMS))
def test_network_files_load_with_known_params(name):
    net = load(os.path.join(NETWORKS_DIR, f"{name}.json"))
    assert net.params == pytest.approx(KNOWN_PARAMS[name], rel=0.03)


def test_vgg16_streams_weights_on_coral():
    r = simulate(load(os.path.join(NETWORKS_DIR, "vgg16.json")), CORAL)
    assert r.streamed_weight_bytes > 100e6
    assert r.latency_ms > r.streamed_weight_bytes / CORAL.offchip_bandwidth_bytes_per_s * 1e3


@pytest.mark.parametrize("space_name,target", [
    ("mobilenet_edgetpu_v2", "pixel6_edgetpu"),
    ("mobilenet_edgetpu_v2", CORAL.replace(param_memory_bytes=3_000_000)),  # forces streaming
    ("micro", "coral_edgetpu"),
    # Every mobile kind (cost_models.processor), on the multi-hardware space too.
    *((space, target) for space in ("micro", "proxylessnas", "mobilenet_multi")
      for target in ("pixel1_cpu", "pixel3_cpu_4t", "pixel3_gpu", "pixel4_dsp")),
])
def test_coster_matches_simulate_exactly(space_name, target):
    space = get_space(space_name)
    coster = ArchitectureCoster(space, target)
    indices = space.sample(np.random.default_rng(0), 12)
    batch = coster.cost_batch(indices)
    for i, idx in enumerate(indices):
        ref = simulate(describe(space.decode(idx), space.default_image_size,
                                space.default_num_classes), target)
        got = coster.cost(idx)
        assert got == {"latency_ms": ref.latency_ms, "energy_mj": ref.energy_mj,
                       "params": ref.params, "macs": ref.macs}
        assert (batch["latency_ms"][i], batch["energy_mj"][i]) == (ref.latency_ms, ref.energy_mj)


def test_coster_rejects_bad_indices():
    space = get_space("micro")
    coster = ArchitectureCoster(space, "coral_edgetpu")
    bad = np.zeros((2, space.num_decisions), dtype=int)
    bad[1, 0] = 99
    with pytest.raises(SpecError, match="out of range"):
        coster.cost_batch(bad)


# -- version-2 ops ---------------------------------------------------------------

def _net(*layers: Layer, shape=(56, 56, 64)) -> NetworkDescription:
    return NetworkDescription("n", shape, layers).validate()


def test_memory_bound_ops_cost_the_bytes_they_move():
    shape = (56, 56, 64)
    n = 56 * 56 * 64
    bw = IDEAL.onchip_bandwidth_bytes_per_s
    for op, extra, moved in [
        ("batch_norm", {}, 2 * n),
        ("activation", {"activation": "hard_swish"}, 2 * n),
        ("softmax", {}, 3 * n),      # statistics pass + normalization pass + write
        ("layer_norm", {}, 3 * n),
    ]:
        layer = Layer(name=op, op=op, inputs=("input",), input_shape=shape,
                      output_shape=shape, **extra)
        cost = layer_cost(_net(layer).layers[0], IDEAL)
        assert cost.compute_cycles == 0 and cost.macs == 0, op
        assert cost.onchip_bytes == moved and cost.bound == "memory", op
        assert cost.latency_ps == round(moved / bw * 1e12), op
    up = Layer(name="up", op="resize", inputs=("input",), input_shape=shape,
               output_shape=(112, 112, 64), mode="nearest")
    assert layer_cost(up, IDEAL).onchip_bytes == n + 4 * n


def test_rectangular_and_transposed_convs_on_the_array():
    base = dict(inputs=("input",), input_shape=(17, 17, 128), padding="same")
    c17 = Layer(name="a", op="conv2d", output_shape=(17, 17, 128), kernel_size=(1, 7), **base)
    c71 = Layer(name="b", op="conv2d", output_shape=(17, 17, 128), kernel_size=(7, 1), **base)
    c77 = Layer(name="c", op="conv2d", output_shape=(17, 17, 128), kernel_size=7, **base)
    costs = [layer_cost(x, IDEAL) for x in (c17, c71, c77)]
    assert costs[0].macs == costs[1].macs == costs[2].macs // 7
    assert costs[0].compute_cycles == costs[1].compute_cycles < costs[2].compute_cycles
    assert costs[0].op == "conv1x7" and costs[1].op == "conv7x1"
    # A stride-2 transposed conv streams its 17x17 input pixels, each scattering
    # a 3x3 kernel: the cycles of a 3x3 conv over a 17x17 output.
    t = Layer(name="t", op="conv2d_transpose", output_shape=(34, 34, 128), kernel_size=3,
              stride=2, **base)
    c33 = Layer(name="d", op="conv2d", output_shape=(17, 17, 128), kernel_size=3, **base)
    assert layer_cost(t, IDEAL).compute_cycles == layer_cost(c33, IDEAL).compute_cycles
    assert t.macs == c33.macs


def test_matmul_and_attention_use_the_array():
    tokens = Layer(name="attn", op="attention", inputs=("input",), input_shape=(1, 196, 256),
                   output_shape=(1, 196, 256), num_heads=4)
    cost = layer_cost(tokens, IDEAL)
    assert cost.compute_cycles > 0 and cost.weight_bytes == 4 * 256 * 256
    assert 0 < cost.utilization <= 1
    proj = Layer(name="p", op="conv2d", inputs=("input",), input_shape=(1, 196, 256),
                 output_shape=(1, 196, 256))
    # More than its four projections, less than four projections plus a generous margin.
    assert 4 * layer_cost(proj, IDEAL).compute_cycles < cost.compute_cycles
    mm = Layer(name="mm", op="matmul", inputs=("input", "input"), input_shape=(4, 64, 64),
               output_shape=(4, 64, 64))
    mm_cost = layer_cost(_net(mm, shape=(4, 64, 64)).layers[0], IDEAL)
    assert mm_cost.macs == 4 * 64 * 64 * 64 and mm_cost.weight_bytes == 0
    assert mm_cost.onchip_bytes == 3 * 4 * 64 * 64


def test_every_layer_names_its_bound():
    r = simulate(load(os.path.join(NETWORKS_DIR, "vgg16.json")), CORAL)
    bounds = {c.name: c.bound for c in r.layers}
    assert bounds["fc6"] == "streaming" and bounds["conv1_1"] == "compute"
    assert bounds["pool1"] == "memory"
    assert set(bounds.values()) == {"compute", "memory", "streaming"}
    doc = r.to_json()
    assert [entry["bound"] for entry in doc["layers"]] == list(bounds.values())
    assert doc["latency_ms"] == r.latency_ms


def test_simulate_command_json(capsys):
    import json

    from tunas_jax.cli import main

    path = os.path.join(NETWORKS_DIR, "resnet50_v1.json")
    assert main(["simulate", "--network", path, "--target", "coral_edgetpu",
                 "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["latency_ms"] == simulate(load(path), CORAL).latency_ms
    assert {"compute", "memory", "streaming"} >= {e["bound"] for e in doc["layers"]}
    assert doc["layers"][0]["output_shape"] == [150, 150, 64]
    assert main(["simulate", "--network", path, "--target", "coral_edgetpu"]) == 0
    assert "streaming" in capsys.readouterr().out


def test_simulator_costs_every_op():
    from test_network_description import _v2

    from search_spaces.network import OPS

    net = NetworkDescription.from_json(_v2())
    r = simulate(net, CORAL)
    assert {layer.op for layer in net.layers} == set(OPS)  # the network holds every op
    for layer, cost in zip(net.layers, r.layers, strict=True):
        assert cost.latency_ps > 0 and cost.bound in ("compute", "memory", "streaming"), layer
        assert (cost.compute_cycles > 0) == (layer.op in
                                              ("conv2d", "conv2d_transpose", "fully_connected",
                                               "matmul", "attention")), layer.name
