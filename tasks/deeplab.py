"""The DeepLabv3+ segmentation head, in both forms (supernet pure function, nnx module).

Structure (DeepLabv3+, Chen et al. 2018, as tensorflow/models builds it for the
MobileNetEdgeTPUv2 segmentation models: `SpatialPyramidPooling` with depthwise
separable branches, then `SegmentationHead` with `deeplabv3plus` feature fusion):

    aspp input (an endpoint, default `features`)
      aspp.conv0              1x1 conv -> BN -> ReLU                      (A channels)
      aspp.dw{i}, aspp.pw{i}  per atrous rate r_i: 3x3 depthwise, dilation r_i (no BN,
                              as the reference), then 1x1 conv -> BN -> ReLU
      aspp.pool, aspp.pool_conv, aspp.pool_resize
                              global average pool -> 1x1 conv -> BN -> ReLU -> broadcast
      aspp.concat, aspp.project   concat -> 1x1 conv -> BN -> ReLU
    decoder.up                bilinear resize to the low-level endpoint's size
    decoder.low               low-level endpoint (default `stride_4`): 1x1 conv -> BN -> ReLU
    decoder.concat            concat
    decoder.dw{j}, decoder.pw{j}  3x3 depthwise -> BN -> ReLU, 1x1 conv -> BN -> ReLU
    logits                    1x1 conv with bias (num_classes)

The head's output is the logits at the low-level endpoint's resolution; the
task resizes them to the input resolution (exact output stage, and the loss)
or takes their argmax first (approximate output stage): `tasks.segmentation`.

One forward function (`forward`) runs both forms, with a per-layer `conv`
callback: the supernet's reads the pure pytree (`{layer name: {kernel, scale,
bias}}`) and normalizes with batch statistics, as the supernet's backbone
does; the nnx module's calls its sub-modules. So both forms compute the same
function by construction, and `layer_specs` (the table of every parametrized
layer) also gives the network description and the weight cut
(`tasks.head_parts` turns such a table into both forms).

Zero-padded endpoints (the supernet carries each endpoint at its largest
width) are exact here: every layer that reads an endpoint is a 1x1 conv or a
depthwise conv with no BN or bias behind it, so a padded channel stays zero
until a full-width 1x1 kernel multiplies it by zero.

Differences from the reference, on purpose: no dropout (the supernet has
none; the reference's 0.3 after the projection), global pooling in the ASPP
image branch (the reference uses a 256x256 window at 512 px, which is global
at stride 16 and above), ReLU throughout.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from search_spaces import Layer, SpecError
from tasks import head_parts
from tasks.head_parts import ConvSpec


@dataclasses.dataclass(frozen=True)
class DeepLabConfig:
    """The head's settings (the segmentation task's constructor arguments)."""

    num_classes: int
    aspp_channels: int = 32
    low_level_channels: int = 16
    decoder_channels: int = 32
    num_decoder_convs: int = 1
    atrous_rates: tuple[int, ...] = (1, 2, 3)
    aspp_endpoint: str = "features"
    low_level_endpoint: str = "stride_4"

    def __post_init__(self) -> None:
        object.__setattr__(self, "atrous_rates", tuple(int(r) for r in self.atrous_rates))
        for field in ("num_classes", "aspp_channels", "low_level_channels", "decoder_channels"):
            if int(getattr(self, field)) < 1:
                raise SpecError(f"{field}: {getattr(self, field)} must be >= 1")
        if self.num_decoder_convs < 0:
            raise SpecError(f"num_decoder_convs: {self.num_decoder_convs} must be >= 0")
        if any(r < 1 for r in self.atrous_rates):
            raise SpecError(f"atrous_rates: {self.atrous_rates}; every rate must be >= 1")


def layer_specs(cfg: DeepLabConfig, widths: Mapping[str, int]) -> dict[str, ConvSpec]:
    """Every parametrized layer of the head, in network order, for endpoint `widths`."""
    for field in ("aspp_endpoint", "low_level_endpoint"):
        if getattr(cfg, field) not in widths:
            raise SpecError(f"{field}: {getattr(cfg, field)!r} is not an endpoint of this "
                            f"backbone; use one of {sorted(widths)}")
    c, a = widths[cfg.aspp_endpoint], cfg.aspp_channels
    specs = [ConvSpec("aspp.conv0", c, a)]
    for i, rate in enumerate(cfg.atrous_rates, 1):
        specs += [ConvSpec(f"aspp.dw{i}", c, c, 3, rate, depthwise=True, batch_norm=False,
                           activation=None),
                  ConvSpec(f"aspp.pw{i}", c, a)]
    branches = len(cfg.atrous_rates) + 2
    specs += [ConvSpec("aspp.pool_conv", c, a),
              ConvSpec("aspp.project", a * branches, a),
              ConvSpec("decoder.low", widths[cfg.low_level_endpoint], cfg.low_level_channels)]
    width = a + cfg.low_level_channels
    for j in range(cfg.num_decoder_convs):
        specs += [ConvSpec(f"decoder.dw{j}", width, width, 3, depthwise=True),
                  ConvSpec(f"decoder.pw{j}", width, cfg.decoder_channels)]
        width = cfg.decoder_channels
    specs.append(ConvSpec("logits", width, cfg.num_classes, batch_norm=False,
                          activation=None, use_bias=True, logits=True))
    return {s.name: s for s in specs}


def resize_bilinear(x: jax.Array, height: int, width: int) -> jax.Array:
    """NHWC bilinear resize, half-pixel centers (TF2 `tf.image.resize`'s convention)."""
    if x.shape[1:3] == (height, width):
        return x
    return jax.image.resize(x, (x.shape[0], height, width, x.shape[3]), "bilinear",
                            antialias=False)


def forward(cfg: DeepLabConfig, endpoints: Mapping[str, jax.Array],
            conv: Callable[[str, jax.Array], jax.Array]) -> jax.Array:
    """The head's logits [N, h, w, classes] at the low-level endpoint's size; `conv(name,
    x)` runs the parametrized layer `name` (conv, then BN/ReLU/bias as `layer_specs`)."""
    f = endpoints[cfg.aspp_endpoint]
    low = endpoints[cfg.low_level_endpoint]
    branches = [conv("aspp.conv0", f)]
    for i in range(1, len(cfg.atrous_rates) + 1):
        branches.append(conv(f"aspp.pw{i}", conv(f"aspp.dw{i}", f)))
    pooled = conv("aspp.pool_conv", jnp.mean(f, axis=(1, 2), keepdims=True))
    branches.append(jnp.broadcast_to(pooled, (*f.shape[:3], pooled.shape[-1])))
    x = conv("aspp.project", jnp.concatenate(branches, axis=-1))
    x = resize_bilinear(x, *low.shape[1:3])
    x = jnp.concatenate([x, conv("decoder.low", low)], axis=-1)
    for j in range(cfg.num_decoder_convs):
        x = conv(f"decoder.pw{j}", conv(f"decoder.dw{j}", x))
    return conv("logits", x)


# ---- description ----------------------------------------------------------------------
def head_layers(cfg: DeepLabConfig, endpoints: Mapping[str, tuple[str, tuple[int, int, int]]]
                ) -> list[Layer]:
    """The head's network-description layers (logits last), given each endpoint's
    (layer name, [H, W, C])."""
    specs = layer_specs(cfg, {name: shape[2] for name, (_, shape) in endpoints.items()})
    f_name, f_shape = endpoints[cfg.aspp_endpoint]
    l_name, l_shape = endpoints[cfg.low_level_endpoint]
    shapes: dict[str, tuple[int, int, int]] = {f_name: f_shape, l_name: l_shape}
    layers: list[Layer] = []

    def add(layer: Layer) -> str:
        layers.append(layer)
        shapes[layer.name] = layer.output_shape
        return layer.name

    def conv(name: str, source: str) -> str:
        return add(head_parts.conv_layer(specs[name], source, shapes[source]))

    def concat(name: str, sources: list[str]) -> str:
        h, w, _ = shapes[sources[0]]
        return add(Layer(name=name, op="concat", inputs=tuple(sources),
                         input_shape=shapes[sources[0]],
                         output_shape=(h, w, sum(shapes[s][2] for s in sources))))

    h, w, c = f_shape
    branches = [conv("aspp.conv0", f_name)]
    for i in range(1, len(cfg.atrous_rates) + 1):
        branches.append(conv(f"aspp.pw{i}", conv(f"aspp.dw{i}", f_name)))
    add(Layer(name="aspp.pool", op="pool", inputs=(f_name,), input_shape=f_shape,
              output_shape=(1, 1, c), kernel_size=h, padding="valid", pool_type="avg",
              global_pool=True))
    pooled = conv("aspp.pool_conv", "aspp.pool")
    branches.append(add(Layer(name="aspp.pool_resize", op="resize", inputs=(pooled,),
                              input_shape=shapes[pooled],
                              output_shape=(h, w, shapes[pooled][2]), mode="bilinear")))
    x = conv("aspp.project", concat("aspp.concat", branches))
    x = add(Layer(name="decoder.up", op="resize", inputs=(x,), input_shape=shapes[x],
                  output_shape=(l_shape[0], l_shape[1], shapes[x][2]), mode="bilinear"))
    x = concat("decoder.concat", [x, conv("decoder.low", l_name)])
    for j in range(cfg.num_decoder_convs):
        x = conv(f"decoder.pw{j}", conv(f"decoder.dw{j}", x))
    conv("logits", x)
    return layers


# ---- supernet form --------------------------------------------------------------------
def init_params(cfg: DeepLabConfig, key: jax.Array, widths: Mapping[str, int]) -> Any:
    """{layer name: {kernel[, scale, bias]}} for endpoints of (largest) `widths`."""
    return head_parts.init_params(layer_specs(cfg, widths), key)


def apply_params(cfg: DeepLabConfig, params: Any, endpoints: Mapping[str, jax.Array]
                 ) -> jax.Array:
    """The supernet head: batch-statistics batch norm, as the supernet's backbone."""
    specs = layer_specs(cfg, {n: x.shape[-1] for n, x in endpoints.items()})
    return forward(cfg, endpoints, head_parts.batch_stat_conv(specs, params))


def inherit_params(cfg: DeepLabConfig, params: Any, widths: Mapping[str, int]
                   ) -> dict[str, dict[str, Any]]:
    """The child's head weights: kernels reading an endpoint cut to the child's width."""
    return head_parts.inherit_params(layer_specs(cfg, widths), params)


# ---- standalone form ------------------------------------------------------------------
class DeepLabHead(head_parts.SpecHead):
    """The standalone head: `head(endpoints)` -> logits at the low-level endpoint's size."""

    def __init__(self, cfg: DeepLabConfig, widths: Mapping[str, int], *, rngs: nnx.Rngs
                 ) -> None:
        self.cfg = cfg
        self._build(layer_specs(cfg, widths), rngs)

    def __call__(self, endpoints: Mapping[str, jax.Array], rngs: Any = None) -> jax.Array:
        del rngs  # no dropout (module docstring)
        return forward(self.cfg, endpoints, self.conv)
