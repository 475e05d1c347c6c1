"""Model importers: ONNX and .tflite files built inside the tests import to the expected layers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from search_spaces import SpecError
from search_spaces.network import NetworkDescription
from tunas_jax.importers import import_model
from tunas_jax.importers.graph import GraphBuilder

try:  # optional extras; CI installs both (.ci/run), so these tests run there
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError:
    onnx = None
needs_onnx = pytest.mark.skipif(onnx is None, reason="needs the onnx extra")


def test_fusion_folds_bn_and_activation_into_single_consumer_producer():
    b = GraphBuilder("g", "test")
    b.set_input("x", (8, 8, 3))
    b.add("conv", "c", ["x"], (8, 8, 16), op="conv2d", kernel_size=3)
    b.add("bn", "n", ["c"], (8, 8, 16), op="batch_norm")
    b.add("relu", "r", ["n"], (8, 8, 16), op="activation", activation="relu")
    b.add("conv2", "c2", ["r"], (8, 8, 16), op="conv2d")
    b.add("sum", "s", ["c2", "r"], (8, 8, 16), op="add")  # 'r' has two consumers
    b.add("act", "a", ["r"], (8, 8, 16), op="activation", activation="sigmoid")
    net = b.build()
    assert [layer.name for layer in net.layers] == ["conv", "conv2", "sum", "act"]
    conv = net.layers[0]
    assert conv.batch_norm and conv.activation == "relu"
    assert net.layers[2].inputs == ("conv2", "conv")
    # conv has three consumers after fusion: the sigmoid stays standalone.
    assert net.layers[3].op == "activation" and net.layers[3].inputs == ("conv",)


# -- ONNX --------------------------------------------------------------------------------

def _init(name: str, *dims: int) -> TensorProto:
    return numpy_helper.from_array(np.zeros(dims, np.float32), name)


def _onnx_model(path, unsupported: bool = False, dynamic: bool = False,
                qdq: bool = False) -> None:
    n = helper.make_node
    # qdq: an int8 model as quantizers export it: the input quantized and
    # dequantized, the stem's weight an int8 initializer dequantized in the graph.
    quant = [n("QuantizeLinear", ["x", "sc", "zp"], ["xq"], name="q_in"),
             n("DequantizeLinear", ["xq", "sc", "zp"], ["xd"], name="dq_in"),
             n("DequantizeLinear", ["w1q", "sc", "zp"], ["w1d"], name="dq_w1")] if qdq else []
    nodes = [
        *quant,
        n("Conv", ["xd" if qdq else "x", "w1d" if qdq else "w1"], ["c1"], name="stem",
          kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        n("BatchNormalization", ["c1", "g", "b", "m", "v"], ["n1"], name="stem_bn"),
        n("Relu", ["n1"], ["r1"], name="stem_relu"),
        n("Conv", ["r1", "wdw"], ["dw"], name="dw", group=16, auto_pad="SAME_UPPER",
          kernel_shape=[3, 3]),
        n("Clip", ["dw", "zero", "six"], ["dw6"], name="dw_relu6"),
        n("Conv", ["dw6", "w17", "b17"], ["c17"], name="c1x7", pads=[0, 3, 0, 3]),
        n("HardSwish", ["c17"], ["hs"], name="hswish"),
        n("Add", ["hs", "r1"], ["sum"], name="residual"),
        n("MaxPool", ["sum"], ["mp"], name="maxpool", kernel_shape=[2, 2], strides=[2, 2]),
        n("Resize", ["mp", "", "scales"], ["up"], name="upsample", mode="linear"),
        n("Concat", ["up", "sum"], ["cat"], name="cat", axis=1),
        n("GlobalAveragePool", ["cat"], ["gap"], name="gap"),
        n("Constant", [], ["newshape"], name="shape_const",
          value=helper.make_tensor("s", TensorProto.INT64, [2], [1, 32])),
        n("Reshape", ["gap", "newshape"], ["flat"], name="reshape"),
        n("Gemm", ["flat", "wfc", "bfc"], ["logits"], name="fc", transB=1),
        n("Softmax", ["logits"], ["probs"], name="softmax", axis=1),
    ]
    if unsupported:
        nodes.insert(3, n("LpNormalization", ["r1"], ["r1n"], name="weird_norm"))
    inits = [_init("w1", 16, 3, 3, 3), _init("g", 16), _init("b", 16), _init("m", 16),
             _init("v", 16), _init("wdw", 16, 1, 3, 3), _init("w17", 16, 16, 1, 7),
             _init("b17", 16), _init("wfc", 10, 32), _init("bfc", 10),
             helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
             helper.make_tensor("six", TensorProto.FLOAT, [], [6.0]),
             helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 2, 2])]
    if qdq:
        inits += [numpy_helper.from_array(np.zeros((16, 3, 3, 3), np.int8), "w1q"),
                  helper.make_tensor("sc", TensorProto.FLOAT, [], [0.1]),
                  helper.make_tensor("zp", TensorProto.INT8, [], [0])]
    dims = ["N", 3, "H", "W"] if dynamic else [1, 3, 32, 32]
    graph = helper.make_graph(
        nodes, "tiny_onnx", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))


@needs_onnx
def test_onnx_import_maps_layers(tmp_path):
    path = tmp_path / "m.onnx"
    _onnx_model(path)
    net = import_model(str(path))
    by = {layer.name: layer for layer in net.layers}
    assert list(by) == ["stem", "dw", "c1x7", "residual", "maxpool", "upsample", "cat", "gap",
                        "fc", "softmax"]
    assert net.input_shape == (32, 32, 3)
    stem = by["stem"]
    assert (stem.kernel_size, stem.stride, stem.padding) == (3, 2, (1, 1, 1, 1))
    assert stem.batch_norm and stem.activation == "relu" and stem.output_shape == (16, 16, 16)
    assert by["dw"].groups == 16 and by["dw"].padding == "same"
    assert by["dw"].activation == "relu6"  # Clip(0, 6)
    assert by["c1x7"].kernel_size == (1, 7) and by["c1x7"].padding == (0, 0, 3, 3)
    assert by["c1x7"].use_bias and by["c1x7"].activation == "hard_swish"
    assert by["residual"].inputs == ("c1x7", "stem")
    assert by["upsample"].mode == "bilinear" and by["upsample"].output_shape == (16, 16, 16)
    assert by["cat"].output_shape == (16, 16, 32)
    assert by["gap"].global_pool and by["fc"].op == "fully_connected" and by["fc"].use_bias
    assert net.params == (3 * 3 * 3 * 16 + 2 * 16) + 9 * 16 + (7 * 16 * 16 + 16) + 32 * 10 + 10
    assert net.macs == 16 * 16 * (27 * 16 + 9 * 16 + 7 * 16 * 16) + 320
    assert NetworkDescription.from_json(net.to_json()) == net


@needs_onnx
def test_onnx_quantize_dequantize_pass_through(tmp_path):
    plain, qdq = tmp_path / "plain.onnx", tmp_path / "qdq.onnx"
    _onnx_model(plain)
    _onnx_model(qdq, qdq=True)
    assert import_model(str(qdq)).layers == import_model(str(plain)).layers


@needs_onnx
def test_onnx_import_without_weight_data_and_with_input_shape(tmp_path):
    path = tmp_path / "m.onnx"
    _onnx_model(path, dynamic=True)
    from onnx.external_data_helper import convert_model_to_external_data

    model = onnx.load(str(path))
    convert_model_to_external_data(model, all_tensors_to_one_file=True, location="weights.bin",
                                   size_threshold=0)
    onnx.save(model, str(path))
    (tmp_path / "weights.bin").unlink()  # shapes must come from dims alone
    with pytest.raises(SpecError, match="--input-shape"):
        import_model(str(path))
    net = import_model(str(path), input_shape=(64, 48, 3))
    assert net.input_shape == (64, 48, 3) and net.layers[0].output_shape == (32, 24, 16)


@needs_onnx
def test_onnx_unsupported_op_is_named(tmp_path):
    path = tmp_path / "m.onnx"
    _onnx_model(path, unsupported=True)
    with pytest.raises(SpecError, match=r"node 'weird_norm' \(op type LpNormalization\): "
                                        "not supported"):
        import_model(str(path))


@needs_onnx
def test_import_command_writes_description(tmp_path, capsys):
    from search_spaces.network import load
    from tunas_jax.cli import main

    path, out = tmp_path / "m.onnx", tmp_path / "net.json"
    _onnx_model(path, dynamic=True)
    assert main(["import", str(path), "--out", str(out), "--input-shape", "32,32,3"]) == 0
    assert load(out) == import_model(str(path), input_shape=(32, 32, 3))
    assert "10 layers" in capsys.readouterr().out
    # ... and the simulator costs the imported description, layer by layer.
    assert main(["simulate", "--network", str(out), "--target", "pixel6_edgetpu",
                 "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [e["name"] for e in doc["layers"]] == [layer.name for layer in load(out).layers]
    assert doc["layers"][-1]["bound"] == "memory" and doc["latency_ms"] > 0  # the softmax
    assert main(["import", str(path), "--out", str(out), "--input-shape", "32,32"]) == 2
    assert "--input-shape" in capsys.readouterr().err



# -- TFLite ------------------------------------------------------------------------------

def _tflite_file(path, unsupported: bool = False) -> None:
    """A small .tflite flatbuffer written with the tflite package's builder functions."""
    tfl = pytest.importorskip("tflite")
    import flatbuffers

    ops = tfl.BuiltinOperator
    opt = tfl.BuiltinOptions
    b = flatbuffers.Builder(1024)
    tensors = [  # (name, NHWC shape)
        ("input", [1, 16, 16, 3]), ("w_conv", [8, 3, 3, 3]), ("b_conv", [8]),
        ("stem", [1, 8, 8, 8]), ("w_dw", [1, 3, 3, 16]), ("dw", [1, 8, 8, 16]),
        ("w_g", [16, 1, 7, 4]), ("gconv", [1, 8, 8, 16]), ("sum", [1, 8, 8, 16]),
        ("pool", [1, 4, 4, 16]), ("up", [1, 8, 8, 16]), ("size", [2]),
        ("cat", [1, 8, 8, 32]), ("axes", [2]), ("mean", [1, 32]), ("w_fc", [10, 32]),
        ("fc", [1, 10]), ("softmax", [1, 10]), ("quant", [1, 10]), ("exp", [1, 8, 8, 16]),
    ]
    idx = {name: i for i, (name, _) in enumerate(tensors)}

    def vec(start, values, prepend="PrependInt32"):
        start(b, len(values))
        for v in reversed(values):
            getattr(b, prepend)(v)
        return b.EndVector()

    def options(kind, **fields):
        getattr(tfl, f"{kind}Start")(b)
        for field, value in fields.items():
            getattr(tfl, f"{kind}Add{field}")(b, value)
        return getattr(tfl, f"{kind}End")(b), getattr(opt, kind)

    same, valid = tfl.Padding.SAME, tfl.Padding.VALID
    layers = [  # (builtin op, inputs, outputs, options)
        (ops.CONV_2D, ["input", "w_conv", "b_conv"], ["stem"],
         ("Conv2DOptions", dict(Padding=same, StrideW=2, StrideH=2, DilationWFactor=1,
                                DilationHFactor=1, FusedActivationFunction=3))),
        (ops.DEPTHWISE_CONV_2D, ["stem", "w_dw", -1], ["dw"],
         ("DepthwiseConv2DOptions", dict(Padding=same, StrideW=1, StrideH=1,
                                         DepthMultiplier=2, DilationWFactor=1,
                                         DilationHFactor=1))),
        (ops.CONV_2D, ["dw", "w_g", -1], ["gconv"],
         ("Conv2DOptions", dict(Padding=same, StrideW=1, StrideH=1, DilationWFactor=1,
                                DilationHFactor=1))),
        (ops.ADD, ["dw", "gconv"], ["sum"], ("AddOptions", dict(FusedActivationFunction=1))),
        (ops.MAX_POOL_2D, ["sum"], ["pool"],
         ("Pool2DOptions", dict(Padding=valid, StrideW=2, StrideH=2, FilterWidth=2,
                                FilterHeight=2))),
        (ops.RESIZE_BILINEAR, ["pool", "size"], ["up"], ("ResizeBilinearOptions", {})),
        (ops.CONCATENATION, ["up", "sum"], ["cat"], ("ConcatenationOptions", dict(Axis=3))),
        (ops.MEAN, ["cat", "axes"], ["mean"], ("ReducerOptions", dict(KeepDims=False))),
        (ops.FULLY_CONNECTED, ["mean", "w_fc", -1], ["fc"], ("FullyConnectedOptions", {})),
        (ops.SOFTMAX, ["fc"], ["softmax"], ("SoftmaxOptions", dict(Beta=1.0))),
        (ops.QUANTIZE, ["softmax"], ["quant"], None),
    ]
    if unsupported:
        layers.insert(4, (ops.EXP, ["sum"], ["exp"], None))
    codes = sorted({op for op, *_ in layers})
    op_offsets = []
    for op, ins, outs, opts in layers:
        made = options(opts[0], **opts[1]) if opts else None
        ins_v = vec(tfl.OperatorStartInputsVector, [idx[t] if t != -1 else -1 for t in ins])
        outs_v = vec(tfl.OperatorStartOutputsVector, [idx[t] for t in outs])
        tfl.OperatorStart(b)
        tfl.OperatorAddOpcodeIndex(b, codes.index(op))
        tfl.OperatorAddInputs(b, ins_v)
        tfl.OperatorAddOutputs(b, outs_v)
        if made:
            tfl.OperatorAddBuiltinOptionsType(b, made[1])
            tfl.OperatorAddBuiltinOptions(b, made[0])
        op_offsets.append(tfl.OperatorEnd(b))
    tensor_offsets = []
    for name, shape in tensors:
        name_s, shape_v = b.CreateString(name), vec(tfl.TensorStartShapeVector, shape)
        tfl.TensorStart(b)
        tfl.TensorAddShape(b, shape_v)
        tfl.TensorAddName(b, name_s)
        tfl.TensorAddBuffer(b, 0)
        tensor_offsets.append(tfl.TensorEnd(b))
    tensors_v = vec(tfl.SubGraphStartTensorsVector, tensor_offsets, "PrependUOffsetTRelative")
    ops_v = vec(tfl.SubGraphStartOperatorsVector, op_offsets, "PrependUOffsetTRelative")
    in_v = vec(tfl.SubGraphStartInputsVector, [idx["input"]])
    out_v = vec(tfl.SubGraphStartOutputsVector, [idx["quant"]])
    tfl.SubGraphStart(b)
    tfl.SubGraphAddTensors(b, tensors_v)
    tfl.SubGraphAddOperators(b, ops_v)
    tfl.SubGraphAddInputs(b, in_v)
    tfl.SubGraphAddOutputs(b, out_v)
    subgraph = tfl.SubGraphEnd(b)
    code_offsets = []
    for code in codes:
        tfl.OperatorCodeStart(b)
        tfl.OperatorCodeAddBuiltinCode(b, code)
        tfl.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
        tfl.OperatorCodeAddVersion(b, 1)
        code_offsets.append(tfl.OperatorCodeEnd(b))
    codes_v = vec(tfl.ModelStartOperatorCodesVector, code_offsets, "PrependUOffsetTRelative")
    subgraphs_v = vec(tfl.ModelStartSubgraphsVector, [subgraph], "PrependUOffsetTRelative")
    tfl.BufferStart(b)
    buffer = tfl.BufferEnd(b)
    buffers_v = vec(tfl.ModelStartBuffersVector, [buffer], "PrependUOffsetTRelative")
    tfl.ModelStart(b)
    tfl.ModelAddVersion(b, 3)
    tfl.ModelAddOperatorCodes(b, codes_v)
    tfl.ModelAddSubgraphs(b, subgraphs_v)
    tfl.ModelAddBuffers(b, buffers_v)
    b.Finish(tfl.ModelEnd(b), file_identifier=b"TFL3")
    path.write_bytes(bytes(b.Output()))


