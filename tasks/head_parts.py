"""The parametrized layer shared by the segmentation heads (`tasks.deeplab`, `tasks.bifpn`).

A head is a table of `ConvSpec`s (every parametrized layer, by name) and one
forward function that calls `conv(name, x)` for each of them. This module turns
such a table into both forms and into the network description:

- supernet: `init_params` (pytree `{name: {kernel[, conv_bias][, scale, bias]}}`),
  `batch_stat_conv` (the `conv` callback: batch-statistics batch norm, as the
  supernet's backbone), `inherit_params` (kernels that read an endpoint cut to
  the child's width);
- standalone: `HeadConv`, one nnx module per spec;
- description: `conv_layer`, the spec as a `search_spaces.Layer`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from search_spaces import Layer
from tasks import initializers

BN_EPSILON = 1e-3  # the backbone's (published MobileNetEdgeTPU) batch-norm epsilon
BN_MOMENTUM = 0.99
_DIMS = ("NHWC", "HWIO", "NHWC")


@dataclasses.dataclass(frozen=True)
class ConvSpec:
    """One parametrized layer: conv (+ bias) (+ batch norm) (+ activation)."""

    name: str
    cin: int
    cout: int
    kernel_size: int = 1
    dilation: int = 1
    depthwise: bool = False
    batch_norm: bool = True
    activation: str | None = "relu"   # "relu" | "relu6" | None
    use_bias: bool = False
    logits: bool = False              # initialized as a classifier

    @property
    def kernel_shape(self) -> tuple[int, int, int, int]:
        k = self.kernel_size
        return (k, k, 1, self.cin) if self.depthwise else (k, k, self.cin, self.cout)


def conv_op(spec: ConvSpec, x: jax.Array, kernel: jax.Array) -> jax.Array:
    """The conv of one head layer ('same' padding, stride 1)."""
    return jax.lax.conv_general_dilated(
        x, kernel, (1, 1), "SAME", rhs_dilation=(spec.dilation, spec.dilation),
        dimension_numbers=_DIMS, feature_group_count=spec.cin if spec.depthwise else 1)


def activate(spec: ConvSpec, y: jax.Array) -> jax.Array:
    if spec.activation == "relu":
        return jax.nn.relu(y)
    if spec.activation == "relu6":
        return jax.nn.relu6(y)
    return y


def _init(spec: ConvSpec) -> Callable[..., jax.Array]:
    """TuNAS's initializers (`tasks.initializers`, as the backbone's): N(0, 0.01) for
    the classifier, He normal on fan_in for every other conv."""
    return initializers.classifier_init if spec.logits else initializers.conv_init


# ---- supernet form --------------------------------------------------------------------
def init_params(specs: Mapping[str, ConvSpec], key: jax.Array) -> dict[str, dict[str, Any]]:
    """{layer name: {kernel[, conv_bias][, scale, bias]}}: `bias` is the batch norm's
    offset when there is one, else the conv's bias; a conv bias followed by batch norm
    (the BiFPN reference's resampling convs) is `conv_bias`."""
    params = {}
    for spec, k in zip(specs.values(), jax.random.split(key, len(specs)), strict=True):
        p = {"kernel": _init(spec)(k, spec.kernel_shape)}
        if spec.batch_norm:
            p.update(scale=jnp.ones((spec.cout,)), bias=jnp.zeros((spec.cout,)))
            if spec.use_bias:
                p["conv_bias"] = jnp.zeros((spec.cout,))
        elif spec.use_bias:
            p["bias"] = jnp.zeros((spec.cout,))
        params[spec.name] = p
    return params


def batch_stat_conv(specs: Mapping[str, ConvSpec], params: Any
                    ) -> Callable[[str, jax.Array], jax.Array]:
    """The supernet's `conv(name, x)`: batch norm with the batch's statistics."""

    def conv(name: str, x: jax.Array) -> jax.Array:
        spec, p = specs[name], params[name]
        y = conv_op(spec, x, p["kernel"])
        if spec.batch_norm:
            if spec.use_bias:
                y = y + p["conv_bias"]
            mean = jnp.mean(y, axis=(0, 1, 2))
            var = jnp.mean(jnp.square(y - mean), axis=(0, 1, 2))
            y = (y - mean) * jax.lax.rsqrt(var + BN_EPSILON) * p["scale"] + p["bias"]
        elif spec.use_bias:
            y = y + p["bias"]
        return activate(spec, y)

    return conv


def inherit_params(specs: Mapping[str, ConvSpec], params: Any) -> dict[str, dict[str, Any]]:
    """The child's head weights: kernels reading an endpoint cut to the child's width."""
    out = {}
    for spec in specs.values():
        p = dict(params[spec.name])
        k = p["kernel"]  # a no-op except where the layer reads an endpoint
        p["kernel"] = k[..., :spec.cin] if spec.depthwise else k[:, :, :spec.cin]
        out[spec.name] = p
    return out


# ---- standalone form ------------------------------------------------------------------
class HeadConv(nnx.Module):
    """One head layer: conv, then bias and/or batch norm, then the activation."""

    def __init__(self, spec: ConvSpec, *, rngs: nnx.Rngs) -> None:
        self.spec = spec
        init = _init(spec)
        self.kernel = nnx.Param(init(rngs.params(), spec.kernel_shape))
        if spec.use_bias:
            self.bias = nnx.Param(jnp.zeros((spec.cout,)))
        if spec.batch_norm:
            self.bn = nnx.BatchNorm(spec.cout, momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                                    rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = conv_op(self.spec, x, self.kernel[...])
        if self.spec.use_bias:
            y = y + self.bias[...]
        if self.spec.batch_norm:
            y = self.bn(y)
        return activate(self.spec, y)


class SpecHead(nnx.Module):
    """Base of the standalone heads: one `HeadConv` per spec, by name."""

    def _build(self, specs: Mapping[str, ConvSpec], rngs: nnx.Rngs) -> None:
        self.names = tuple(specs)
        for spec in specs.values():
            setattr(self, attr(spec.name), HeadConv(spec, rngs=rngs))

    def named_layers(self):
        for name in self.names:
            yield name, getattr(self, attr(name))

    def conv(self, name: str, x: jax.Array) -> jax.Array:
        return getattr(self, attr(name))(x)


def attr(name: str) -> str:
    return name.replace(".", "_")


# ---- description ----------------------------------------------------------------------
def conv_layer(spec: ConvSpec, source: str, input_shape: tuple[int, int, int]) -> Layer:
    """The description layer of `spec` reading `source` of shape `input_shape`."""
    h, w, _ = input_shape
    return Layer(name=spec.name, op="conv2d", inputs=(source,), input_shape=input_shape,
                 output_shape=(h, w, spec.cout), kernel_size=spec.kernel_size,
                 groups=spec.cin if spec.depthwise else 1, use_bias=spec.use_bias,
                 batch_norm=spec.batch_norm, activation=spec.activation,
                 dilation=spec.dilation)
