"""Mobile CPU/GPU/DSP targets: their latency models, calibration, `tunas-jax targets`,
the reference networks they are calibrated on, and the Edge TPU numbers staying put."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from cost_models import NETWORKS_DIR, ArchitectureCoster, get_target, simulate
from cost_models.calibration import (
    DEVICE_OF_TARGET,
    HELD_OUT,
    calibration_report,
    evaluate,
    reference_network,
)
from cost_models.hardware import LatencyModel
from cost_models.processor import ProcessorTarget
from cost_models.reference_networks import NETWORKS, mobilenet_v2, mobilenet_v3
from cost_models.targets import TARGETS
from search_spaces import SpecError, get_space
from search_spaces.network import Layer, load
from tasks import describe
from tunas_jax.cli import main as cli_main

MOBILE = ("pixel1_cpu", "pixel3_cpu_4t", "pixel3_gpu", "pixel4_dsp")


def conv(cin: int, cout: int, size: int, k: int = 1, groups: int = 1,
         activation: str | None = "relu") -> Layer:
    return Layer("c", "conv2d", ("input",), (size, size, cin), (size, size, cout), k, 1, "same",
                 groups, False, True, activation)


def test_every_target_is_a_latency_model_with_a_kind():
    kinds = {name: t.kind for name, t in TARGETS.items()}
    assert kinds == {"coral_edgetpu": "edgetpu", "pixel6_edgetpu": "edgetpu",
                     "pixel1_cpu": "cpu", "pixel3_cpu_4t": "cpu", "pixel3_gpu": "gpu",
                     "pixel4_dsp": "dsp"}
    for t in TARGETS.values():
        assert isinstance(t, LatencyModel)
    with pytest.raises(SpecError, match="kind 'npu' is unknown"):
        get_target("pixel1_cpu").replace(kind="npu")
    with pytest.raises(SpecError, match="param_memory_bytes 0 must be a positive integer"):
        get_target("pixel3_gpu").replace(param_memory_bytes=0)
    with pytest.raises(SpecError, match=r"unknown field\(s\) \['clock_hz'\]"):
        get_target("pixel1_cpu").replace(clock_hz=1.0)
    with pytest.raises(SpecError, match="neither a target name nor a LatencyModel"):
        get_target(3)  # type: ignore[arg-type]


# Values of the Edge TPU targets before the target protocol existed (commit 817621a).
@pytest.mark.parametrize("target,model,latency_ms,energy_mj", [
    ("coral_edgetpu", "mobilenet_v2_w1.0", 2.623256541, 0.1869263334164),
    ("coral_edgetpu", "mobilenet_edgetpu_v2_s", 2.711779043, 0.5521574928172001),
    ("coral_edgetpu", "vgg16", 311.6521832, 33.00248348128),
    ("pixel6_edgetpu", "mobilenet_v2_w1.0", 0.956610673, 0.0811031786019),
    ("pixel6_edgetpu", "mobilenet_edgetpu_v2_s", 0.981882953, 0.2637086354859),
    ("pixel6_edgetpu", "vgg16", 16.612098254, 5.796590613476201),
])
def test_edgetpu_numbers_unchanged(target, model, latency_ms, energy_mj):
    r = simulate(reference_network(model), target)
    assert (r.latency_ms, r.energy_mj) == (latency_ms, energy_mj)


def test_coster_straddling_a_small_weight_cache_stays_exact():
    # 60 kB of fp32 cache fills inside the network: the per-layer straddle path.
    target = get_target("pixel1_cpu").replace(param_memory_bytes=60_000)
    space = get_space("micro")
    coster = ArchitectureCoster(space, target)
    for idx in space.sample(np.random.default_rng(2), 8):
        ref = simulate(describe(space.decode(idx), 32, 10), target)
        assert coster.cost(idx)["latency_ms"] == ref.latency_ms
        assert any(c.weights_cached for c in ref.layers)
        assert not all(c.weights_cached for c in ref.layers)


def test_processor_layer_model_by_hand():
    t = ProcessorTarget(name="toy", kind="cpu", bytes_per_value=4, dense_macs_per_s=1e9,
                        depthwise_efficiency=0.5, memory_bandwidth_bytes_per_s=1e9,
                        param_memory_bytes=1, op_overhead_ms=0.01, op_floor_ms=0.0,
                        inference_overhead_ms=0.0)
    layer = conv(64, 64, 32)  # 4.19 MMACs; 2 x 64 kB activations + 16 kB weights, fp32
    cost = t.layer_cost(layer, weights_cached=False)
    compute_s = 32 * 32 * 64 * 64 / 1e9
    memory_s = (2 * 32 * 32 * 64 + 64 * 64) * 4 / 1e9
    assert cost.latency_ps == round((max(compute_s, memory_s) + 1e-5) * 1e12)
    assert cost.bound == "compute" and cost.weight_bytes == 64 * 64 * 4
    cached = t.layer_cost(layer, weights_cached=True)
    assert cached.offchip_bytes == cost.offchip_bytes - 64 * 64 * 4
    dw = t.layer_cost(conv(64, 64, 32, k=3, groups=64))
    assert dw.compute_ms == pytest.approx(32 * 32 * 64 * 9 / 0.5e9 * 1e3)


def test_gpu_launch_floor_and_dsp_slow_ops():
    gpu, dsp, cpu = (get_target(n) for n in ("pixel3_gpu", "pixel4_dsp", "pixel1_cpu"))
    tiny = conv(8, 8, 2)
    assert gpu.layer_cost(tiny).latency_ps == round(gpu.op_floor_ms * 1e9)
    assert gpu.layer_cost(tiny).bound == "overhead"
    relu, hswish = conv(64, 64, 16), conv(64, 64, 16, activation="hard_swish")
    assert dsp.layer_cost(hswish).latency_ps - dsp.layer_cost(relu).latency_ps == round(
        dsp.slow_op_ms * 1e9)
    assert cpu.layer_cost(hswish).latency_ps == cpu.layer_cost(relu).latency_ps


def test_targets_differ_in_character():
    # Width 0.35 -> 1.4 (about 10x the MACs): a CPU pays for the MACs, a DSP's fixed
    # floor hides most of them, a GPU is in between.
    ratio = {n: simulate(mobilenet_v2(1.4), n).latency_ms / simulate(mobilenet_v2(0.35), n)
             .latency_ms for n in MOBILE}
    assert ratio["pixel1_cpu"] > 5 and ratio["pixel4_dsp"] < 3
    assert ratio["pixel4_dsp"] < ratio["pixel3_gpu"] < ratio["pixel1_cpu"]
    # Depthwise: the single-core CPU runs it at a third of its dense rate or better.
    assert get_target("pixel1_cpu").depthwise_efficiency > 0.3


def test_reference_networks_known_counts():
    # MobileNetV3 paper (Howard et al. 2019) table 3: Large 1.0 219M MAdds / 5.4M params,
    # Small 1.0 56M / 2.5M (1001 classes here: within 3%).
    large, small = mobilenet_v3("large"), mobilenet_v3("small")
    assert large.params == pytest.approx(5.4e6, rel=0.03)
    assert large.macs == pytest.approx(219e6, rel=0.03)
    assert small.params == pytest.approx(2.5e6, rel=0.03)
    assert small.macs == pytest.approx(56e6, rel=0.03)
    assert sum(layer.op == "mul" for layer in large.layers) == 8  # one SE per SE block
    # The JSON files are what the builders write.
    for name, build in NETWORKS.items():
        assert load(os.path.join(NETWORKS_DIR, f"{name}.json")).to_json() == build().to_json()
    # Width and resolution variants: MobileNetV2 0.35 at 96 px keeps the 1280 head.
    net = reference_network("mobilenet_v2_w0.35", 96)
    assert net.input_shape == (96, 96, 3)
    assert next(x for x in net.layers if x.name == "head").output_shape[2] == 1280


def test_multi_models_get_their_post_pool_conv():
    net = reference_network("mobilenet_multi_avg_w1.5")
    names = [layer.name for layer in net.layers]
    assert names[-3:] == ["pool", "pre_logits", "logits"]
    assert net.layers[-2].output_shape == (1, 1, 1920)  # 1280 x 1.5


@pytest.mark.parametrize("target", MOBILE)
def test_mobile_targets_fit_and_held_out_errors(target):
    # Figures of EXPERIMENTS.md ("Mobile targets"): shipped values against their table.
    fit = evaluate(target)
    assert fit.mean_abs_error_percent < 10
    assert fit.spearman > 0.8
    held = evaluate(target, HELD_OUT[target])
    assert held.mean_abs_error_percent < 25
    assert target in DEVICE_OF_TARGET


def test_calibration_report_has_held_out_rows():
    start = get_target("pixel4_dsp").replace(dense_macs_per_s=1e11, inference_overhead_ms=4.0)
    result = calibration_report(start, loo=False, restarts=1)
    assert result.after.rms_log_error < result.before.rms_log_error
    assert [r.model for r in result.held_out.rows] == ["mobilenet_multi_avg_w1.5",
                                                       "mobilenet_multi_max_w1.5"]
    doc = result.to_json()
    assert doc["held_out"]["rows"][0]["input_size"] == 224
    assert doc["held_out"]["pearson"] is None  # two rows: no correlation


def test_calibrate_command_prints_held_out(tmp_path, capsys):
    out = tmp_path / "dsp.json"
    assert cli_main(["calibrate", "--target", "pixel4_dsp", "--no-loo", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "held out" in text and "mobilenet_multi_max_w1.5" in text
    assert json.loads(out.read_text())["held_out"]["rows"][1]["published_ms"] == 5.7


def test_mobile_target_refuses_csv(tmp_path, capsys):
    csv_file = tmp_path / "rows.csv"
    csv_file.write_text("model,input_size,device,latency_ms\nmobilenet_v2_w1.0,224,pixel1_cpu,70\n")
    assert cli_main(["calibrate", "--target", "pixel1_cpu", "--csv", str(csv_file)]) == 2
    assert "drop --csv" in capsys.readouterr().err


def test_targets_command(capsys):
    assert cli_main(["targets", "--format", "json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {*TARGETS, "host_cpu"} and rows["host_cpu"]["kind"] == "measured"
    assert rows["pixel4_dsp"]["kind"] == "dsp" and rows["pixel4_dsp"]["held_out_models"] == 2
    assert rows["coral_edgetpu"]["fit_models"] == 5
    assert rows["coral_edgetpu"]["held_out_mean_abs_error_percent"] is None
    assert cli_main(["targets"]) == 0
    table = capsys.readouterr().out
    assert "pixel3_gpu" in table and " gpu " in table


# google-research tunas mobile_search_space_v3.py: (kernel, absolute expansion size,
# output filters, stride) of every bottleneck, transcribed from mobilenet_multi_avg/max.
TUNAS_MULTI = {
    "mobilenet_multi_avg": [(3, 96, 32, 2), (3, 64, 32, 1), (5, 160, 64, 2), (3, 192, 64, 1),
                            (3, 128, 64, 1), (3, 192, 64, 1), (5, 384, 128, 2),
                            (3, 384, 128, 1), (3, 384, 128, 1), (3, 384, 128, 1),
                            (3, 768, 160, 1), (3, 640, 160, 1), (3, 960, 192, 2),
                            (5, 768, 192, 1), (5, 768, 192, 1), (5, 768, 192, 1)],
    "mobilenet_multi_max": [(3, 96, 32, 2), (5, 192, 64, 2), (3, 128, 64, 1), (3, 128, 64, 1),
                            (5, 384, 128, 2), (3, 512, 128, 1), (3, 384, 128, 1),
                            (3, 384, 128, 1), (3, 768, 128, 1), (3, 384, 128, 1),
                            (3, 768, 160, 2), (5, 640, 160, 1), (3, 800, 160, 1),
                            (5, 640, 160, 1)],
}


def _tunas_params(rows: list[tuple[int, int, int, int]], classes: int = 1001) -> int:
    """Trainable parameters counted straight from the TuNAS definition: conv kernels,
    batch-norm gamma/beta, the post-pool 1x1 conv of 1280 (bias, no batch norm) and
    the logits (bias)."""
    params, cin = 3 * 3 * 3 * 32 + 2 * 32, 32  # stem
    for k, expanded, out, _ in rows:
        params += cin * expanded + 2 * expanded + k * k * expanded + 2 * expanded
        params += expanded * out + 2 * out
        cin = out
    params += cin * 960 + 2 * 960  # head conv
    return params + 960 * 1280 + 1280 + 1280 * classes + classes


@pytest.mark.parametrize("name,params", [("mobilenet_multi_avg", 4_948_873),
                                         ("mobilenet_multi_max", 4_422_921)])
def test_multi_presets_parameter_counts(name, params):
    # No parameter count of these models was found published (published_latency_mobile.md
    # lists only their latencies), so the figure is derived from TuNAS's definition:
    # the preset plus its post-pool conv must match that count exactly.
    assert _tunas_params(TUNAS_MULTI[name]) == params
    assert reference_network(f"{name}_w1.0").params == params
    # The preset itself stops at the pool (ModelSpec head) and has the same blocks.
    from search_spaces import get_preset

    spec = get_preset(name)
    assert describe(spec, 224, 1001).params == params - 960 * 1280 - 1280 - 320 * 1001
    active = [(b.kernel_size, b.input_filters * b.expansion_ratio, b.output_filters, b.stride)
              for b in spec.active_blocks]
    assert active == TUNAS_MULTI[name]
    # TuNAS wraps every block but the first of each of the five groups in a residual.
    assert sum(b.residual for b in spec.active_blocks) == len(TUNAS_MULTI[name]) - 5


def test_multi_space_holds_both_presets_and_only_relu_ops():
    from search_spaces import get_preset

    space = get_space("mobilenet_multi")
    for name in ("mobilenet_multi_avg", "mobilenet_multi_max"):
        idx = space.encode(get_preset(name))
        assert idx is not None
        assert space.decode(idx).active_blocks == get_preset(name).active_blocks
    ops = {b.block_type for idx in space.sample(np.random.default_rng(3), 20)
           for b in space.decode(idx).blocks}
    assert ops <= {"dw_ibn", "fused_ibn", "skip"}
    net = describe(space.decode(space.sample(np.random.default_rng(4), 1)[0]), 224, 1001)
    assert {layer.activation for layer in net.layers} <= {"relu", None}
    assert not any(layer.op == "mul" for layer in net.layers)


def test_block_analyzer_on_a_processor_target():
    from cost_models.block_analyzer import analyze

    rows = analyze("pixel1_cpu", shapes=(("28x28x64", 28, 64),), group_sizes=(16,))
    by_type = {r.block_type: r for r in rows}
    # No array: utilization is the achieved / peak MAC rate, so a depthwise kxk conv
    # runs at about the fitted depthwise efficiency, a fused block's full conv near 1.
    dw = by_type["dw_ibn"]
    assert 0 < dw.utilization < 1
    assert dw.kxk_utilization == pytest.approx(get_target("pixel1_cpu").depthwise_efficiency,
                                               rel=0.1)
    assert by_type["fused_ibn"].kxk_utilization > 0.9