def test_tflite_import_maps_layers(tmp_path):
    path = tmp_path / "m.tflite"
    _tflite_file(path)
    net = import_model(str(path))
    by = {layer.name: layer for layer in net.layers}
    assert list(by) == ["stem", "dw", "gconv", "sum", "pool", "up", "cat", "mean", "fc",
                        "softmax"]
    stem = by["stem"]
    assert (stem.kernel_size, stem.stride, stem.padding, stem.groups) == (3, 2, "same", 1)
    assert stem.use_bias and stem.activation == "relu6"
    dw = by["dw"]  # depthwise with multiplier 2: groups = Cin = 8, Cout = 16
    assert dw.groups == 8 and dw.output_shape == (8, 8, 16) and not dw.use_bias
    assert by["gconv"].groups == 4 and by["gconv"].kernel_size == (1, 7)  # 16 / filter depth 4
    assert by["sum"].activation == "relu" and by["sum"].inputs == ("dw", "gconv")
    assert by["up"].mode == "bilinear" and by["cat"].output_shape == (8, 8, 32)
    assert by["mean"].global_pool and by["fc"].op == "fully_connected"
    assert net.params == (27 * 8 + 8) + 9 * 16 + 7 * 4 * 16 + 320
    assert net.macs == 64 * (27 * 8 + 9 * 16 + 7 * 4 * 16) + 320
    with pytest.raises(SpecError, match="fixes its input at"):
        import_model(str(path), input_shape=(32, 32, 3))


