"""The convolutions the supernet runs inside `lax.switch` branches.

Measured (`benchmarks/bench_conv_in_switch.py`, BENCHMARKS.md): on XLA:CPU a
convolution in a `lax.switch` branch is fast only as a forward conv in the
canonical NHWC/HWIO layout; the convs autodiff makes
for the gradients ran 15-50x slower there than at top level, and grouped
convolutions via `feature_group_count` are slow anywhere on CPU. `group_conv`
writes its VJP out in canonical forward convs: one per group on CPU up to
`CPU_SPLIT_MAX_GROUPS` groups, else one native grouped conv (what GPU/TPU
run fast, and what keeps 72-group programs compilable); depthwise convs are
sums of shifted, scaled views (cheap to differentiate as they are).
Kernels use the standard grouped HWIO layout `[k, k, Cin / groups, Cout]`, so
the standalone model takes them as they are.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

BN_EPSILON = 1e-3  # published MobileNetEdgeTPU batch-norm epsilon
_DN = ("NHWC", "HWIO", "NHWC")  # the layout XLA:CPU's fast conv kernels take as they are


def _same_padding(size: int, kernel_size: int, stride: int) -> tuple[int, tuple[int, int]]:
    """Output size and (low, high) padding of TF/lax 'SAME' along one spatial axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel_size - size, 0)
    return out, (total // 2, total - total // 2)


def _taps(x: jax.Array, kernel_size: int, stride: int) -> list[jax.Array]:
    """The k*k shifted (strided) views of x under 'SAME' padding, row-major over (kh, kw)."""
    (out_h, pad_h), (out_w, pad_w) = (_same_padding(x.shape[1], kernel_size, stride),
                                      _same_padding(x.shape[2], kernel_size, stride))
    x = jnp.pad(x, ((0, 0), pad_h, pad_w, (0, 0)))
    return [x[:, i:i + (out_h - 1) * stride + 1:stride, j:j + (out_w - 1) * stride + 1:stride, :]
            for i in range(kernel_size) for j in range(kernel_size)]


def conv1x1(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """x [N, H, W, Cin] @ kernel [Cin, Cout] (a 1x1 conv is a matmul)."""
    return jnp.einsum("nhwc,co->nhwo", x, kernel)


def _per_group(conv, lhs: jax.Array, rhs: jax.Array, groups: int) -> jax.Array:
    """`conv(lhs_i, rhs_i)` per group (both split on their last axis) + concat.

    XLA:CPU runs `feature_group_count` slowly (`benchmarks/bench_group_conv.py`); g full
    convs don't.
    """
    if groups == 1:
        return conv(lhs, rhs)
    return jnp.concatenate([conv(a, b) for a, b in zip(
        jnp.split(lhs, groups, axis=-1), jnp.split(rhs, groups, axis=-1), strict=True)], axis=-1)


def split_conv(x: jax.Array, kernel: jax.Array, stride: int, groups: int) -> jax.Array:
    """'SAME' group conv as one full `lax.conv` per group + concat (autodiff'd as is: the
    standalone model's CPU form at top level; `group_conv` is its VJP-written twin)."""
    return _per_group(lambda a, b: lax.conv_general_dilated(
        a, b, (stride, stride), "SAME", dimension_numbers=_DN), x, kernel, groups)


# On XLA:CPU a conv with `feature_group_count` runs slowly (`benchmarks/bench_group_conv.py`),
# so up to this many groups a group conv runs as one conv per group. Beyond it the
# per-group convs make the program too large to compile (mobilenet_edgetpu_v2 has up to
# 72 groups and ~80 group-conv configurations per block), and on GPU/TPU the native
# grouped conv is the fast one.
CPU_SPLIT_MAX_GROUPS = 16


def _native_groups(groups: int) -> bool:
    """Whether a group conv runs as one native grouped op (else one conv per group)."""
    return groups == 1 or jax.default_backend() != "cpu" or groups > CPU_SPLIT_MAX_GROUPS


def _grouped_conv(lhs: jax.Array, rhs: jax.Array, groups: int, **conv_args) -> jax.Array:
    """A grouped NHWC/HWIO conv, native or per group (`_native_groups`)."""
    if _native_groups(groups):
        return lax.conv_general_dilated(lhs, rhs, dimension_numbers=_DN,
                                         feature_group_count=groups, **conv_args)
    return _per_group(lambda a, b: lax.conv_general_dilated(
        a, b, dimension_numbers=_DN, **conv_args), lhs, rhs, groups)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def group_conv(x: jax.Array, kernel: jax.Array, stride: int, groups: int) -> jax.Array:
    """'SAME' kxk conv of NHWC `x` with an HWIO kernel [k, k, Cin / groups, Cout], its VJP
    written out so that every convolution is a forward NHWC/HWIO one.

    Why: on XLA:CPU a convolution in a `lax.switch` branch is fast only in
    that canonical layout. At top level XLA rewrites the convs autodiff makes
    for the gradients into it; inside a branch it doesn't, and they ran
    15-50x slower (`benchmarks/bench_conv_in_switch.py`). So:
    - forward: the grouped conv (`_grouped_conv`);
    - input gradient: the cotangent, dilated by the stride, convolved with
      each group's kernel flipped and transposed;
    - kernel gradient: x transposed to [Cin, H, W, N] (channels as batch,
      the batch as features) convolved with the cotangent transposed to
      [H', W', N, Cout] as a kernel dilated by the stride: out [Cin, k, k, Cout]
      (per group: a conv with `batch_group_count`, or one conv per group).
    """
    return _grouped_conv(x, kernel, groups, window_strides=(stride, stride), padding="SAME")


def _group_conv_fwd(x: jax.Array, kernel: jax.Array, stride: int, groups: int):
    return group_conv(x, kernel, stride, groups), (x, kernel)


def _group_conv_bwd(stride: int, groups: int, residuals: tuple, g: jax.Array):
    x, kernel = residuals
    k, _, cin_g, cout = kernel.shape
    cout_g = cout // groups
    # Along each spatial axis y[o] = sum_t x[s*o + t - lo] w[t] (lo: the low 'SAME' pad), so
    # dx[i] = sum_u g_dilated[i + lo - (k-1) + u] w[k-1-u] and dw[t] = sum_o x[s*o + t - lo] g[o].
    dx_padding, dw_padding = [], []
    for size in x.shape[1:3]:
        out, (lo, _) = _same_padding(size, k, stride)
        dx_padding.append((k - 1 - lo, size - 1 + lo - stride * (out - 1)))
        # 'SAME' may pad less than the window reads when the stride skips the last rows.
        dw_padding.append((lo, (out - 1) * stride + k - size - lo))
    flipped = jnp.flip(kernel, (0, 1)).reshape(k, k, cin_g, groups, cout_g)
    transposed = flipped.transpose(0, 1, 4, 3, 2).reshape(k, k, cout_g, groups * cin_g)
    dx = _grouped_conv(g, transposed, groups, window_strides=(1, 1), padding=dx_padding,
                       lhs_dilation=(stride, stride))
    dw_args = dict(window_strides=(1, 1), padding=dw_padding, rhs_dilation=(stride, stride),
                   dimension_numbers=_DN)

    def kernel_grad(xi: jax.Array, gi: jax.Array) -> jax.Array:  # -> [Cin/g, k, k, Cout/g]
        return lax.conv_general_dilated(xi.transpose(3, 1, 2, 0), gi.transpose(1, 2, 0, 3),
                                        **dw_args)
    if _native_groups(groups):
        dw = lax.conv_general_dilated(x.transpose(3, 1, 2, 0), g.transpose(1, 2, 0, 3),
                                      batch_group_count=groups, **dw_args)
    else:
        dw = _per_group(kernel_grad, x, g, groups)
    return dx, dw.transpose(1, 2, 0, 3)


group_conv.defvjp(_group_conv_fwd, _group_conv_bwd)


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
