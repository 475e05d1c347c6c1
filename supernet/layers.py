"""Conv + batch-norm building blocks shared by the standalone model (and the supernet).

A `ConvBN` is one `conv2d` layer of the network description
(`search_spaces.network`): a bias-free kxk conv with 'same' padding, batch
norm, and an optional ReLU. Its state is deliberately flat so that a
weight-sharing supernet can slice its shared weights into it:

    kernel                 nnx.Param     [k, k, Cin / groups, Cout]  (HWIO, grouped)
    bn.scale, bn.bias      nnx.Param     [Cout]
    bn.mean, bn.var        nnx.BatchStat [Cout]

The grouped layout is the standard one (`feature_group_count`): output
channel o belongs to group o // (Cout / groups) and reads input channels
[g * Cin/groups, (g + 1) * Cin/groups). A group conv kernel is therefore the
block diagonal of a full [k, k, Cin, Cout] kernel, and a depthwise kernel
[k, k, 1, C] its diagonal.

How a conv is computed does not change the parameters. On XLA:CPU
`feature_group_count` convs are slow (`benchmarks/bench_group_conv.py`
measured here, forward+backward: a grouped conv 7-176x slower than one full
conv per group + concat, more so with more groups; a depthwise conv 3-4x
slower than a sum of k*k shifted multiply-adds), so on CPU `conv2d` picks the
form per conv kind: full convs `xla`, group convs `split`, depthwise convs
`shift` (see `CONV_IMPLS`); on other backends `xla` (not measured there yet:
run the benchmark on a GPU).
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax

from supernet import ops
from tasks import initializers

# Published MobileNetEdgeTPU batch norm (Keras momentum 0.99; epsilon 1e-3, the one
# the supernet's batch norm uses too).
BN_MOMENTUM = 0.99
BN_EPSILON = ops.BN_EPSILON

_DIMS = ("NHWC", "HWIO", "NHWC")
ConvImpl = Literal["auto", "xla", "split", "shift"]
# `xla`: lax.conv_general_dilated with feature_group_count; `split`: one full
# conv per group + concat (group convs); `shift`: depthwise conv as a sum over
# the k*k taps of strided input slices times per-channel weights.
CONV_IMPLS = ("auto", "xla", "split", "shift")


def conv_kernel_init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32, *,
                     depthwise: bool = False) -> jax.Array:
    """He normal (fan_in, truncated; `tasks.initializers`) of an HWIO kernel
    [k, k, Cin/groups, Cout]; a `depthwise` kernel [k, k, 1, C] has fan_in k*k.

    Outside tracing the sample is drawn with numpy (seeded from `key`):
    eager jax compiles one sampler per kernel shape, ~0.1 s each, 5 s for a
    MobileNet. Under `jit`/`eval_shape` it is jax's sampler, so the same key
    gives other (identically distributed) values there.
    """
    fan_in = initializers.conv_fan_in(shape[0], shape[2], depthwise=depthwise)
    if isinstance(key, jax.core.Tracer):
        return initializers.he_normal(key, shape, fan_in, dtype)
    seed = np.asarray(jax.random.key_data(key)).ravel().tolist()
    return initializers.he_normal_numpy(seed, shape, fan_in, dtype)


def conv2d(x: jax.Array, kernel: jax.Array, stride: int = 1, groups: int = 1,
           impl: ConvImpl = "auto") -> jax.Array:
    """'same'-padded conv of NHWC `x` with an HWIO kernel [k, k, Cin/groups, Cout]."""
    cin, cout = x.shape[-1], kernel.shape[-1]
    depthwise = groups > 1 and groups == cin == cout
    if impl == "auto":
        # The CPU choice is measured (module docstring). Accelerators run
        # feature_group_count natively (cuDNN grouped convs); unmeasured here.
        if groups == 1 or jax.default_backend() != "cpu":
            impl = "xla"
        else:
            impl = "shift" if depthwise else "split"
    if impl == "xla" or groups == 1:
        return lax.conv_general_dilated(x, kernel, (stride, stride), "SAME",
                                         dimension_numbers=_DIMS, feature_group_count=groups)
    if impl == "shift":
        if not depthwise:
            raise ValueError(f"conv impl 'shift' is for depthwise convs; groups={groups} with "
                             f"{cin} -> {cout} channels is not one")
        return ops.depthwise_conv(x, kernel, stride)
    if impl == "split":
        return ops.split_conv(x, kernel, stride, groups)
    raise ValueError(f"conv impl {impl!r} is unknown; use one of {CONV_IMPLS}")


class BatchNorm(nnx.Module):
    """Batch norm over N, H, W with nnx.BatchNorm's state layout and mode attribute.

    Same leaves as `nnx.BatchNorm` (`scale`, `bias`: nnx.Param; `mean`, `var`:
    nnx.BatchStat), same `use_running_average` attribute (set by
    `model.train()` / `model.eval()` / `nnx.view`), same update rule
    `stat = momentum * stat + (1 - momentum) * batch_stat`. Why not
    nnx.BatchNorm itself: flax 0.12.8 writes its running statistics with
    `var[...] = value`, which under tracing asks the tracer for `.sharding`;
    jax answers with an error message whose origin search scans the whole
    jaxpr, so tracing a train step grows quadratically with depth (about 8 s
    for one MobileNetEdgeTPUv2-sized forward pass). `set_value` skips that.
    """

    def __init__(self, num_features: int, *, momentum: float = BN_MOMENTUM,
                 epsilon: float = BN_EPSILON, use_running_average: bool = False) -> None:
        self.num_features = num_features
        self.momentum = momentum
        self.epsilon = epsilon
        self.use_running_average = use_running_average
        self.scale = nnx.Param(jnp.ones((num_features,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((num_features,), jnp.float32))
        self.mean = nnx.BatchStat(jnp.zeros((num_features,), jnp.float32))
        self.var = nnx.BatchStat(jnp.ones((num_features,), jnp.float32))

    def set_view(self, use_running_average: bool | None = None) -> None:
        """Used by `nnx.view(model, use_running_average=...)`, as nnx.BatchNorm."""
        if use_running_average is not None:
            self.use_running_average = use_running_average

    def __call__(self, x: jax.Array, use_running_average: bool | None = None) -> jax.Array:
        if use_running_average is None:
            use_running_average = self.use_running_average
        if use_running_average:
            mean, var = self.mean[...], self.var[...]
        else:
            axes = tuple(range(x.ndim - 1))
            mean = jnp.mean(x, axis=axes)
            var = jnp.mean(jnp.square(x - mean), axis=axes)
            m = self.momentum
            self.mean.set_value(lax.stop_gradient(m * self.mean[...] + (1 - m) * mean))
            self.var.set_value(lax.stop_gradient(m * self.var[...] + (1 - m) * var))
        inv = lax.rsqrt(var + self.epsilon) * self.scale[...]
        return (x - mean) * inv + self.bias[...]


class ConvBN(nnx.Module):
    """Bias-free kxk conv ('same' padding, optional groups) -> batch norm -> optional ReLU.

    Training mode (batch statistics, running averages updated) is the
    default; `model.eval()` (or `nnx.view(model, use_running_average=True)`)
    switches the batch norm to its running averages.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1,
                 stride: int = 1, groups: int = 1, relu: bool = True, *, rngs: nnx.Rngs,
                 conv_impl: ConvImpl = "auto") -> None:
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups={groups} must divide in_channels={in_channels} and "
                             f"out_channels={out_channels}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.groups = groups
        self.relu = relu
        self.conv_impl = conv_impl
        shape = (kernel_size, kernel_size, in_channels // groups, out_channels)
        depthwise = groups > 1 and groups == in_channels == out_channels
        self.kernel = nnx.Param(conv_kernel_init(rngs.params(), shape, depthwise=depthwise))
        self.bn = BatchNorm(out_channels)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = conv2d(x, self.kernel[...], self.stride, self.groups, self.conv_impl)
        y = self.bn(y)
        return jax.nn.relu(y) if self.relu else y
