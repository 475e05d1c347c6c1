"""Import a .tflite flatbuffer as a network description (optional extra `tflite`, no TensorFlow).

Parsed with the `tflite` package (the generated flatbuffer reader of the
TFLite schema). Tensors are NHWC with static shapes: [1, H, W, C] becomes
[H, W, C], [1, T, C] is [1, T, C], [1, C] is [1, 1, C]. A tensor is an
activation if it is the subgraph's input or an output of an op that reads
one; every other tensor (weights, biases, shape operands, dequantized
constants) is a constant and never a layer.

Mapped ops: CONV_2D (groups = input channels / filter depth),
DEPTHWISE_CONV_2D (groups = input channels; depth multiplier = Cout / Cin),
TRANSPOSE_CONV, AVERAGE_POOL_2D, MAX_POOL_2D, MEAN over height and width
(global average pool), ADD, MUL, CONCATENATION, FULLY_CONNECTED,
RESIZE_BILINEAR, RESIZE_NEAREST_NEIGHBOR, SOFTMAX, RESHAPE, the standalone
activations (RELU, RELU6, RELU_N1_TO_1, LOGISTIC, TANH, HARD_SWISH,
LEAKY_RELU) and fused activation functions; QUANTIZE and DEQUANTIZE pass
their input through. Anything else is refused with the op's position,
output tensor and op name.
"""

from __future__ import annotations

import os
from typing import Any

from search_spaces.errors import SpecError
from search_spaces.network import Shape
from tunas_jax.importers.graph import GraphBuilder, hwc_axis, optional_import, to_hwc

# Standalone activation ops and fused activation functions (ActivationFunctionType).
ACTIVATION_OPS = {"RELU": "relu", "RELU6": "relu6", "RELU_N1_TO_1": "relu_n1_to_1",
                  "LOGISTIC": "sigmoid", "TANH": "tanh", "HARD_SWISH": "hard_swish",
                  "LEAKY_RELU": "leaky_relu"}
FUSED = {0: None, 1: "relu", 2: "relu_n1_to_1", 3: "relu6", 4: "tanh"}
PASS_THROUGH = ("QUANTIZE", "DEQUANTIZE")
SUPPORTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "AVERAGE_POOL_2D",
             "MAX_POOL_2D", "MEAN", "ADD", "MUL", "CONCATENATION", "FULLY_CONNECTED",
             "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "SOFTMAX", "RESHAPE",
             *ACTIVATION_OPS, *PASS_THROUGH)


def _options(tflite: Any, op: Any, cls_name: str) -> Any:
    table = op.BuiltinOptions()
    opts = getattr(tflite, cls_name)()
    if table is None:
        raise SpecError(f"op without its {cls_name}")
    opts.Init(table.Bytes, table.Pos)
    return opts


def import_tflite(path: str | os.PathLike, input_shape: Shape | None = None,
                  name: str | None = None) -> Any:
    """The network description of the .tflite model at `path`."""
    tflite = optional_import("tflite", "tflite", "importing .tflite")
    try:
        with open(path, "rb") as f:
            buf = f.read()
        model = tflite.Model.GetRootAsModel(buf, 0)
        graph = model.Subgraphs(0)
    except OSError as err:
        raise SpecError(f"TFLite model {path}: cannot read ({err.strerror})") from None
    except Exception as err:  # a truncated or foreign flatbuffer
        raise SpecError(f"TFLite model {path}: not a .tflite flatbuffer ({err})") from None
    if graph is None:
        raise SpecError(f"TFLite model {path}: no subgraph")
    names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}

    def tensor(i: int) -> Any:
        return graph.Tensors(i)

    def dims(i: int) -> list[int]:
        return [int(d) for d in tensor(i).ShapeAsNumpy()] if tensor(i).ShapeLength() else []

    def tname(i: int) -> str:
        return (tensor(i).Name() or b"").decode() or f"tensor_{i}"

    b = GraphBuilder(name or os.path.splitext(os.path.basename(os.fspath(path)))[0], "TFLite")
    inputs = [int(i) for i in graph.InputsAsNumpy()]
    if len(inputs) != 1:
        raise SpecError(f"TFLite model {path}: {len(inputs)} subgraph inputs; the description "
                        "has one input image")
    shape = to_hwc(dims(inputs[0]), f"TFLite input {tname(inputs[0])!r}")
    if input_shape is not None and tuple(input_shape) != shape:
        raise SpecError(f"--input-shape {list(input_shape)}: the .tflite file fixes its input "
                        f"at {list(shape)}; omit --input-shape or pass that shape")
    b.set_input(str(inputs[0]), shape)
    for k in range(graph.OperatorsLength()):
        op = graph.Operators(k)
        code = model.OperatorCodes(op.OpcodeIndex())
        opname = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
        ins = [int(i) for i in op.InputsAsNumpy()]
        outs = [int(i) for i in op.OutputsAsNumpy()]
        data = [str(i) for i in ins if i >= 0 and b.has(str(i))]
        if not data:  # constants only (e.g. DEQUANTIZE of a weight): never a layer
            continue
        node = tname(outs[0])
        where = f"TFLite op {k} ({node!r}, {opname})"
        if opname not in SUPPORTED:
            raise SpecError(f"{where}: not supported by the importer; it maps {SUPPORTED}")
        try:
            _map_op(tflite, b, op, opname, node, where, ins, outs, data, dims)
        except SpecError:
            raise
        except Exception as err:  # a malformed op table
            raise SpecError(f"{where}: cannot read its options ({err})") from None
    return b.build()


