"""Step-indexed schedules of a TuNAS search: controller learning rate and warmups.

All schedule functions take the (possibly traced) global step and return jnp
scalars, so they run inside the one jitted training step.

TuNAS (google-research `tunas/mobile_architecture_search.py`):
- The controller learning rate is 0 for the first `delay_fraction` (25%) of
  steps, so that the shared weights are trained on uniformly sampled
  architectures before the controller starts to commit.
- After the delay it is `base_lr * batch_size / 256` times a multiplier that
  rises 10x by the end of the search. The TuNAS paper says "rising 10x over the search";
  the TuNAS code (`use_exponential_rl_learning_rate_schedule`, default on)
  reads this as exponential: `10 ** progress`, progress going 0 -> 1 from the
  end of the delay to the last step. That is our default; `lr_increase_mode=
  "linear"` gives `1 + 9 * progress` instead.
- Op warmup and filter warmup: probability p decays linearly from 1 at step 0
  to 0 at `*_warmup_fraction` of the steps. With probability p, independently
  for each sample and each OP decision, the supernet runs all choices and
  averages them; independently for each FILTERS decision, the largest filter
  choice is forced. The warmup must end before the delay does, because the
  reward measured on a warmed-up network is not the sampled architecture's
  (TuNAS refuses the same configurations).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from search_spaces import FILTERS, OP, SearchSpace, SpecError

LR_INCREASE_MODES = ("exponential", "linear")


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Static (hashable) description of the schedules of one search."""

    total_steps: int  # number of training steps of the whole search
    base_lr: float = 3e-4  # controller LR at batch 256, before the 10x rise (TuNAS: 0.0003)
    batch_size: int = 256  # training batch size; LR scales with batch_size / 256
    delay_fraction: float = 0.25  # fraction of steps with controller LR 0
    lr_increase: float = 10.0  # LR multiplier reached at the last step
    lr_increase_mode: str = "exponential"  # how the multiplier rises: exponential | linear
    op_warmup_fraction: float = 0.25  # op warmup p goes 1 -> 0 over this fraction of steps
    filter_warmup_fraction: float = 0.25  # filter warmup p goes 1 -> 0 over this fraction

    def __post_init__(self) -> None:
        if int(self.total_steps) <= 0:
            raise SpecError(f"total_steps: {self.total_steps} must be a positive step count")
        for name in ("delay_fraction", "op_warmup_fraction", "filter_warmup_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise SpecError(f"{name}: {value} must lie in [0, 1]")
        for name in ("op_warmup_fraction", "filter_warmup_fraction"):
            if getattr(self, name) > self.delay_fraction:
                raise SpecError(
                    f"{name}: {getattr(self, name)} exceeds delay_fraction "
                    f"{self.delay_fraction}; the warmup must end before the controller "
                    "starts learning (set it <= delay_fraction)"
                )
        if self.base_lr < 0 or self.batch_size <= 0 or self.lr_increase <= 0:
            raise SpecError(
                f"base_lr/batch_size/lr_increase: got {self.base_lr}/{self.batch_size}/"
                f"{self.lr_increase}; use base_lr >= 0, batch_size > 0, lr_increase > 0"
            )
        if self.lr_increase_mode not in LR_INCREASE_MODES:
            raise SpecError(
                f"lr_increase_mode: {self.lr_increase_mode!r} is unknown; "
                f"use one of {LR_INCREASE_MODES}"
            )

    # TuNAS truncates fractions of steps with int().
    @property
    def delay_steps(self) -> int:
        return int(self.delay_fraction * self.total_steps)

    @property
    def op_warmup_steps(self) -> int:
        return int(self.op_warmup_fraction * self.total_steps)

    @property
    def filter_warmup_steps(self) -> int:
        return int(self.filter_warmup_fraction * self.total_steps)

    @property
    def scaled_lr(self) -> float:
        """LR right after the delay: base_lr * batch_size / 256."""
        return self.base_lr * self.batch_size / 256.0


def controller_learning_rate(step: Any, schedule: Schedule) -> jax.Array:
    """Controller LR at `step`: 0 during the delay, then scaled_lr rising to lr_increase x."""
    step = jnp.asarray(step, jnp.float32)
    delay = schedule.delay_steps
    span = max(1, schedule.total_steps - delay)
    progress = jnp.clip((step - delay) / span, 0.0, 1.0)
    if schedule.lr_increase_mode == "exponential":
        multiplier = jnp.power(jnp.float32(schedule.lr_increase), progress)
    else:
        multiplier = 1.0 + (schedule.lr_increase - 1.0) * progress
    lr = schedule.scaled_lr * multiplier
    return jnp.where(step >= delay, lr, 0.0).astype(jnp.float32)


def linear_decay(step: Any, decay_steps: int) -> jax.Array:
    """1 at step 0, linearly down to 0 at `decay_steps` and after (0 if decay_steps == 0)."""
    if decay_steps <= 0:
        return jnp.float32(0.0)
    step = jnp.asarray(step, jnp.float32)
    return (1.0 - jnp.clip(step / decay_steps, 0.0, 1.0)).astype(jnp.float32)


def op_warmup_probability(step: Any, schedule: Schedule) -> jax.Array:
    """Probability that an OP decision runs all its choices (averaged) at `step`."""
    return linear_decay(step, schedule.op_warmup_steps)


def op_warmup_active(step: int, schedule: Schedule) -> bool:
    """Host-side: whether `op_warmup_probability(step)` is above 0 (the search step runs
    its warm program then, its plain one after)."""
    return int(step) < schedule.op_warmup_steps


def filter_warmup_probability(step: Any, schedule: Schedule) -> jax.Array:
    """Probability that a FILTERS decision is forced to its largest choice at `step`."""
    return linear_decay(step, schedule.filter_warmup_steps)


# ---- per-space tables -------------------------------------------------------
def decision_tag_masks(space: SearchSpace) -> tuple[np.ndarray, np.ndarray]:
    """Bool [D] arrays: (is an OP decision, is a FILTERS decision)."""
    tags = [d.tag for d in space.decisions]
    return (np.array([t == OP for t in tags], dtype=bool),
            np.array([t == FILTERS for t in tags], dtype=bool))


def largest_filter_indices(space: SearchSpace) -> np.ndarray:
    """Int32 [D]: per FILTERS decision the index of its largest value; -1 for other decisions."""
    out = np.full(space.num_decisions, -1, dtype=np.int32)
    for d in space.decisions:
        if d.tag == FILTERS:
            out[d.position] = int(np.argmax(np.asarray(d.choices)))
    return out


class WarmupMasks(NamedTuple):
    """What the supernet does differently for each sample during the warmup.

    all_ops: bool [K, D]; True only at OP decisions: run every choice of that
      decision and average the outputs instead of the sampled choice.
    max_filters: bool [K, D]; True only at FILTERS decisions: use the largest
      filter choice (`largest_filter_indices`) instead of the sampled one.
    """

    all_ops: jax.Array
    max_filters: jax.Array


def warmup_masks(rng: jax.Array, step: Any, space: SearchSpace, schedule: Schedule,
                 num: int) -> WarmupMasks:
    """Independent Bernoulli draws per sample and decision (TuNAS draws one per OneOf)."""
    is_op, is_filters = decision_tag_masks(space)
    op_rng, filter_rng = jax.random.split(rng)
    shape = (num, space.num_decisions)
    all_ops = jax.random.uniform(op_rng, shape) < op_warmup_probability(step, schedule)
    max_filters = jax.random.uniform(filter_rng, shape) < filter_warmup_probability(
        step, schedule)
    return WarmupMasks(all_ops & jnp.asarray(is_op), max_filters & jnp.asarray(is_filters))


def apply_filter_warmup(indices: jax.Array, masks: WarmupMasks,
                        space: SearchSpace) -> jax.Array:
    """`indices` [K, D] with forced FILTERS decisions replaced by their largest choice."""
    largest = jnp.asarray(largest_filter_indices(space))
    return jnp.where(masks.max_filters, largest, indices).astype(indices.dtype)
