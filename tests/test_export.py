"""TFLite export: float logits match Flax, int8 top-1 within a point, the file imports back.

TensorFlow (the `export` extra) is required here on purpose: CI installs it
(README test command), so these tests run there instead of being skipped;
without it they fail with the install hint. It is imported when the first
export runs, not when the tests are collected.
One tiny real training on digits at their native 8x8 px (300 steps: batch
norm's running averages, momentum 0.99, need that many to settle) of a
micro architecture with every IBN type: depthwise, fused, group conv (3
groups) and grouped IBNs, and residual adds.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import jax
import numpy as np
import pytest
import tflite
from flax import nnx

import supernet
from search_spaces import Architecture, get_space
from tasks import describe
from tunas_jax import export, train
from tunas_jax.cli import main
from tunas_jax.importers import import_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MICRO_DIGITS = os.path.join(REPO, "experiments", "train", "micro_digits.py")
# stages.0: dw_ibn; stages.1: fused_ibn, gc_ibn (residual); stages.2: grouped_ibn, dw_ibn
# (residual). The first block's dw_ibn is residual too (16 -> 16 channels).
ALL_OPS = [0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0]
# Measured float TFLite vs Flax on the digits test split: 1e-5 (logits up to ~16).
FLOAT_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("export")
    arch = str(root / "allops.json")
    Architecture.from_indices(get_space("micro"), ALL_OPS, name="allops").save(arch)
    config = train.load_train_config(MICRO_DIGITS, {
        "architecture": arch, "dataset.image_size": "8", "batch_size": "64",
        "lr_batch_base": "64", "learning_rate": "1e-2", "warmup_epochs": "0.3",
        "num_steps": "300", "eval_every_epochs": "100", "log_every_steps": "100",
        "ema_decay": "0.9", "dropout_rate": "0", "label_smoothing": "0", "num_threads": "1"})
    path = str(root / "train")
    result = train.run_training(config, path, log=lambda _: None)
    assert result["top1"] > 0.8  # a real model, or the int8 comparison means little
    return path


@pytest.fixture(scope="module")
def restored(workdir):
    trained = train.load_trained_model(workdir)
    network = export.export_network(trained.model, trained.architecture.spec, 8)
    return trained, network


@pytest.fixture(scope="module")
def test_split(restored):
    """The digits test split as the model sees it: (images, labels)."""
    from tunas_jax.data import create_eval_data

    trained, _ = restored
    images, labels = [], []
    for batch in create_eval_data(trained.config.dataset, batch_size=512, num_threads=1):
        mask = np.asarray(batch["mask"])
        images.append(np.asarray(batch["image"])[mask])
        labels.append(np.asarray(batch["label"])[mask])
    return np.concatenate(images), np.concatenate(labels)


@pytest.fixture(scope="module")
def float_files(restored, tmp_path_factory):
    _, network = restored
    return {slices: export.convert(network, group_conv_as_slices=slices)
            for slices in (False, True)}


@pytest.fixture(scope="module")
def int8_export(workdir, tmp_path_factory):
    """(summary, flatbuffer) of `export_tflite(..., int8=True)`: the command's own path."""
    out = tmp_path_factory.mktemp("int8") / "model_int8.tflite"
    summary = export.export_tflite(workdir, out, int8=True, calibration_examples=128)
    return summary, out.read_bytes()


def op_names(flatbuffer: bytes) -> list[str]:
    model = tflite.Model.GetRootAsModel(flatbuffer, 0)
    graph = model.Subgraphs(0)
    names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
    ops = []
    for k in range(graph.OperatorsLength()):
        code = model.OperatorCodes(graph.Operators(k).OpcodeIndex())
        ops.append(names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())])
    return ops


def test_fold_batch_norm_matches_conv_bn():
    """A conv with running statistics far from (0, 1): folding gives the same outputs."""
    rng = np.random.default_rng(0)
    for groups, cin, cout in ((1, 6, 8), (2, 6, 8), (8, 8, 8)):
        module = supernet.layers.ConvBN(cin, cout, 3, 2, groups, relu=False,
                                        rngs=nnx.Rngs(0))
        module.bn.mean.set_value(rng.normal(2.0, 1.0, cout).astype(np.float32))
        module.bn.var.set_value(rng.uniform(0.1, 4.0, cout).astype(np.float32))
        module.bn.scale.set_value(rng.normal(1.0, 0.5, cout).astype(np.float32))
        module.bn.bias.set_value(rng.normal(0.0, 0.5, cout).astype(np.float32))
        module.eval()
        x = rng.standard_normal((2, 7, 7, cin)).astype(np.float32)
        kernel, bias = export.fold_batch_norm(module)
        folded = supernet.layers.conv2d(jax.numpy.asarray(x), kernel, 2, groups, "xla") + bias
        np.testing.assert_allclose(folded, module(x), atol=2e-5)


@pytest.mark.parametrize("slices", [False, True], ids=["native", "slices"])
def test_float_logits_match_flax(restored, test_split, float_files, slices):
    trained, _ = restored
    images, _ = test_split
    reference = np.asarray(trained.model(images)[0])
    exported = export.run_tflite(float_files[slices], images)
    diff = float(np.max(np.abs(exported - reference)))
    print(f"float TFLite ({'slices' if slices else 'native'}) vs Flax on {len(images)} test "
          f"images: max abs logit diff {diff:.3g} (max |logit| "
          f"{np.max(np.abs(reference)):.3g})")
    assert diff < FLOAT_TOLERANCE
    assert np.all(np.argmax(exported, -1) == np.argmax(reference, -1))


