"""Random-search baseline: uniform architectures, rejected until their latency is in a band.

TuNAS compares against random search at matched latency: draw architectures
uniformly (every decision independently, inactive ones included, as the space
counts them; the `random` strategy of `controllers.strategy`), keep those
whose cost lies in [lo_ms, hi_ms]. The cost function
is any Python callable `indices [K, D] -> latency_ms [K]` (a simulator, a
fitted cost model), so this runs on the host in numpy, deterministic per seed.

`sample_uniform` is the jit-safe JAX counterpart without the band, for a
search loop that trains the supernet on uniform samples (a random controller).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from controllers.strategy import RandomStrategy
from search_spaces import SearchSpace, SpecError

CostFn = Callable[[np.ndarray], Any]


def sample_uniform(rng: jax.Array, space: SearchSpace, num: int = 1) -> jax.Array:
    """Int32 [num, D]: each decision uniform over its choices (jit-safe)."""
    num_choices = jnp.asarray(space.num_choices, jnp.int32)
    return jax.random.randint(rng, (num, space.num_decisions), 0, num_choices, dtype=jnp.int32)


def random_search(space: SearchSpace, cost_fn: CostFn, *, num: int, lo_ms: float,
                  hi_ms: float, seed: int = 0, max_tries: int = 100_000,
                  batch_size: int = 256,
                  unique: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """`num` uniform architectures with latency in [lo_ms, hi_ms].

    Returns (indices int32 [num, D], latency_ms float64 [num]) in the order
    found. Draws at most `max_tries` architectures, `batch_size` per cost_fn
    call; the same seed gives the same result. `unique` drops repeats of a
    network: vectors that differ only in inactive decisions count as one.
    Raises SpecError naming the band and the latency range seen if fewer than
    `num` land in the band.
    """
    if num <= 0 or max_tries <= 0 or batch_size <= 0:
        raise SpecError(
            f"random_search: num/max_tries/batch_size = {num}/{max_tries}/{batch_size} "
            "must all be positive"
        )
    if not (math.isfinite(lo_ms) and math.isfinite(hi_ms) and 0 <= lo_ms <= hi_ms):
        raise SpecError(
            f"lo_ms/hi_ms: band [{lo_ms}, {hi_ms}] ms is invalid; use 0 <= lo_ms <= hi_ms"
        )
    # Repeats are dropped below among the in-band ones only, so the strategy proposes all.
    strategy = RandomStrategy(space, seed, unique=False)
    kept: list[np.ndarray] = []
    kept_ms: list[float] = []
    seen: set[bytes] = set()
    low_seen, high_seen = math.inf, -math.inf
    tries = 0
    while tries < max_tries and len(kept) < num:
        n = min(batch_size, max_tries - tries)
        trials = strategy.propose(n)
        batch = np.asarray([t.indices for t in trials], np.int32)
        tries += n
        latency_ms = np.asarray(cost_fn(batch), dtype=np.float64).reshape(-1)
        if latency_ms.shape != (n,):
            raise SpecError(
                f"cost_fn: returned {latency_ms.size} latencies for {n} architectures; "
                "return one latency_ms per row of indices"
            )
        if np.isnan(latency_ms).any():
            raise SpecError("cost_fn: returned NaN latency_ms; fix the cost model")
        for trial, ms in zip(trials, latency_ms, strict=True):
            strategy.observe(trial, {"latency_ms": float(ms)})
        low_seen = min(low_seen, float(latency_ms.min()))
        high_seen = max(high_seen, float(latency_ms.max()))
        active = space.active_mask(batch)
        for row, mask, ms in zip(batch, active, latency_ms, strict=True):
            if not lo_ms <= ms <= hi_ms:
                continue
            key = np.where(mask, row, -1).tobytes()
            if unique and key in seen:
                continue
            seen.add(key)
            kept.append(row)
            kept_ms.append(float(ms))
            if len(kept) == num:
                break
    if len(kept) < num:
        raise SpecError(
            f"lo_ms/hi_ms: only {len(kept)} of {num} architectures fell in the latency band "
            f"[{lo_ms}, {hi_ms}] ms after {tries} uniform samples; observed latencies "
            f"ranged [{low_seen:.4g}, {high_seen:.4g}] ms; move or widen the band, or raise "
            "max_tries"
        )
    return np.stack(kept).astype(np.int32), np.asarray(kept_ms, dtype=np.float64)
