"""Export a trained standalone model as a TFLite flatbuffer: float or full-integer int8.

    tunas-jax export --workdir TRAIN_WORKDIR --out model.tflite [--int8]

What an Edge TPU runs is a full-integer TFLite model (int8 weights and
activations, int8 input and output, only TFLITE_BUILTINS_INT8 ops), which
its compiler then maps onto the chip. `export_tflite` restores the newest
checkpoint of a `tunas-jax train` workdir (the weights `evaluate` scores),
rebuilds the network op by op in TensorFlow from the architecture's one
lowering (`search_spaces.graph.lower`) and converts it with
`tf.lite.TFLiteConverter`:

- every conv node becomes one conv with its batch norm folded in (eval mode:
  the running mean and variance), `w' = w * g / sqrt(var + eps)`,
  `b' = beta - mean * g / sqrt(var + eps)`, and its ReLU, which the converter
  fuses into CONV_2D / DEPTHWISE_CONV_2D; depthwise nodes (groups = Cin =
  Cout) are DEPTHWISE_CONV_2D; other group convs are one CONV_2D whose
  filter depth is Cin / groups, or, with `group_conv_as_slices`, a SLICE of
  each group's input channels, a full CONV_2D per group and a CONCATENATION
  (the lowering for compilers without native group conv);
- `add` nodes are ADD; the classification head is MEAN over height and width
  followed by FULLY_CONNECTED.

The model's input is the image as the model sees it: [1, H, W, C] float,
resized and normalized by the dataset's eval preprocessing (the
representative dataset and `eval_top1` use that preprocessing too). An
int8 model quantizes that input with the scale and zero point stored in the
file (`input_quantization` in the summary); its logits come out int8 with
their own scale and zero point (`run_tflite` undoes both).

Why a rebuild and not jax2tf: with the pinned JAX, jax2tf only serializes
natively (its graph mode, `native_serialization=False`, is deprecated), so a
converted model is one XlaCallModule of StableHLO that the TFLite converter
must legalize back into TFLite ops. That legalization decides which ops the
Edge TPU compiler sees, the standalone model's CPU conv forms (group convs
split per group, depthwise convs as k*k shifted multiply-adds, see
`supernet.layers`) would be traced as such, and batch norm would not be
folded. Writing each node as the TFLite op it should become keeps the
exported graph exactly the network description's layers, and
`group_conv_as_slices` needs that control anyway.

TensorFlow is the optional extra `export`; nothing else imports it.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

import supernet
from search_spaces import LayerGraph, Node, atomic_write, lower
from supernet.layers import ConvBN
from tasks import Classification
from tunas_jax.errors import UsageError
from tunas_jax.importers.graph import optional_import

DEFAULT_CALIBRATION_EXAMPLES = 256
# Images the export runs through both the Flax and the TFLite model to report their gap.
CHECK_EXAMPLES = 32


def _tensorflow() -> Any:
    # TensorFlow's C++ start-up logging (CPU feature notes, delegate creation) would bury
    # the command's own output; warnings and errors still show.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return optional_import("tensorflow", "export", "tunas-jax export (TFLite)")


# ---- the network as folded layers ---------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class FoldedConv:
    """A conv node with its batch norm folded in: y = act(conv(x, kernel) + bias)."""

    node: Node
    kernel: np.ndarray  # [k, k, Cin / groups, Cout] (HWIO, grouped), float32
    bias: np.ndarray  # [Cout], float32


@dataclasses.dataclass(frozen=True)
class ExportNetwork:
    """Everything the TFLite graph is built from: the lowering, its folded convs, the head."""

    graph: LayerGraph
    convs: dict[str, FoldedConv]  # by node name
    logits_kernel: np.ndarray  # [features, num_classes]
    logits_bias: np.ndarray  # [num_classes]
    input_shape: tuple[int, int, int]  # H, W, C


def fold_batch_norm(module: ConvBN) -> tuple[np.ndarray, np.ndarray]:
    """(kernel, bias) of `module`'s conv with its batch norm's running statistics folded in."""
    bn = module.bn
    # float64 so that folding adds no rounding of its own to the float32 weights.
    scale = np.asarray(bn.scale[...], np.float64) / np.sqrt(
        np.asarray(bn.var[...], np.float64) + bn.epsilon)
    kernel = np.asarray(module.kernel[...], np.float64) * scale
    bias = np.asarray(bn.bias[...], np.float64) - np.asarray(bn.mean[...], np.float64) * scale
    return kernel.astype(np.float32), bias.astype(np.float32)


def export_network(model: supernet.StandaloneModel, spec: Any, image_size: int
                   ) -> ExportNetwork:
    """The folded layers of a standalone model of `spec` (its task must be classification)."""
    if not isinstance(model.task, Classification):
        raise UsageError(f"config.task: {model.task.name!r}; export writes the classification "
                         "head (global average pool + dense) only")
    graph = lower(spec, model.input_channels)
    modules = dict(supernet.layer_modules(model))
    convs = {}
    for node in graph.nodes:
        if node.op == "conv2d":
            convs[node.name] = FoldedConv(node, *fold_batch_norm(modules[node.name]))
        elif node.op != "add":
            raise UsageError(f"layer {node.name}: op {node.op!r} has no TFLite export")
    dense = model.task_head.logits
    return ExportNetwork(graph, convs, np.asarray(dense.kernel[...], np.float32),
                         np.asarray(dense.bias[...], np.float32),
                         (image_size, image_size, model.input_channels))


# ---- TensorFlow graph and conversion -----------------------------------------------------
def _tf_conv(tf: Any, x: Any, conv: FoldedConv, group_conv_as_slices: bool) -> Any:
    node = conv.node
    strides = [1, node.stride, node.stride, 1]
    relu = node.activation == "relu"

    def finish(y: Any, bias: np.ndarray) -> Any:
        y = tf.nn.bias_add(y, tf.constant(bias))
        return tf.nn.relu(y) if relu else y

    if node.depthwise:
        # TF's depthwise filter is [k, k, C, multiplier]; ours [k, k, 1, C].
        return finish(tf.nn.depthwise_conv2d(x, tf.constant(conv.kernel.transpose(0, 1, 3, 2)),
                                             strides, "SAME"), conv.bias)
    if node.groups > 1 and group_conv_as_slices:
        cin, cout = node.cin // node.groups, node.cout // node.groups
        parts = []
        for g in range(node.groups):
            xg = tf.slice(x, [0, 0, 0, g * cin], [-1, -1, -1, cin])
            out = slice(g * cout, (g + 1) * cout)
            # Bias and ReLU per group: the converter fuses them into each CONV_2D.
            parts.append(finish(tf.nn.conv2d(xg, tf.constant(conv.kernel[..., out]), strides,
                                             "SAME"), conv.bias[out]))
        return tf.concat(parts, axis=-1)
    # A filter of depth Cin / groups: TF (and TFLite's CONV_2D) run it as a group conv.
    return finish(tf.nn.conv2d(x, tf.constant(conv.kernel), strides, "SAME"), conv.bias)


def tf_function(network: ExportNetwork, group_conv_as_slices: bool = False) -> Any:
    """(tf.Module, its concrete function of a [1, H, W, C] float image -> logits)."""
    tf = _tensorflow()
    graph = network.graph

    def forward(x: Any) -> Any:
        values = {"input": x}
        for node in graph.nodes:
            inputs = [values[i] for i in node.inputs]
            with tf.name_scope(node.name):
                if node.op == "add":
                    out = inputs[0]
                    for y in inputs[1:]:
                        out = tf.add(out, y)
                else:
                    out = _tf_conv(tf, inputs[0], network.convs[node.name],
                                   group_conv_as_slices)
            values[node.name] = out
        with tf.name_scope("pool"):
            pooled = tf.reduce_mean(values[graph.output], axis=[1, 2])
        with tf.name_scope("logits"):
            return tf.matmul(pooled, tf.constant(network.logits_kernel)) + \
                tf.constant(network.logits_bias)

    spec = tf.TensorSpec([1, *network.input_shape], tf.float32, name="image")
    module = tf.Module()
    module.forward = tf.function(forward, input_signature=[spec], autograph=False)
    return module, module.forward.get_concrete_function()


def convert(network: ExportNetwork, *, int8: bool = False,
            representative: Callable[[], Iterable[np.ndarray]] | None = None,
            group_conv_as_slices: bool = False) -> bytes:
    """The .tflite flatbuffer of `network`: float32, or full-integer int8 (int8 input and
    output, TFLITE_BUILTINS_INT8 only) calibrated on `representative()`'s [H, W, C] images."""
    tf = _tensorflow()
    module, fn = tf_function(network, group_conv_as_slices)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn], module)
    if int8:
        if representative is None:
            raise ValueError("int8 conversion needs a representative dataset")

        def samples() -> Iterator[list[np.ndarray]]:
            for image in representative():
                yield [np.asarray(image, np.float32)[None]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = samples
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


# ---- running a .tflite model -----------------------------------------------------------
def _interpreter(tflite: bytes | str | os.PathLike) -> Any:
    tf = _tensorflow()
    with warnings.catch_warnings():
        # TF 2.21 warns that tf.lite.Interpreter moves to ai_edge_litert; it still runs here,
        # and the export extra is TensorFlow only.
        warnings.simplefilter("ignore", UserWarning)
        if isinstance(tflite, bytes):
            return tf.lite.Interpreter(model_content=tflite)
        return tf.lite.Interpreter(model_path=os.fspath(tflite))


def run_tflite(tflite: bytes | str | os.PathLike, images: np.ndarray) -> np.ndarray:
    """Float logits [N, classes] of a .tflite classifier (bytes or path) on [N, H, W, C]
    float images; an int8 model's input is quantized and its output dequantized with the
    scales stored in the file."""
    interpreter = _interpreter(tflite)
    # One image per invoke, at the batch of 1 the file declares: resizing the batch is
    # not safe for every op (a SLICE's size operand is fixed at conversion; a resized
    # batch made the interpreter corrupt its heap).
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    images = np.asarray(images, np.float32)
    if tuple(inp["shape"]) != (1, *images.shape[1:]):
        raise UsageError(f"images of shape {images.shape[1:]}: the model takes "
                         f"{tuple(inp['shape'][1:])}")
    x: np.ndarray = images
    if inp["dtype"] == np.int8:
        scale, zero = inp["quantization"]
        x = np.clip(np.round(images / scale) + zero, -128, 127).astype(np.int8)
    outputs = []
    for image in x:
        interpreter.set_tensor(inp["index"], image[None])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(out["index"])[0])
    y = np.stack(outputs)
    if out["dtype"] == np.int8:
        scale, zero = out["quantization"]
        return (y.astype(np.float32) - zero) * scale
    return y.astype(np.float32)


