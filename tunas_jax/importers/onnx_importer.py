"""Import an ONNX model file as a network description (needs the optional `onnx` extra).

Reads the graph with `onnx.load(..., load_external_data=False)`: weights'
shapes come from the initializers' `dims`, never their data, so a model
whose weights live in an external file imports without it. Activation
shapes come from `onnx.shape_inference` after the input is fixed to batch 1
(and to `--input-shape` when given). NCHW tensors become [H, W, C]; a 2-D
[1, C] tensor is [1, 1, C] and a 3-D [1, T, C] one [1, T, C].

Mapped ops: Conv (group, pads, auto_pad, strides, dilations),
ConvTranspose, BatchNormalization, Relu / Clip / Sigmoid / HardSigmoid /
HardSwish / LeakyRelu / Tanh, MaxPool / AveragePool / GlobalAveragePool /
GlobalMaxPool, Add / Mul, Concat, Gemm / MatMul, Flatten / Reshape, Resize,
Softmax; Identity, Dropout, QuantizeLinear and DequantizeLinear pass their
input through; nodes computing only on constants (shape arithmetic,
dequantized weights) are folded away. Anything else is refused with the
node's name and op type.
"""

from __future__ import annotations

import os
from typing import Any

from search_spaces.errors import SpecError
from search_spaces.network import Shape
from tunas_jax.importers.graph import GraphBuilder, hwc_axis, optional_import
from tunas_jax.importers.graph import to_hwc as graph_to_hwc

PASS_THROUGH = ("Identity", "Dropout", "QuantizeLinear", "DequantizeLinear")
ACTIVATIONS = {"Relu": "relu", "Sigmoid": "sigmoid", "HardSigmoid": "hard_sigmoid",
               "HardSwish": "hard_swish", "LeakyRelu": "leaky_relu", "Tanh": "tanh"}
SUPPORTED = ("Conv", "ConvTranspose", "BatchNormalization", *ACTIVATIONS, "Clip", "MaxPool",
             "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Add", "Mul", "Concat",
             "Gemm", "MatMul", "Flatten", "Reshape", "Resize", "Softmax", *PASS_THROUGH)


def to_hwc(dims: list[int], where: str) -> Shape:
    """An NCHW (or lower-rank) ONNX shape as [H, W, C]."""
    return graph_to_hwc(dims, where, channels_first=True, hint="; pass --input-shape H,W,C")


def import_onnx(path: str | os.PathLike, input_shape: Shape | None = None,
                name: str | None = None) -> Any:
    """The network description of the ONNX model at `path`."""
    onnx = optional_import("onnx", "onnx", "importing ONNX")
    from onnx import helper, numpy_helper, shape_inference

    try:
        model = onnx.load(os.fspath(path), load_external_data=False)
    except Exception as err:  # onnx raises DecodeError, OSError, ...
        raise SpecError(f"ONNX model {path}: cannot read ({err})") from None
    graph = model.graph
    constants = {t.name: list(t.dims) for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in constants]
    if len(inputs) != 1:
        raise SpecError(f"ONNX model {path}: {len(inputs)} graph inputs "
                        f"({[i.name for i in inputs]}); the description has one input image")
    _fix_input(inputs[0], input_shape, path)
    try:
        model = shape_inference.infer_shapes(model)
    except Exception as err:
        raise SpecError(f"ONNX model {path}: shape inference failed ({err})") from None
    graph = model.graph
    known: dict[str, list[int]] = {}
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        dims = [d.dim_value if d.HasField("dim_value") else -1
                for d in vi.type.tensor_type.shape.dim]
        known[vi.name] = dims
    values = {t.name: t for t in graph.initializer}

    b = GraphBuilder(name or graph.name or os.path.basename(os.fspath(path)), "ONNX")
    b.set_input(inputs[0].name, to_hwc(known[inputs[0].name], f"ONNX input {inputs[0].name!r}"))
    for i, node in enumerate(graph.node):
        node_name = node.name or f"{node.op_type.lower()}_{i}"
        where = f"ONNX node {node_name!r} (op type {node.op_type})"
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Constant":
            for out in node.output:
                constants[out] = list(attrs["value"].dims) if "value" in attrs else []
                if "value" in attrs:
                    values[out] = attrs["value"]
            continue
        data = [t for t in node.input if t and b.has(t)]
        if not data or node.op_type == "Shape":  # constant arithmetic: never a layer
            for out in node.output:
                constants[out] = known.get(out, [])
            continue
        if node.op_type not in SUPPORTED:
            raise SpecError(f"{where}: not supported by the importer; it maps {SUPPORTED}")
        out = node.output[0]

        def out_shape(out: str = out, where: str = where) -> Shape:
            return to_hwc(known.get(out, []), f"{where} output {out!r}")

        def weight(k: int, where: str = where, node: Any = node) -> list[int]:
            t = node.input[k]
            if constants.get(t):
                return constants[t]
            if t in known and all(d > 0 for d in known[t]):
                return known[t]
            raise SpecError(f"{where}: the shape of weight input {t!r} is unknown")

        _map_node(b, node, node_name, where, attrs, data, out, out_shape, weight, known,
                  values, numpy_helper)
    return b.build()