def test_tflite_unsupported_op_is_named(tmp_path):
    path = tmp_path / "m.tflite"
    _tflite_file(path, unsupported=True)
    with pytest.raises(SpecError, match=r"TFLite op 4 \('exp', EXP\): not supported"):
        import_model(str(path))
    (tmp_path / "junk.tflite").write_bytes(b"not a flatbuffer")
    with pytest.raises(SpecError, match=r"junk\.tflite"):
        import_model(str(tmp_path / "junk.tflite"))


# -- JAX / Flax callables (jaxpr) ----------------------------------------------------------

def _signature(net: NetworkDescription) -> list[tuple]:
    """Every layer's fields, counts and producers by position (names differ by design)."""
    index = {"input": -1, **{layer.name: i for i, layer in enumerate(net.layers)}}
    return [(layer.op, layer.input_shape, layer.output_shape, layer.kernel_size, layer.stride,
             layer.padding, layer.groups, layer.use_bias, layer.batch_norm, layer.activation,
             layer.params, layer.macs, tuple(index[s] for s in layer.inputs))
            for layer in net.layers]


@pytest.mark.parametrize("preset", __import__("search_spaces").presets.CLASSIFICATION_PRESETS)
def test_standalone_model_jaxpr_round_trip(preset):
    from flax import nnx

    from search_spaces import get_preset
    from supernet.standalone import abstract_model
    from tasks import describe
    from tunas_jax.importers.jaxpr_importer import import_function

    spec = get_preset(preset)
    # conv_impl 'xla': the model's native conv form (feature_group_count), which is
    # what an accelerator runs; the CPU-only 'split'/'shift' forms are slices + convs.
    model = abstract_model(spec, 1001, conv_impl="xla")
    model.eval()
    graphdef, state = nnx.split(model)
    net = import_function(lambda x, s: nnx.merge(graphdef, s)(x)[0], (224, 224, 3), state,
                          name=preset)
    native = describe(spec, 224, 1001)
    assert _signature(net) == _signature(native)
    assert (net.params, net.macs) == (native.params, native.macs)


