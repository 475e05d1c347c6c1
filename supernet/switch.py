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
from jax import lax

from supernet import ops

Params = Any
LayerFn = Callable[[Params, jax.Array], jax.Array]


def _identity(params: Params, z: jax.Array) -> jax.Array:
    del params
    return z


@dataclasses.dataclass(frozen=True)
class Branch:
    """One configuration: `post(params, conv(params, x))`, both at the branch's own width."""

    conv: LayerFn
    post: LayerFn = _identity


def switch_layer(index: jax.Array, branches: Sequence[Branch], width: int, params: Params,
                 x: jax.Array) -> jax.Array:
    """Branch `index` of `branches` on `x`, zero-padded on the channel axis to `width`.

    Every branch receives the whole `params` pytree; its gradient is zero
    for the leaves the taken branch does not read.
    """

    def forward(branch: Branch, keep_conv_output: bool):
        def run(params: Params, x: jax.Array):
            z = branch.conv(params, x)
            y = ops.pad_channels(branch.post(params, z), width)
            return (y, ops.pad_channels(z, width)) if keep_conv_output else y
        return run

    def backward(branch: Branch):
        def run(params: Params, x: jax.Array, z: jax.Array, g: jax.Array):
            # Neither primal output is used (only their widths): XLA drops them.
            z_out, conv_vjp = jax.vjp(branch.conv, params, x)
            y, post_vjp = jax.vjp(branch.post, params, z[..., :z_out.shape[-1]])
            d_params_post, dz = post_vjp(g[..., :y.shape[-1]])
            d_params_conv, dx = conv_vjp(dz)
            return jax.tree.map(lambda a, b: a + b, d_params_post, d_params_conv), dx
        return run

    # The index is an argument (not a closure) so that custom_vjp sees every tracer.
    @jax.custom_vjp
    def layer(index: jax.Array, params: Params, x: jax.Array) -> jax.Array:
        return lax.switch(index, [forward(b, False) for b in branches], params, x)

    def layer_fwd(index: jax.Array, params: Params, x: jax.Array):
        y, z = lax.switch(index, [forward(b, True) for b in branches], params, x)
        return y, (index, params, x, z)

    def layer_bwd(residuals, g: jax.Array):
        index, params, x, z = residuals
        d_params, dx = lax.switch(index, [backward(b) for b in branches], params, x, z, g)
        return None, d_params, dx

    layer.defvjp(layer_fwd, layer_bwd)
    return layer(index, params, x)
