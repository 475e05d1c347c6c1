"""Builders of the reference networks (well-known classifiers) the calibration needs.

Each builder returns a validated `search_spaces.network.NetworkDescription`
(one layer per conv / pool / add / mul, shapes checked). The Coral benchmark
models are also written as JSON beside `cost_models/networks/make_networks.py`
(which calls these); the mobile targets' calibration
(`cost_models.calibration.reference_network`) builds width and resolution
variants directly: MobileNetV1/V2 at any width multiplier and input size,
MobileNetV3-Large/Small (hard-swish, squeeze-excite) and the TuNAS
multi-hardware models with their post-pool 1x1 conv.
"""

from __future__ import annotations

import dataclasses
import math

from search_spaces.blocks import round_filters
from search_spaces.network import Layer, NetworkDescription


class Net:
    """Appends layers while tracking the current tensor's name and shape."""

    def __init__(self, name: str, input_shape: tuple[int, int, int]) -> None:
        self.name, self.input_shape = name, input_shape
        self.layers: list[Layer] = []
        self.current, self.shape = "input", input_shape

    def conv(self, name: str, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1,
             activation: str | None = "relu", bias: bool = False, bn: bool = True,
             padding: str = "same", source: str | None = None) -> str:
        src = source or self.current
        shape = self.shape if source is None else self._shape_of(source)
        h, w, _ = shape
        if padding == "same":
            hw = (math.ceil(h / stride), math.ceil(w / stride))
        else:
            hw = ((h - kernel) // stride + 1, (w - kernel) // stride + 1)
        return self._add(Layer(name, "conv2d", (src,), shape, (*hw, cout), kernel, stride,
                               padding, groups, bias, bn, activation))

    def pool(self, name: str, kernel: int, stride: int, pool_type: str = "max",
             padding: str = "same") -> str:
        h, w, c = self.shape
        if padding == "same":
            hw = (math.ceil(h / stride), math.ceil(w / stride))
        else:
            hw = ((h - kernel) // stride + 1, (w - kernel) // stride + 1)
        return self._add(Layer(name, "pool", (self.current,), self.shape, (*hw, c), kernel,
                               stride, padding, pool_type=pool_type))

    def global_pool(self, name: str = "pool") -> str:
        h, _, c = self.shape
        return self._add(Layer(name, "pool", (self.current,), self.shape, (1, 1, c), h, 1,
                               "valid", pool_type="avg", global_pool=True))

    def fc(self, name: str, cout: int, activation: str | None = None) -> str:
        return self._add(Layer(name, "fully_connected", (self.current,), self.shape,
                               (1, 1, cout), use_bias=True, activation=activation))

    def add(self, name: str, other: str) -> str:
        return self._add(Layer(name, "add", (self.current, other), self.shape, self.shape))

    def mul(self, name: str, other: str) -> str:
        """`other` scaled by the current [1, 1, C] tensor (squeeze-excite)."""
        shape = self._shape_of(other)
        return self._add(Layer(name, "mul", (other, self.current), shape, shape))

    def _shape_of(self, name: str) -> tuple[int, int, int]:
        if name == "input":
            return self.input_shape
        return next(layer.output_shape for layer in self.layers if layer.name == name)

    def _add(self, layer: Layer) -> str:
        self.layers.append(layer)
        self.current, self.shape = layer.name, layer.output_shape
        return layer.name

    def build(self) -> NetworkDescription:
        return NetworkDescription(self.name, self.input_shape, tuple(self.layers)).validate()


def mobilenet_v1(width: float = 1.0, size: int = 224, classes: int = 1001) -> NetworkDescription:
    """TF-slim MobileNetV1: 3x3/2 stem then 13 depthwise-separable layers."""
    net = Net(f"mobilenet_v1_w{width} ({size} px, {classes} classes; TF-slim layer list)",
              (size, size, 3))
    net.conv("stem", round_filters(32 * width), 3, 2)
    plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [
        (1024, 2), (1024, 1)]
    for i, (filters, stride) in enumerate(plan):
        c = net.shape[2]
        net.conv(f"layer{i + 1}.depthwise", c, 3, stride, groups=c)
        net.conv(f"layer{i + 1}.pointwise", round_filters(filters * width))
    net.global_pool()
    net.fc("logits", classes)
    return net.build()


def mobilenet_v2(width: float = 1.0, size: int = 224, classes: int = 1001
                 ) -> NetworkDescription:
    """MobileNetV2 (Sandler et al. table 2), ReLU6 written as relu.

    Width multiplier as TF-slim: every filter count scaled and rounded to 8,
    except the 1280 head for widths below 1 (the paper keeps the last conv).
    """
    net = Net(f"mobilenet_v2_w{width} ({size} px, {classes} classes; paper table 2)",
              (size, size, 3))
    net.conv("stem", round_filters(32 * width), 3, 2)
    table = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
             (6, 160, 3, 2), (6, 320, 1, 1)]
    b = 0
    for t, c, n, s in table:
        c = round_filters(c * width)
        for r in range(n):
            stride, cin, block_input = (s if r == 0 else 1), net.shape[2], net.current
            p = f"blocks.{b}."
            if t != 1:
                net.conv(p + "expand", cin * t)
            net.conv(p + "depthwise", cin * t, 3, stride, groups=cin * t)
            net.conv(p + "project", c, activation=None)
            if stride == 1 and cin == c:
                net.add(p + "add", block_input)
            b += 1
    net.conv("head", round_filters(1280 * max(width, 1.0)))
    net.global_pool()
    net.fc("logits", classes)
    return net.build()


# MobileNetV3 (Howard et al. 2019, tables 1-2): (kernel, expanded, out, SE, activation,
# stride) per bottleneck; RE = relu, HS = hard_swish.
V3_LARGE = ((3, 16, 16, False, "relu", 1), (3, 64, 24, False, "relu", 2),
            (3, 72, 24, False, "relu", 1), (5, 72, 40, True, "relu", 2),
            (5, 120, 40, True, "relu", 1), (5, 120, 40, True, "relu", 1),
            (3, 240, 80, False, "hard_swish", 2), (3, 200, 80, False, "hard_swish", 1),
            (3, 184, 80, False, "hard_swish", 1), (3, 184, 80, False, "hard_swish", 1),
            (3, 480, 112, True, "hard_swish", 1), (3, 672, 112, True, "hard_swish", 1),
            (5, 672, 160, True, "hard_swish", 2), (5, 960, 160, True, "hard_swish", 1),
            (5, 960, 160, True, "hard_swish", 1))
V3_SMALL = ((3, 16, 16, True, "relu", 2), (3, 72, 24, False, "relu", 2),
            (3, 88, 24, False, "relu", 1), (5, 96, 40, True, "hard_swish", 2),
            (5, 240, 40, True, "hard_swish", 1), (5, 240, 40, True, "hard_swish", 1),
            (5, 120, 48, True, "hard_swish", 1), (5, 144, 48, True, "hard_swish", 1),
            (5, 288, 96, True, "hard_swish", 2), (5, 576, 96, True, "hard_swish", 1),
            (5, 576, 96, True, "hard_swish", 1))


def mobilenet_v3(variant: str = "large", width: float = 1.0, size: int = 224,
                 classes: int = 1001) -> NetworkDescription:
    """MobileNetV3-Large or -Small: hard-swish and squeeze-excite as separate layers.

    Squeeze-excite: global pool -> 1x1 to round(expanded / 4, 8) with relu ->
    1x1 back with hard-sigmoid -> `mul` into the depthwise output (TF-slim).
    Width scales every filter count (round to 8); the last 1x1 (1280 / 1024,
    after the pool, with bias and no batch norm) only for widths above 1.
    """
    rows, last, pre_logits = ((V3_LARGE, 960, 1280) if variant == "large"
                              else (V3_SMALL, 576, 1024))
    net = Net(f"mobilenet_v3_{variant}_w{width} ({size} px, {classes} classes; paper tables "
              "1-2)", (size, size, 3))
    net.conv("stem", round_filters(16 * width), 3, 2, activation="hard_swish")
    for b, (k, expanded, out, se, act, stride) in enumerate(rows):
        cin, block_input, p = net.shape[2], net.current, f"blocks.{b}."
        expanded, out = round_filters(expanded * width), round_filters(out * width)
        if expanded != cin:
            net.conv(p + "expand", expanded, activation=act)
        dw = net.conv(p + "depthwise", expanded, k, stride, groups=expanded, activation=act)
        if se:
            net.global_pool(p + "se_pool")
            net.conv(p + "se_reduce", round_filters(expanded / 4), bias=True, bn=False)
            net.conv(p + "se_expand", expanded, bias=True, bn=False, activation="hard_sigmoid")
            net.mul(p + "se_scale", dw)
        net.conv(p + "project", out, activation=None)
        if stride == 1 and cin == out:
            net.add(p + "add", block_input)
    net.conv("head", round_filters(last * width), activation="hard_swish")
    net.global_pool()
    net.conv("pre_logits", round_filters(pre_logits * max(width, 1.0)), bias=True, bn=False,
             activation="hard_swish")
    net.fc("logits", classes)
    return net.build()


def with_pre_logits(net: NetworkDescription, filters: int, name: str) -> NetworkDescription:
    """`net` with a 1x1 conv (bias, relu, no batch norm) between its global pool and
    logits: the MobileNetV3-style head of the TuNAS multi-hardware models, which a
    `ModelSpec` head (conv -> pool -> logits) cannot hold."""
    *body, logits = net.layers
    pool = body[-1]
    if logits.op != "fully_connected" or pool.op != "pool" or not pool.global_pool:
        raise ValueError(f"{net.name}: expected ... -> global pool -> fully_connected")
    extra = Layer("pre_logits", "conv2d", (pool.name,), pool.output_shape, (1, 1, filters),
                  1, 1, "same", 1, True, False, "relu")
    logits = dataclasses.replace(logits, inputs=(extra.name,), input_shape=extra.output_shape)
    return NetworkDescription(name, net.input_shape, (*body, extra, logits)).validate()


def efficientnet_edgetpu_s(size: int = 224, classes: int = 1001) -> NetworkDescription:
    """EfficientNet-EdgeTPU-S: the `efficientnet_edgetpu_builder` block list, width/depth 1.0.

    blocks_args: r1_k3_s11_e4_i24_o24_c1_noskip, r2_k3_s22_e8_i24_o32_c1,
    r4_k3_s22_e8_i32_o48_c1, r5_k5_s22_e8_i48_o96, r4_k5_s11_e8_i96_o144,
    r2_k5_s22_e8_i144_o192; stem 32, head 1280, ReLU, no squeeze-excite.
    `c1` = fused conv (kxk expansion conv carrying the stride, then 1x1
    projection); otherwise 1x1 expand, kxk depthwise, 1x1 project. The
    expanded width is the block arg's input_filters * e (so the first block
    expands the 32-channel stem output to 24 * 4 = 96).
    """
    net = Net(f"efficientnet_edgetpu_s ({size} px, {classes} classes; "
              "efficientnet_edgetpu_builder block list)", (size, size, 3))
    net.conv("stem", 32, 3, 2)
    args = [(1, 3, 1, 4, 24, 24, True, False), (2, 3, 2, 8, 24, 32, True, True),
            (4, 3, 2, 8, 32, 48, True, True), (5, 5, 2, 8, 48, 96, False, True),
            (4, 5, 1, 8, 96, 144, False, True), (2, 5, 2, 8, 144, 192, False, True)]
    b = 0
    for repeats, k, s, e, cin_arg, cout, fused, id_skip in args:
        for r in range(repeats):
            stride = s if r == 0 else 1
            expanded = (cin_arg if r == 0 else cout) * e
            cin, block_input, p = net.shape[2], net.current, f"blocks.{b}."
            if fused:
                net.conv(p + "fused", expanded, k, stride)
            else:
                net.conv(p + "expand", expanded)
                net.conv(p + "depthwise", expanded, k, stride, groups=expanded)
            net.conv(p + "project", cout, activation=None)
            if id_skip and stride == 1 and cin == cout:
                net.add(p + "add", block_input)
            b += 1
    net.conv("head", 1280)
    net.global_pool()
    net.fc("logits", classes)
    return net.build()


def resnet50_v1(size: int = 299, classes: int = 1000) -> NetworkDescription:
    """ResNet-50 v1 (Keras layout: stride in the first 1x1 of a stage, projection shortcuts)."""
    net = Net(f"resnet50_v1 ({size} px, {classes} classes; Keras ResNet50 layout)",
              (size, size, 3))
    net.conv("stem", 64, 7, 2)
    net.pool("stem_pool", 3, 2)
    for stage, (width, blocks) in enumerate([(64, 3), (128, 4), (256, 6), (512, 3)]):
        for b in range(blocks):
            stride = 2 if b == 0 and stage > 0 else 1
            block_input, p = net.current, f"stage{stage + 1}.block{b + 1}."
            if b == 0:
                shortcut = net.conv(p + "shortcut", 4 * width, 1, stride, activation=None,
                                    source=block_input)
                net.current, net.shape = block_input, net._shape_of(block_input)
            else:
                shortcut = block_input
            net.conv(p + "conv1", width, 1, stride)
            net.conv(p + "conv2", width, 3)
            net.conv(p + "conv3", 4 * width, 1, activation=None)
            net.add(p + "add", shortcut)
    net.global_pool()
    net.fc("logits", classes)
    return net.build()


def vgg16(size: int = 224, classes: int = 1000) -> NetworkDescription:
    """VGG-16 (configuration D): conv biases, no batch norm; fc6 as a 7x7 valid conv."""
    net = Net(f"vgg16 ({size} px, {classes} classes; configuration D, fc6 as 7x7 conv)",
              (size, size, 3))
    for stage, (filters, convs) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]):
        for c in range(convs):
            net.conv(f"conv{stage + 1}_{c + 1}", filters, 3, bias=True, bn=False)
        net.pool(f"pool{stage + 1}", 2, 2)
    # Flatten + dense over 7x7x512 has exactly the weights and MACs of a 7x7 valid conv.
    net.conv("fc6", 4096, net.shape[0], padding="valid", bias=True, bn=False)
    net.fc("fc7", 4096, activation="relu")
    net.fc("fc8", classes)
    return net.build()


NETWORKS = {
    "mobilenet_v1": mobilenet_v1,
    "mobilenet_v2": mobilenet_v2,
    "efficientnet_edgetpu_s": efficientnet_edgetpu_s,
    "resnet50_v1": resnet50_v1,
    "vgg16": vgg16,
}

