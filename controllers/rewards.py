"""Hardware-aware rewards of TuNAS: quality Q traded against cost T near a target T0.

With Q the validation accuracy in [0, 1], T the latency in ms and T0 the
target latency in ms:

- `abs` (TuNAS's default): Q + beta * |T / T0 - 1|. With beta < 0 (default
  -0.10) every millisecond away from the target, above or below, costs reward,
  so the search lands on T0 without the ~7 trial searches MnasNet rewards need.
- `mnas` (MnasNet soft): Q * (T / T0) ** beta.
- `mnas_hard` (MnasNet hard): Q * min((T / T0) ** beta, 1): no bonus for being
  faster than the target.

The functions are plain jnp arithmetic, broadcast over batches and usable
inside `jax.jit`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from search_spaces import SpecError

DEFAULT_REWARD = "abs"
DEFAULT_BETA = -0.10

RewardFn = Callable[[Any, Any, Any, Any], jax.Array]


def abs_reward(quality: Any, latency_ms: Any, target_latency_ms: Any,
               beta: Any = DEFAULT_BETA) -> jax.Array:
    """Q + beta * |T / T0 - 1|."""
    ratio = jnp.asarray(latency_ms, jnp.float32) / target_latency_ms
    return jnp.asarray(quality, jnp.float32) + beta * jnp.abs(ratio - 1.0)


def mnas_reward(quality: Any, latency_ms: Any, target_latency_ms: Any,
                beta: Any = DEFAULT_BETA) -> jax.Array:
    """Q * (T / T0) ** beta."""
    ratio = jnp.asarray(latency_ms, jnp.float32) / target_latency_ms
    return jnp.asarray(quality, jnp.float32) * jnp.power(ratio, beta)


def mnas_hard_reward(quality: Any, latency_ms: Any, target_latency_ms: Any,
                     beta: Any = DEFAULT_BETA) -> jax.Array:
    """Q * min((T / T0) ** beta, 1)."""
    ratio = jnp.asarray(latency_ms, jnp.float32) / target_latency_ms
    return jnp.asarray(quality, jnp.float32) * jnp.minimum(jnp.power(ratio, beta), 1.0)


REWARDS: dict[str, RewardFn] = {
    "abs": abs_reward,
    "mnas": mnas_reward,
    "mnas_hard": mnas_hard_reward,
}


def get_reward_fn(name: str) -> RewardFn:
    """The reward function `(quality, latency_ms, target_latency_ms, beta) -> reward`."""
    if name not in REWARDS:
        raise SpecError(
            f"reward: {name!r} is not a reward function; choose one of {sorted(REWARDS)}"
        )
    return REWARDS[name]


def check_target_latency_ms(target_latency_ms: float) -> float:
    """A positive, finite target latency (SpecError naming the field otherwise)."""
    try:
        value = float(target_latency_ms)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise SpecError(
            f"target_latency_ms: {target_latency_ms!r} must be a positive number of milliseconds"
        )
    return value


def make_reward_fn(name: str = DEFAULT_REWARD, *, target_latency_ms: float,
                   beta: float = DEFAULT_BETA) -> Callable[[Any, Any], jax.Array]:
    """`(quality, latency_ms) -> reward` with the config's reward, target and beta bound.

    Validates `reward`, `target_latency_ms` (> 0) and `beta` (finite) once, in Python.
    """
    fn = get_reward_fn(name)
    target = check_target_latency_ms(target_latency_ms)
    if not math.isfinite(float(beta)):
        raise SpecError(f"beta: {beta!r} must be a finite number (TuNAS default -0.10)")
    beta = float(beta)

    def reward(quality: Any, latency_ms: Any) -> jax.Array:
        return fn(quality, latency_ms, target, beta)

    return reward