def io_quantization(tflite: bytes | str | os.PathLike) -> dict[str, Any]:
    """dtype and (scale, zero point) of the model's input and output."""
    interpreter = _interpreter(tflite)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    return {name: {"dtype": np.dtype(d["dtype"]).name,
                   "scale": float(d["quantization"][0]),
                   "zero_point": int(d["quantization"][1])}
            for name, d in (("input", inp), ("output", out))}


# ---- data ----------------------------------------------------------------------------
def representative_images(config: Any, num: int, seed: int = 0) -> np.ndarray:
    """`num` images of the training split (a seeded random subset), preprocessed as for
    evaluation: the inputs the int8 calibration sees. [num, H, W, C] float32."""
    from tunas_jax.data import make_preprocess, sources

    ds = config.dataset
    source = sources.load_source(ds, ds.train_split, "train_split")
    preprocess = make_preprocess(ds, source)
    picks = np.random.default_rng(seed).permutation(len(source))[:num]
    return np.stack([preprocess.eval_example(source[int(i)])["image"] for i in sorted(picks)])


def eval_top1(predict: Callable[[np.ndarray], np.ndarray], config: Any,
              batch_size: int = 128) -> dict[str, Any]:
    """Top-1 of `predict` ([N, H, W, C] images -> [N, classes] logits) on the config's eval
    split, with its eval preprocessing."""
    from tunas_jax.data import create_eval_data

    data = create_eval_data(config.dataset, batch_size=batch_size, num_threads=1)
    correct = count = 0
    for batch in data:
        mask = np.asarray(batch["mask"])
        logits = predict(np.asarray(batch["image"])[mask])
        correct += int(np.sum(np.argmax(logits, -1) == np.asarray(batch["label"])[mask]))
        count += int(mask.sum())
    return {"top1": correct / max(count, 1), "num_examples": count,
            "eval_split": config.dataset.eval_split}


