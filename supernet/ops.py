"""Convolutions as slices + matmul: the form the supernet runs inside `lax.switch`.

NOTES §5: on XLA:CPU a weight-gradient convolution inside a `lax.switch`
branch ran ~50x slower than at top level, and grouped convolutions via
`feature_group_count` were slow. `conv_general_dilated_patches` avoids the
first but its backward pass measured 10x slower than `lax.conv` here. Shifted
slices + einsum (matmul) avoid both, at top level and inside a switch.
Kernels use the standard grouped HWIO layout `[k, k, Cin / groups, Cout]`, so
the standalone model takes them as they are.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

BN_EPSILON = 1e-3  # published MobileNetEdgeTPU batch-norm epsilon


def _same_pad(x: jax.Array, kernel_size: int, stride: int) -> tuple[jax.Array, int, int]:
    """TF 'same' padding (extra row/column at the end); returns padded x and output size."""
    h, w = x.shape[1:3]
    out_h, out_w = -(-h // stride), -(-w // stride)
    pad_h = max((out_h - 1) * stride + kernel_size - h, 0)
    pad_w = max((out_w - 1) * stride + kernel_size - w, 0)
    x = jnp.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2),
                    (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
    return x, out_h, out_w


def _taps(x: jax.Array, kernel_size: int, stride: int) -> list[jax.Array]:
    """The k*k shifted (strided) views of x, row-major over (kh, kw)."""
    x, out_h, out_w = _same_pad(x, kernel_size, stride)
    return [x[:, i:i + (out_h - 1) * stride + 1:stride, j:j + (out_w - 1) * stride + 1:stride, :]
            for i in range(kernel_size) for j in range(kernel_size)]


def conv1x1(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """x [N, H, W, Cin] @ kernel [Cin, Cout] (a 1x1 conv is a matmul)."""
    return jnp.einsum("nhwc,co->nhwo", x, kernel)


_DN = ("NHWC", "HWIO", "NHWC")


def _split_conv_s1(x: jax.Array, kernel: jax.Array, groups: int) -> jax.Array:
    """Stride-1 'same' conv as one full `lax.conv` per group (+ concat)."""
    def conv(xi: jax.Array, wi: jax.Array) -> jax.Array:
        return lax.conv_general_dilated(xi, wi, (1, 1), "SAME", dimension_numbers=_DN)

    if groups == 1:
        return conv(x, kernel)
    return jnp.concatenate([conv(xi, wi) for xi, wi in zip(
        jnp.split(x, groups, axis=-1), jnp.split(kernel, groups, axis=-1), strict=True)], axis=-1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_s1(x: jax.Array, kernel: jax.Array, groups: int) -> jax.Array:
    """Stride-1 'same' kxk conv (odd k) with `groups` groups, its VJP written out.

    On XLA:CPU inside a `lax.switch` branch, forward `lax.conv`s are fast but
    the convs autodiff makes for the gradients are not: the weight gradient
    (NOTES §5) and, measured here, the input gradient too. So the VJP is
    explicit: the input gradient is the same forward conv of the cotangent
    with each group's kernel flipped and transposed, the weight gradient one
    [Cin/g, Cout/g] matmul per kernel tap and group over shifted views of x.
    benchmarks/bench_conv_in_switch.py has the measurements.
    """
    return _split_conv_s1(x, kernel, groups)


def _conv_s1_fwd(x: jax.Array, kernel: jax.Array, groups: int) -> tuple[jax.Array, tuple]:
    return _split_conv_s1(x, kernel, groups), (x, kernel)


def _conv_s1_bwd(groups: int, residuals: tuple, g: jax.Array) -> tuple[jax.Array, jax.Array]:
    x, kernel = residuals
    k, _, cin_g, cout = kernel.shape
    cout_g = cout // groups
    flipped = jnp.flip(kernel, (0, 1)).reshape(k, k, cin_g, groups, cout_g)
    transposed = flipped.transpose(0, 1, 4, 3, 2).reshape(k, k, cout_g, groups * cin_g)
    dx = _split_conv_s1(g, transposed, groups)
    n, h, w = g.shape[:3]
    g_grouped = g.reshape(n, h, w, groups, cout_g)
    dk = jnp.stack([jnp.einsum("nhwgc,nhwgo->cgo", tap.reshape(n, h, w, groups, cin_g), g_grouped)
                    for tap in _taps(x, k, 1)])
    return dx, dk.reshape(kernel.shape)


conv_s1.defvjp(_conv_s1_fwd, _conv_s1_bwd)


def group_conv(x: jax.Array, kernel: jax.Array, stride: int, groups: int) -> jax.Array:
    """kxk conv with `groups` groups; kernel [k, k, Cin / groups, Cout] (1 = full conv).

    Stride 1 (odd k): `conv_s1`, per-group `lax.conv`s with a written-out VJP.
    Stride 2: im2col by slicing (the backward of a slice is a cheap pad) and
    one einsum with the group as a batch dimension; cheap at the quartered
    output size, and on XLA:CPU 5x faster than `feature_group_count`
    (benchmarks/bench_group_conv.py).
    """
    if stride == 1 and kernel.shape[0] % 2 == 1:
        return conv_s1(x, kernel, groups)
    return im2col_conv(x, kernel, stride, groups)


def im2col_conv(x: jax.Array, kernel: jax.Array, stride: int, groups: int) -> jax.Array:
    """Group conv as k*k shifted slices stacked + one einsum (autodiff'd as is)."""
    k, _, cin_g, cout = kernel.shape
    patches = jnp.stack(_taps(x, k, stride), axis=-2)          # [N, H', W', k*k, Cin]
    n, h, w = patches.shape[:3]
    patches = patches.reshape(n, h, w, k * k, groups, cin_g)
    wk = kernel.reshape(k * k, cin_g, groups, cout // groups)
    return jnp.einsum("nhwtgc,tcgo->nhwgo", patches, wk).reshape(n, h, w, cout)


def depthwise_conv(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
    """Depthwise kxk conv as a sum of k*k shifted, scaled views; kernel [k, k, 1, C]."""
    k = kernel.shape[0]
    taps = _taps(x, k, stride)
    out = taps[0] * kernel[0, 0, 0]
    for t in range(1, k * k):
        out = out + taps[t] * kernel[t // k, t % k, 0]
    return out


def batch_norm(x: jax.Array, scale: jax.Array, bias: jax.Array) -> jax.Array:
    """Batch norm with the batch's own statistics (TuNAS: stateless during search)."""
    mean = jnp.mean(x, axis=(0, 1, 2))
    var = jnp.mean(jnp.square(x - mean), axis=(0, 1, 2))
    return (x - mean) * lax.rsqrt(var + BN_EPSILON) * scale + bias


def pad_channels(x: jax.Array, width: int) -> jax.Array:
    """Zero-pad the channel axis to `width` (the supernet's carried max width)."""
    extra = width - x.shape[-1]
    return x if extra == 0 else jnp.pad(x, ((0, 0),) * (x.ndim - 1) + ((0, extra),))
