"""The networks' weight initializers, as TuNAS's (`rematlib/mobile_model_v3.get_model`):
one definition for the backbone convs of the supernet and of the standalone model
(`supernet/`) and for the task heads (`tasks/`).

- Convs: He normal, variance 2 / fan_in, from a normal truncated at +-2 standard
  deviations and rescaled so the truncated distribution has that variance
  (TF's `he_normal`). fan_in = k * k * input channels per group; a depthwise conv's
  fan_in is k * k (TuNAS's `depthwise_he_normal`: TF's own fans would count the
  channels too).
- Classifier: N(0, 0.01), bias zero (TuNAS's `dense_initializer`).

Lives in `tasks` because `supernet` imports `tasks` and not the other way round.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

# Standard deviation of N(0, 1) truncated at +-2: dividing by it restores unit variance.
_TRUNCATED_STD = 0.87962566103423978
CLASSIFIER_STDDEV = 0.01


def conv_fan_in(kernel_size: int, cin_per_group: int, *, depthwise: bool = False) -> int:
    """fan_in of a kxk conv: k*k*cin/groups; k*k for a depthwise conv."""
    return kernel_size * kernel_size * (1 if depthwise else cin_per_group)


def he_normal_stddev(fan_in: int) -> float:
    """The standard deviation He normal aims for: sqrt(2 / fan_in)."""
    return math.sqrt(2.0 / max(1, fan_in))


def he_normal(key: jax.Array, shape: tuple[int, ...], fan_in: int,
              dtype=jnp.float32) -> jax.Array:
    """He normal (truncated at +-2 sd, rescaled) of `shape` with the given fan_in."""
    scale = he_normal_stddev(fan_in) / _TRUNCATED_STD
    return (jax.random.truncated_normal(key, -2.0, 2.0, shape, jnp.float32) * scale
            ).astype(dtype)


def he_normal_numpy(seed: list[int], shape: tuple[int, ...], fan_in: int,
                    dtype=jnp.float32) -> jax.Array:
    """`he_normal`'s distribution drawn with numpy from an integer seed (eager jax
    compiles one sampler per shape; numpy does not)."""
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    sample = rng.standard_normal(size)
    bad = np.abs(sample) > 2
    while bad.any():
        sample[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(sample) > 2
    scale = he_normal_stddev(fan_in) / _TRUNCATED_STD
    return jnp.asarray((sample * scale).reshape(shape), dtype)


def classifier_init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """N(0, 0.01): the classifier's kernel (an nnx/flax `kernel_init`)."""
    return (jax.random.normal(key, shape, jnp.float32) * CLASSIFIER_STDDEV).astype(dtype)


def conv_init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """He normal for an HWIO kernel [k, k, cin/groups, cout] (a depthwise conv's
    [k, k, 1, C] gets fan_in k*k): an nnx/flax `kernel_init`."""
    return he_normal(key, shape, int(np.prod(shape[:-1])), dtype)