def test_group_conv_as_slices_writes_no_group_conv(restored, float_files):
    _, network = restored
    grouped = [c.node for c in network.convs.values()
               if c.node.groups > 1 and not c.node.depthwise]
    assert grouped  # the architecture has group convs to lower
    native, sliced = op_names(float_files[False]), op_names(float_files[True])
    assert "SLICE" not in native and "CONCATENATION" not in native
    assert sliced.count("SLICE") == sum(n.groups for n in grouped)
    assert sliced.count("CONCATENATION") == len(grouped)
    assert sliced.count("CONV_2D") == native.count("CONV_2D") + sum(n.groups - 1
                                                                   for n in grouped)
    # Every CONV_2D of the sliced file reads all of its input channels.
    model = tflite.Model.GetRootAsModel(float_files[True], 0)
    graph = model.Subgraphs(0)
    for k, name in enumerate(sliced):
        if name == "CONV_2D":
            op = graph.Operators(k)
            x, w = (graph.Tensors(int(i)).ShapeAsNumpy() for i in op.InputsAsNumpy()[:2])
            assert x[-1] == w[-1]


def test_int8_export_top1_within_a_point(workdir, test_split, float_files, int8_export):
    images, labels = test_split
    summary, flatbuffer = int8_export
    assert summary["bytes"] == len(flatbuffer) and summary["calibration_examples"] == 128
    assert summary["quantization"]["input"]["dtype"] == "int8"
    assert summary["quantization"]["output"]["dtype"] == "int8"
    # Full-integer: builtin ops only, no float islands (no QUANTIZE / DEQUANTIZE), and every
    # tensor int8 except the int32 biases and the MEAN axes.
    assert set(op_names(flatbuffer)) == {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN",
                                         "FULLY_CONNECTED"}
    graph = tflite.Model.GetRootAsModel(flatbuffer, 0).Subgraphs(0)
    types = {graph.Tensors(i).Type() for i in range(graph.TensorsLength())}
    assert types == {tflite.TensorType.INT8, tflite.TensorType.INT32}
    float_top1 = np.mean(np.argmax(export.run_tflite(float_files[False], images), -1) == labels)
    int8_top1 = np.mean(np.argmax(export.run_tflite(flatbuffer, images), -1) == labels)
    print(f"top-1 on the {len(labels)} digits test images: float {float_top1:.4f}, "
          f"int8 {int8_top1:.4f}; int8 max abs logit diff on the check images "
          f"{summary['max_abs_logit_diff']:.3g}")
    assert abs(int8_top1 - float_top1) <= 0.01
    assert float_top1 == pytest.approx(train.evaluate_workdir(workdir)["top1"])


def _canonical(layer, rename):
    return dataclasses.replace(layer, name=rename(layer.name),
                               inputs=tuple(rename(i) for i in layer.inputs))


def test_exported_file_imports_to_the_architectures_description(restored, float_files,
                                                                int8_export, tmp_path):
    """The import names each layer by its output tensor, '<description layer>/<op>;...'
    (the export's name scopes); the converter renames the model's output tensor. Batch
    norm is folded: each conv has a bias instead (Cout params instead of 2 * Cout)."""
    trained, _ = restored
    native = describe(trained.architecture.spec, 8, trained.model.task,
                      input_channels=trained.model.input_channels)
    expected = [dataclasses.replace(layer, batch_norm=False, use_bias=True)
                if layer.op == "conv2d" else layer for layer in native.layers]
    for int8, flatbuffer in ((False, float_files[False]), (True, int8_export[1])):
        path = tmp_path / f"m{int(int8)}.tflite"
        path.write_bytes(flatbuffer)
        imported = import_model(str(path))
        output = imported.layers[-1].name

        def rename(name, output=output):
            return "logits" if name == output else name.split("/")[0]

        assert [_canonical(layer, rename) for layer in imported.layers] == expected
        assert imported.macs == native.macs
        assert sum(layer.weight_count for layer in imported.layers) == \
            sum(layer.weight_count for layer in native.layers)
        convs = [layer for layer in native.layers if layer.op == "conv2d"]
        assert imported.params == native.params - sum(c.output_shape[2] for c in convs)


def test_cli_export_and_errors(workdir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "cli.tflite"
    assert main(["export", "--workdir", workdir, "--out", str(out), "--int8",
                 "--group-conv-as-slices", "--calibration-examples", "16", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["int8"] and summary["group_conv_as_slices"]
    assert out.stat().st_size == summary["bytes"]
    assert "SLICE" in op_names(out.read_bytes())
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")]  # atomic write

    def one_line_error(argv, words):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        for word in words:
            assert word in err

    one_line_error(["export", "--workdir", str(tmp_path), "--out", str(tmp_path / "x.tflite")],
                   ["--workdir", "not a `tunas-jax train` workdir"])
    one_line_error(["export", "--workdir", workdir, "--out", str(tmp_path / "x.tflite"),
                    "--int8", "--calibration-examples", "0"], ["--calibration-examples 0"])
    # Without TensorFlow: the extra to install, before any restore.
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    one_line_error(["export", "--workdir", workdir, "--out", str(tmp_path / "x.tflite")],
                   ["tensorflow", "pip install 'tunas-jax[export]'"])
    assert not (tmp_path / "x.tflite").exists()
