"""One supernet layer as a `lax.switch` over its configurations, differentiated cheaply.

Each configuration is a `Branch`: a convolution (`conv`, linear in its input)
followed by a cheap elementwise tail (`post`: batch norm, activation). The
switch runs the sampled branch at its own width and zero-pads the result to
the carried (largest) width, so a step's cost follows the sampled child.

Why a hand-written VJP (`switch_layer`): differentiating a plain `lax.switch`
makes every branch emit the union of all branches' residuals, zero-filled
for the others; with dozens of branches per layer that dominated the step.
Here the forward switch saves only the layer input and the conv output (one
tensor at the carried width), and the backward switch runs the taken
branch's VJP from them: `post`'s from the saved conv output, `conv`'s from
the input alone (a conv's VJP needs no forward result, so nothing is
recomputed).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from supernet import ops

Params = Any
LayerFn = Callable[[Params, jax.Array], jax.Array]
# conv(params, x, config): `config` is the layer's traced configuration (int32), read by
# masked branches only (`supernet.plan`).
ConvFn = Callable[[Params, jax.Array, jax.Array], jax.Array]


def _identity(params: Params, z: jax.Array) -> jax.Array:
    del params
    return z


@dataclasses.dataclass(frozen=True)
class Branch:
    """One configuration: `post(params, conv(params, x, config))`, both at the branch's
    own width."""

    conv: ConvFn
    post: LayerFn = _identity


def switch_layer(index: jax.Array, branches: Sequence[Branch], width: int, params: Params,
                 x: jax.Array, config: jax.Array | None = None,
                 mask_width: jax.Array | None = None) -> jax.Array:
    """Branch `index` of `branches` on `x`, zero-padded on the channel axis to `width`.

    Every branch receives the whole `params` pytree; its gradient is zero
    for the leaves the taken branch does not read. `config` (int32, not
    differentiated) goes to every branch's conv. With `mask_width` (traced),
    output channels from it on are zeroed: a masked branch computes more
    channels than the child has, and the mask, outside the switch, also
    zeroes their cotangents, so their weights get no gradient.
    """
    if config is None:
        config = jnp.zeros((0,), jnp.int32)

    def forward(branch: Branch, keep_conv_output: bool):
        def run(config: jax.Array, params: Params, x: jax.Array):
            z = branch.conv(params, x, config)
            y = ops.pad_channels(branch.post(params, z), width)
            return (y, ops.pad_channels(z, width)) if keep_conv_output else y
        return run

    def backward(branch: Branch):
        def run(config: jax.Array, params: Params, x: jax.Array, z: jax.Array, g: jax.Array):
            # Neither primal output is used (only their widths): XLA drops them.
            z_out, conv_vjp = jax.vjp(lambda p, x: branch.conv(p, x, config), params, x)
            y, post_vjp = jax.vjp(branch.post, params, z[..., :z_out.shape[-1]])
            d_params_post, dz = post_vjp(g[..., :y.shape[-1]])
            d_params_conv, dx = conv_vjp(dz)
            return jax.tree.map(lambda a, b: a + b, d_params_post, d_params_conv), dx
        return run

    # The index is an argument (not a closure) so that custom_vjp sees every tracer.
    @jax.custom_vjp
    def layer(index: jax.Array, config: jax.Array, params: Params, x: jax.Array) -> jax.Array:
        return lax.switch(index, [forward(b, False) for b in branches], config, params, x)

    def layer_fwd(index: jax.Array, config: jax.Array, params: Params, x: jax.Array):
        y, z = lax.switch(index, [forward(b, True) for b in branches], config, params, x)
        return y, (index, config, params, x, z)

    def layer_bwd(residuals, g: jax.Array):
        index, config, params, x, z = residuals
        d_params, dx = lax.switch(index, [backward(b) for b in branches], config, params, x,
                                  z, g)
        return None, None, d_params, dx

    layer.defvjp(layer_fwd, layer_bwd)
    y = layer(index, config, params, x)
    if mask_width is None:
        return y
    return y * (jnp.arange(width) < mask_width).astype(y.dtype)