def _map_op(tflite: Any, b: GraphBuilder, op: Any, opname: str, node: str, where: str,
            ins: list[int], outs: list[int], data: list[str], dims: Any) -> None:
    x, out = data[0], str(outs[0])
    out_shape = to_hwc(dims(outs[0]), f"{where} output")
    same = "same"

    def padding(opts: Any) -> str:
        return same if opts.Padding() == tflite.Padding.SAME else "valid"

    def fused(opts: Any) -> str | None:
        code = opts.FusedActivationFunction()
        if code not in FUSED:
            raise SpecError(f"{where}: fused activation function {code} is not mapped")
        return FUSED[code]

    if opname in PASS_THROUGH:
        b.alias(out, x)
    elif opname in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        o = _options(tflite, op, "Conv2DOptions" if opname == "CONV_2D"
                     else "DepthwiseConv2DOptions")
        w = dims(ins[1])  # CONV_2D [Cout, kh, kw, Cin/g]; depthwise [1, kh, kw, Cout]
        cin = b.shape(x)[2]
        if opname == "CONV_2D":
            if cin % w[3]:
                raise SpecError(f"{where}: filter depth {w[3]} does not divide the {cin} "
                                "input channels")
            groups = cin // w[3]
        else:
            groups = cin
        b.add(node, out, [x], out_shape, op="conv2d", kernel_size=(w[1], w[2]),
              stride=(o.StrideH(), o.StrideW()), padding=padding(o),
              dilation=(o.DilationHFactor(), o.DilationWFactor()), groups=groups,
              use_bias=len(ins) > 2 and ins[2] >= 0, activation=fused(o))
    elif opname == "TRANSPOSE_CONV":
        o = _options(tflite, op, "TransposeConvOptions")
        w = dims(ins[1])  # [Cout, kh, kw, Cin]
        x = str(ins[2])
        b.add(node, out, [x], out_shape, op="conv2d_transpose", kernel_size=(w[1], w[2]),
              stride=(o.StrideH(), o.StrideW()), padding=padding(o),
              use_bias=len(ins) > 3 and ins[3] >= 0)
    elif opname in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        o = _options(tflite, op, "Pool2DOptions")
        b.add(node, out, [x], out_shape, op="pool",
              pool_type="avg" if opname == "AVERAGE_POOL_2D" else "max",
              kernel_size=(o.FilterHeight(), o.FilterWidth()),
              stride=(o.StrideH(), o.StrideW()), padding=padding(o))
        _fused_standalone(b, node, out, out_shape, fused(o))
    elif opname == "MEAN":
        h, w, c = b.shape(x)
        if out_shape != (1, 1, c):
            raise SpecError(f"{where}: only a mean over height and width (global average "
                            "pool) is mapped")
        b.add(node, out, [x], out_shape, op="pool", pool_type="avg", kernel_size=(h, w),
              padding="valid", global_pool=True)
    elif opname in ("ADD", "MUL"):
        if len(data) != len(ins):
            raise SpecError(f"{where}: an operand is a constant; the description has no "
                            "constant tensors")
        o = _options(tflite, op, "AddOptions" if opname == "ADD" else "MulOptions")
        b.add(node, out, data, out_shape, op=opname.lower(), activation=fused(o))
    elif opname == "CONCATENATION":
        o = _options(tflite, op, "ConcatenationOptions")
        axis = hwc_axis(o.Axis(), len(dims(ins[0])))
        if axis is None:
            raise SpecError(f"{where}.axis: {o.Axis()} concatenates along the batch")
        b.add(node, out, data, out_shape, op="concat", axis=axis)
        _fused_standalone(b, node, out, out_shape, fused(o))
    elif opname == "FULLY_CONNECTED":
        o = _options(tflite, op, "FullyConnectedOptions")
        use_bias = len(ins) > 2 and ins[2] >= 0
        kind = "fully_connected" if b.shape(x)[:2] == (1, 1) else "conv2d"
        b.add(node, out, [x], out_shape, op=kind, use_bias=use_bias, activation=fused(o))
    elif opname in ("RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR"):
        b.add(node, out, [x], out_shape, op="resize",
              mode="bilinear" if opname == "RESIZE_BILINEAR" else "nearest")
    elif opname == "SOFTMAX":
        b.add(node, out, [x], out_shape, op="softmax")
    elif opname == "RESHAPE":
        if out_shape == b.shape(x):
            b.alias(out, x)
        else:
            b.add(node, out, [x], out_shape,
                  op="flatten" if out_shape[:2] == (1, 1) else "reshape")
    else:  # standalone activation
        b.add(node, out, [x], out_shape, op="activation", activation=ACTIVATION_OPS[opname])


def _fused_standalone(b: GraphBuilder, node: str, out: str, shape: Shape,
                      activation: str | None) -> None:
    """A fused activation on an op that has no activation field: a standalone layer."""
    if activation is not None:
        b.add(f"{node}/{activation}", out, [out], shape, op="activation", activation=activation)