def _fix_input(graph_input: Any, input_shape: Shape | None, path: Any) -> None:
    """Batch 1, and --input-shape when given, written into the graph input."""
    dims = graph_input.type.tensor_type.shape.dim
    if input_shape is not None:
        if len(dims) != 4:
            raise SpecError(f"ONNX model {path}: --input-shape needs a 4-D NCHW input; "
                            f"{graph_input.name!r} has rank {len(dims)}")
        h, w, c = input_shape
        for d, v in zip(dims, (1, c, h, w), strict=True):
            d.dim_value = v
    elif dims:
        dims[0].dim_value = 1


def _pads(attrs: dict, kernel: tuple[int, int], where: str) -> str | tuple[int, int, int, int]:
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        return "same"
    if auto == "VALID":
        return "valid"
    if auto != "NOTSET":
        raise SpecError(f"{where}.auto_pad: {auto!r} is not an ONNX value")
    p = list(attrs.get("pads", [0, 0, 0, 0]))
    if len(p) != 4:
        raise SpecError(f"{where}.pads: {p}; only 2-D convolutions and pools are mapped")
    top, left, bottom, right = p
    return "valid" if not any(p) else (top, bottom, left, right)


def _pair(attrs: dict, key: str, default: int = 1) -> tuple[int, int]:
    v = list(attrs.get(key, [default, default]))
    return (v[0], v[1])