def flax_logits(model: supernet.StandaloneModel) -> Callable[[np.ndarray], np.ndarray]:
    """`predict` of an eval-mode standalone model (jitted), for `eval_top1`."""
    from flax import nnx

    apply = nnx.jit(lambda m, x: m(x)[0])
    return lambda images: np.asarray(apply(model, images))


# ---- the command's function --------------------------------------------------------------
def export_tflite(workdir: str | os.PathLike, out: str | os.PathLike, *, int8: bool = False,
                  group_conv_as_slices: bool = False,
                  calibration_examples: int = DEFAULT_CALIBRATION_EXAMPLES,
                  evaluate: bool = False) -> dict[str, Any]:
    """Write the newest checkpoint of a `tunas-jax train` workdir to `out` as .tflite.

    Returns a summary: the file and its size, the int8 input/output
    quantization, and `max_abs_logit_diff` between the Flax model and the
    written file on CHECK_EXAMPLES training images (float: rounding only;
    int8: the quantization error); with `evaluate`, the written model's and
    the Flax model's top-1 on the eval split (`tflite_eval`, `flax_eval`).
    """
    from tunas_jax import train

    _tensorflow()  # before the restore: a missing extra fails fast
    if calibration_examples < 1:
        raise UsageError(f"--calibration-examples {calibration_examples}: must be >= 1")
    trained = train.load_trained_model(workdir)
    config = trained.config
    network = export_network(trained.model, trained.architecture.spec,
                             int(config.dataset.image_size))
    images = representative_images(config, max(calibration_examples, CHECK_EXAMPLES))
    flatbuffer = convert(network, int8=int8, representative=lambda: images[:calibration_examples],
                         group_conv_as_slices=group_conv_as_slices)
    with atomic_write(out, "wb", ".tflite") as f:
        f.write(flatbuffer)
    check = images[:CHECK_EXAMPLES]
    flax_predict = flax_logits(trained.model)
    reference, exported = flax_predict(check), run_tflite(flatbuffer, check)
    summary: dict[str, Any] = {
        "out": os.fspath(out), "bytes": len(flatbuffer), "int8": int8,
        "group_conv_as_slices": group_conv_as_slices, "step": trained.step,
        "weights": trained.weights, "input_shape": list(network.input_shape),
        "num_classes": int(network.logits_bias.shape[0]),
        "calibration_examples": min(calibration_examples, len(images)) if int8 else 0,
        "quantization": io_quantization(flatbuffer),
        "check_examples": len(check),
        "max_abs_logit_diff": float(np.max(np.abs(reference - exported))),
        "top1_agreement": float(np.mean(np.argmax(reference, -1)
                                        == np.argmax(exported, -1))),
    }
    if evaluate:
        summary["tflite_eval"] = eval_top1(lambda x: run_tflite(flatbuffer, x), config)
        summary["flax_eval"] = eval_top1(flax_predict, config)
    return summary
