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

Several hardware targets at once (multi-hardware search, Chu et al. 2020):
each device's latency is normalized by its own target, r_i = T_i / T0_i, and
the ratios are combined into one (`combine_latency_ratios`): `average` (mean,
the average case), `geomean` (geometric mean) or `worst` (max, the worst
case). The reward is then the same function of the combined ratio r with
T = r, T0 = 1: for `abs`, Q + beta * |r - 1|. One target is the special case
r = T / T0 (every metric of one ratio is that ratio).
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


def _geomean(ratios: jax.Array, axis: int) -> jax.Array:
    return jnp.exp(jnp.mean(jnp.log(ratios), axis=axis))


MULTI_HARDWARE_METRICS: dict[str, Callable[[jax.Array, int], jax.Array]] = {
    "average": lambda ratios, axis: jnp.mean(ratios, axis=axis),
    "geomean": _geomean,
    "worst": lambda ratios, axis: jnp.max(ratios, axis=axis),
}
DEFAULT_MULTI_HARDWARE_METRIC = "average"


def check_multi_hardware_metric(name: str) -> str:
    """`name` if it is a multi-hardware metric (SpecError naming the field otherwise)."""
    if name not in MULTI_HARDWARE_METRICS:
        raise SpecError(f"multi_hardware_metric: {name!r} is unknown; choose one of "
                        f"{sorted(MULTI_HARDWARE_METRICS)}")
    return name


def combine_latency_ratios(ratios: Any, metric: str = DEFAULT_MULTI_HARDWARE_METRIC,
                           axis: int = -1) -> jax.Array:
    """The per-target latency ratios T_i / T0_i ([..., targets] on `axis`) combined into
    one: mean (`average`), geometric mean (`geomean`) or max (`worst`)."""
    fn = MULTI_HARDWARE_METRICS[check_multi_hardware_metric(metric)]
    return fn(jnp.asarray(ratios, jnp.float32), axis)


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