def test_jaxpr_import_of_a_plain_function_and_the_cli(tmp_path, monkeypatch, capsys):
    module = tmp_path / "my_jax_model.py"
    module.write_text('''
import jax
import jax.numpy as jnp
from jax import lax

W17 = jnp.zeros((1, 7, 8, 16))
W = jnp.zeros((16, 10))


def forward(x):
    y = lax.conv_general_dilated(x, W17, (1, 1), ((0, 0), (3, 3)),
                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
    y = jax.nn.sigmoid(y)
    p = lax.reduce_window(y, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    y = jnp.concatenate([p, p], axis=-1)
    return jnp.mean(y, axis=(1, 2)) @ jnp.zeros((32, 10))


def bad(x):
    return jnp.sin(x)
''')
    monkeypatch.syspath_prepend(str(tmp_path))
    net = import_model("my_jax_model:forward", input_shape=(16, 16, 8))
    ops = [(layer.op, layer.output_shape) for layer in net.layers]
    assert ops == [("conv2d", (16, 16, 16)),  # the sigmoid fused into it
                   ("pool", (8, 8, 16)), ("concat", (8, 8, 32)), ("pool", (1, 1, 32)),
                   ("fully_connected", (1, 1, 10))]
    conv = net.layers[0]
    assert conv.kernel_size == (1, 7) and conv.padding == "same"  # (0,0),(3,3) is SAME here
    assert conv.activation == "sigmoid"
    assert net.layers[1].pool_type == "max" and net.layers[3].global_pool
    with pytest.raises(SpecError, match=r"jaxpr equation 0 \(sin\): not supported"):
        import_model("my_jax_model:bad", input_shape=(4, 4, 1))
    from tunas_jax.cli import main

    out = tmp_path / "n.json"
    assert main(["import", "my_jax_model:forward", "--out", str(out), "--input-shape",
                 "16,16,8"]) == 0
    assert main(["import", "my_jax_model:forward", "--out", str(out)]) == 2
    assert "needs --input-shape" in capsys.readouterr().err