def _map_node(b: GraphBuilder, node: Any, name: str, where: str, attrs: dict, data: list[str],
              out: str, out_shape: Any, weight: Any, known: dict, values: dict,
              numpy_helper: Any) -> None:
    op = node.op_type
    x = node.input[0]
    if op in PASS_THROUGH:
        b.alias(out, x)
    elif op in ("Conv", "ConvTranspose"):
        w = weight(1)
        if len(w) != 4:
            raise SpecError(f"{where}: weight shape {w}; only 2-D convolutions are mapped")
        kernel = (w[2], w[3])
        fields: dict[str, Any] = dict(
            kernel_size=kernel, stride=_pair(attrs, "strides"),
            dilation=_pair(attrs, "dilations"), padding=_pads(attrs, kernel, where),
            groups=int(attrs.get("group", 1)), use_bias=len(node.input) > 2 and bool(node.input[2]))
        if op == "ConvTranspose":
            fields["output_padding"] = _pair(attrs, "output_padding", 0)
        b.add(name, out, [x], out_shape(),
              op="conv2d" if op == "Conv" else "conv2d_transpose", **fields)
    elif op == "BatchNormalization":
        b.add(name, out, [x], out_shape(), op="batch_norm")
    elif op in ACTIVATIONS or op == "Clip":
        act = ACTIVATIONS.get(op) or _clip_kind(node, attrs, values, numpy_helper)
        b.add(name, out, [x], out_shape(), op="activation", activation=act)
    elif op in ("MaxPool", "AveragePool"):
        kernel = _pair(attrs, "kernel_shape")
        b.add(name, out, [x], out_shape(), op="pool", pool_type="max" if op == "MaxPool" else "avg",
              kernel_size=kernel, stride=_pair(attrs, "strides"),
              padding=_pads(attrs, kernel, where))
    elif op in ("GlobalAveragePool", "GlobalMaxPool"):
        h, w, _ = b.shape(x)
        b.add(name, out, [x], out_shape(), op="pool", kernel_size=(h, w), padding="valid",
              pool_type="avg" if op == "GlobalAveragePool" else "max", global_pool=True)
    elif op in ("Add", "Mul"):
        if len(data) < len([t for t in node.input if t]):
            raise SpecError(f"{where}: an operand is a constant; the description has no "
                            "constant tensors (fold it into the producer's bias or scale)")
        b.add(name, out, data, out_shape(), op=op.lower())
    elif op == "Concat":
        rank = len(known.get(x, [])) or 4
        axis = hwc_axis(int(attrs["axis"]), rank, channels_first=True)
        if axis is None:
            raise SpecError(f"{where}.axis: {attrs['axis']} concatenates along the batch")
        b.add(name, out, data, out_shape(), op="concat", axis=axis)
    elif op in ("Gemm", "MatMul"):
        _map_matmul(b, node, name, where, attrs, data, out, out_shape, weight)
    elif op in ("Flatten", "Reshape"):
        shape = out_shape()
        if shape == b.shape(x):
            b.alias(out, x)  # same [H, W, C]: no data moves
        else:
            b.add(name, out, [x], shape,
                  op="flatten" if shape[:2] == (1, 1) else "reshape")
    elif op == "Resize":
        mode = attrs.get("mode", b"nearest")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if mode not in ("nearest", "linear"):
            raise SpecError(f"{where}.mode: {mode!r}; the importer maps 'nearest' and 'linear'")
        b.add(name, out, [x], out_shape(), op="resize",
              mode="bilinear" if mode == "linear" else "nearest")
    elif op == "Softmax":
        rank = len(known.get(x, [])) or 2
        axis = hwc_axis(int(attrs.get("axis", -1)), rank, channels_first=True)
        if axis is None:
            raise SpecError(f"{where}.axis: {attrs.get('axis')} is the batch axis")
        b.add(name, out, [x], out_shape(), op="softmax", axis=axis)


def _clip_kind(node: Any, attrs: dict, values: dict, numpy_helper: Any) -> str:
    """relu6 for Clip(0, 6), relu for Clip(0, inf), else clip."""
    bounds = []
    for k, key in ((1, "min"), (2, "max")):
        if key in attrs:
            bounds.append(float(attrs[key]))
        elif len(node.input) > k and node.input[k] in values:
            try:
                bounds.append(float(numpy_helper.to_array(values[node.input[k]])))
            except (TypeError, ValueError):
                bounds.append(None)
        else:
            bounds.append(None)
    if bounds == [0.0, 6.0]:
        return "relu6"
    if bounds[0] == 0.0 and bounds[1] is None:
        return "relu"
    return "clip"


def _map_matmul(b: GraphBuilder, node: Any, name: str, where: str, attrs: dict,
                data: list[str], out: str, out_shape: Any, weight: Any) -> None:
    x = node.input[0]
    if len(data) == 2:  # two activations: attention scores, scores x values
        if node.op_type == "Gemm" and attrs.get("transA"):
            raise SpecError(f"{where}.transA: a transposed first operand is not mapped")
        b.add(name, out, data, out_shape(), op="matmul",
              transpose_b=bool(attrs.get("transB", 0)))
        return
    if data != [x]:
        raise SpecError(f"{where}: the activation must be the first operand")
    w = weight(1)
    if len(w) != 2 or attrs.get("transA"):
        raise SpecError(f"{where}: weight shape {w}; the importer maps a 2-D weight on "
                        "the right")
    use_bias = node.op_type == "Gemm" and len(node.input) > 2 and bool(node.input[2])
    shape = out_shape()
    if b.shape(x)[:2] == (1, 1):
        b.add(name, out, [x], shape, op="fully_connected", use_bias=use_bias)
    else:  # a dense layer applied at every position / token is a 1x1 convolution
        b.add(name, out, [x], shape, op="conv2d", use_bias=use_bias)
