"""The TuNAS controller: independent categorical logits per decision, trained by REINFORCE.

Everything here is functional and jit-able, so the search loop can put the
controller update in the same jitted step as the supernet update:

    state = init(space, config)                      # logits all zero
    indices = sample(state, rng, num=K)              # int32 [K, D]
    ... train the supernet on `indices`, measure rewards [K] ...
    state, metrics = update(state, indices, rewards)

`ControllerState` is a pytree. Its only static part is `spec` (the space and
the config), compared by value (space fingerprint + config) so that a state
rebuilt after a checkpoint restore hits the same compiled step. The sampled
architectures are traced int arrays, so no architecture ever causes a retrace.

Logits are one padded [D, max_choices] array; slots past a decision's number
of choices hold a large negative constant (not -inf, so that softmax, entropy
and their gradients stay finite: padded slots get probability exactly 0 and
gradient exactly 0, hence Adam never moves them).

REINFORCE, as the TuNAS code (`tunas/mobile_architecture_search.py`) does it:
- the step's rewards are averaged (one per sample, TuNAS's one per core);
- the baseline is a zero-debiased exponential moving average of these step
  means (momentum 0.95): numerator and denominator EMAs, baseline = num / den;
- the baseline is updated with this step's mean reward BEFORE the advantage
  is taken (`rl_baseline = update_exponential_moving_average(...)`, then
  `rl_advantage = rl_reward - rl_baseline`). This is what TuNAS does, and with
  the debiasing the first step's advantage is R - mean(R) rather than R.
  `baseline_includes_current=False` uses the previous baseline instead (the
  first step then falls back to this step's mean);
- loss = -mean_k(stop_gradient(R_k - b) * log p(arch_k)), log p summing only
  decisions on the active path (`space.active_mask`);
- optional entropy bonus (TuNAS default weight 0) on the active-path entropy;
- decisions replaced by a warmup (op warmup ran all choices, filter warmup
  forced the largest) get no credit: TuNAS's `_replace_sample_with_probability`
  makes their log-probability a constant (`update(..., credited=...)`);
- Adam with beta1 = 0, beta2 = 0.999, eps = 1e-8 (optax `scale_by_adam`'s
  moments and debiasing), scaled by the scheduled learning rate, except that
  the second moment takes the mean of the per-sample squared gradients, not
  the square of the mean gradient: TuNAS's `tpu_optimizer_ops.apply_adam`
  squares each core's gradient, then averages across cores (a smaller step
  when the samples disagree). During the delay the LR is 0 but Adam's moments
  still accumulate, as in TuNAS.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from controllers.schedules import Schedule, controller_learning_rate
from search_spaces import SearchSpace, SpecError

# Logit of padded (non-existent) choices: exp() underflows to exactly 0.
PADDED_LOGIT = -1e9


@dataclasses.dataclass(frozen=True)
class ReinforceConfig:
    """Controller hyperparameters (TuNAS defaults) and the step schedule."""

    schedule: Schedule  # LR delay/rise and warmups; holds total_steps
    baseline_momentum: float = 0.95  # EMA momentum of the reward baseline
    baseline_includes_current: bool = True  # TuNAS: advantage uses the updated baseline
    adam_b1: float = 0.0  # TuNAS: no first-moment momentum
    adam_b2: float = 0.999
    adam_eps: float = 1e-8
    entropy_weight: float = 0.0  # weight of the active-path entropy bonus (TuNAS: 0)
    # Credit the sampled choice of decisions a warmup replaced (TuNAS: no; an ablation).
    credit_warmed_decisions: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.baseline_momentum < 1.0:
            raise SpecError(f"baseline_momentum: {self.baseline_momentum} must lie in [0, 1)")
        if not (0.0 <= self.adam_b1 < 1.0 and 0.0 <= self.adam_b2 < 1.0):
            raise SpecError(f"adam_b1/adam_b2: {self.adam_b1}/{self.adam_b2} must lie in [0, 1)")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> ReinforceConfig:
        """From a flat mapping or ConfigDict holding ReinforceConfig and Schedule fields.

        `total_steps` is required; unknown keys are refused (they are typos).
        """
        values = dict(values)
        schedule_fields = {f.name for f in dataclasses.fields(Schedule)}
        own_fields = {f.name for f in dataclasses.fields(cls)} - {"schedule"}
        unknown = sorted(set(values) - schedule_fields - own_fields)
        if unknown:
            raise SpecError(
                f"controller config: unknown fields {unknown}; known fields are "
                f"{sorted(schedule_fields | own_fields)}"
            )
        if "total_steps" not in values:
            raise SpecError("controller config: total_steps is missing; set the search length")
        schedule = Schedule(**{k: v for k, v in values.items() if k in schedule_fields})
        return cls(schedule=schedule, **{k: v for k, v in values.items() if k in own_fields})


@dataclasses.dataclass(frozen=True, eq=False)
class ControllerSpec:
    """Static part of the controller state: the space and the config.

    Equality and hash go by (space fingerprint, config), not identity, so jit
    caches keyed on the state's tree structure survive rebuilding the spec.
    """

    space: SearchSpace
    config: ReinforceConfig

    @property
    def _key(self) -> tuple[Any, ...]:
        return (self.space.fingerprint, self.space.num_choices, self.config)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ControllerSpec) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    @property
    def max_choices(self) -> int:
        return max(self.space.num_choices)

    def choice_mask(self) -> np.ndarray:
        """Bool [D, max_choices]: which slots are real choices."""
        num = np.asarray(self.space.num_choices)
        return np.arange(self.max_choices)[None, :] < num[:, None]


@flax.struct.dataclass
class ControllerState:
    logits: jax.Array  # float32 [D, max_choices]; padded slots at PADDED_LOGIT
    opt_state: optax.OptState  # Adam (b1 = 0) moments of the logits
    baseline_numerator: jax.Array  # float32 scalar: EMA of step mean rewards, not debiased
    baseline_denominator: jax.Array  # float32 scalar: EMA of 1 (the debiasing factor)
    step: jax.Array  # int32 scalar: number of updates so far = global step of the schedule
    spec: ControllerSpec = flax.struct.field(pytree_node=False)

    @property
    def baseline(self) -> jax.Array:
        """The debiased reward baseline (0 before the first update)."""
        den = self.baseline_denominator
        return jnp.where(den > 0, self.baseline_numerator / jnp.maximum(den, 1e-12), 0.0)


def _optimizer(config: ReinforceConfig) -> optax.GradientTransformation:
    return optax.scale_by_adam(b1=config.adam_b1, b2=config.adam_b2, eps=config.adam_eps)


def init(space: SearchSpace, config: ReinforceConfig | Mapping[str, Any]) -> ControllerState:
    """Zero logits (uniform policy), fresh Adam state, empty baseline, step 0."""
    if not isinstance(config, ReinforceConfig):
        config = ReinforceConfig.from_mapping(config)
    spec = ControllerSpec(space, config)
    logits = jnp.where(jnp.asarray(spec.choice_mask()), 0.0, PADDED_LOGIT).astype(jnp.float32)
    return ControllerState(
        logits=logits,
        opt_state=_optimizer(config).init(logits),
        baseline_numerator=jnp.float32(0.0),
        baseline_denominator=jnp.float32(0.0),
        step=jnp.int32(0),
        spec=spec,
    )


def probabilities(logits: jax.Array) -> jax.Array:
    """Float32 [D, max_choices] choice probabilities (0 in padded slots)."""
    return jax.nn.softmax(logits, axis=-1)


def decision_entropies(logits: jax.Array) -> jax.Array:
    """Float32 [D]: entropy (nats) of each decision's distribution."""
    log_p = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.sum(jnp.exp(log_p) * log_p, axis=-1)


def sample(state: ControllerState, rng: jax.Array, num: int = 1) -> jax.Array:
    """Int32 [num, D]: architectures drawn independently per decision from the logits."""
    logits = state.logits
    draws = jax.random.categorical(rng, logits, axis=-1, shape=(num, logits.shape[0]))
    return draws.astype(jnp.int32)


def argmax_architecture(state: ControllerState) -> jax.Array:
    """Int32 [D]: the most likely choice of every decision (TuNAS's final extraction)."""
    return jnp.argmax(state.logits, axis=-1).astype(jnp.int32)


def log_prob(logits: jax.Array, indices: jax.Array, active_mask: jax.Array) -> jax.Array:
    """Log-probability [...] of architectures `indices` [..., D], active decisions only.

    Decisions off the chosen path (`active_mask` False, e.g. the kernel of a
    skipped block) were not really chosen, so they neither add probability
    nor receive gradient.
    """
    log_p = jax.nn.log_softmax(logits, axis=-1)  # [D, M]
    indices = jnp.asarray(indices, jnp.int32)
    batch_shape = indices.shape[:-1]
    table = jnp.broadcast_to(log_p, (*batch_shape, *log_p.shape))
    chosen = jnp.take_along_axis(table, indices[..., None], axis=-1)[..., 0]  # [..., D]
    return jnp.sum(jnp.where(active_mask, chosen, 0.0), axis=-1)


def _adam(opt_state: optax.ScaleByAdamState, grad_mean: jax.Array, grad_square_mean: jax.Array,
          config: ReinforceConfig) -> tuple[jax.Array, optax.ScaleByAdamState]:
    """optax.scale_by_adam's update, fed the mean of the squared per-sample gradients for
    the second moment (TuNAS's cross-core Adam). Same state pytree as optax's."""
    b1, b2 = config.adam_b1, config.adam_b2
    count = optax.safe_increment(opt_state.count)
    mu = b1 * opt_state.mu + (1.0 - b1) * grad_mean
    nu = b2 * opt_state.nu + (1.0 - b2) * grad_square_mean
    t = count.astype(jnp.float32)
    mu_hat = mu / (1.0 - b1 ** t)
    nu_hat = nu / (1.0 - b2 ** t)
    return mu_hat / (jnp.sqrt(nu_hat) + config.adam_eps), opt_state._replace(
        count=count, mu=mu, nu=nu)


def update(state: ControllerState, indices: jax.Array, rewards: jax.Array,
           credited: jax.Array | None = None) -> tuple[ControllerState, dict[str, jax.Array]]:
    """One REINFORCE + Adam step from K sampled architectures [K, D] and their rewards [K].

    `credited` (bool [K, D], optional): the decisions whose sampled choice was really
    used; the others (replaced by a warmup) count neither in the log-probability nor in
    the entropy bonus. None: all of them.

    Returns the new state and metrics: reward (mean), baseline (the one used),
    advantage (mean), loss, log_prob (mean), entropy (sum over all decisions),
    active_entropy (mean over samples of the active-path sum), learning_rate,
    probabilities [D, max_choices].
    """
    spec = state.spec
    config = spec.config
    indices = jnp.asarray(indices, jnp.int32)
    rewards = jnp.asarray(rewards, jnp.float32)
    if indices.ndim != 2 or rewards.shape != indices.shape[:1]:
        raise SpecError(
            f"update: indices {indices.shape} and rewards {rewards.shape} must be [K, D] and [K]"
        )
    active = spec.space.active_mask(indices, xp=jnp)
    if credited is not None:
        if credited.shape != indices.shape:
            raise SpecError(f"update: credited {credited.shape} must have the shape of "
                            f"indices {indices.shape}")
        active = active & credited

    m = config.baseline_momentum
    step_reward = jnp.mean(rewards)
    numerator = m * state.baseline_numerator + (1.0 - m) * step_reward
    denominator = m * state.baseline_denominator + (1.0 - m)
    if config.baseline_includes_current:
        baseline = numerator / denominator
    else:
        baseline = jnp.where(state.baseline_denominator > 0, state.baseline, step_reward)
    advantage = jax.lax.stop_gradient(rewards - baseline)  # [K]

    def sample_loss(logits: jax.Array, indices: jax.Array, active: jax.Array,
                    advantage: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        # One sample's loss (TuNAS: one core's); the step's loss is their mean.
        lp = log_prob(logits, indices, active)
        active_entropy = jnp.sum(jnp.where(active, decision_entropies(logits), 0.0))
        return -advantage * lp - config.entropy_weight * active_entropy, (lp, active_entropy)

    (losses, (lp, entropies)), grads = jax.vmap(
        jax.value_and_grad(sample_loss, has_aux=True), in_axes=(None, 0, 0, 0))(
        state.logits, indices, active, advantage)  # grads: [K, D, max_choices]
    loss, active_entropy = jnp.mean(losses), jnp.mean(entropies)
    lr = controller_learning_rate(state.step, config.schedule)
    adam_updates, opt_state = _adam(state.opt_state, jnp.mean(grads, axis=0),
                                    jnp.mean(jnp.square(grads), axis=0), config)
    valid = jnp.asarray(spec.choice_mask())
    # Padded slots get zero gradient already; the mask keeps them pinned regardless.
    logits = jnp.where(valid, state.logits - lr * adam_updates, PADDED_LOGIT)

    new_state = state.replace(
        logits=logits,
        opt_state=opt_state,
        baseline_numerator=numerator,
        baseline_denominator=denominator,
        step=state.step + 1,
    )
    metrics = {
        "reward": step_reward,
        "baseline": baseline,
        "advantage": jnp.mean(advantage),
        "loss": loss,
        "log_prob": jnp.mean(lp),
        "entropy": jnp.sum(decision_entropies(state.logits)),
        "active_entropy": active_entropy,
        "learning_rate": lr,
        "probabilities": probabilities(state.logits),
    }
    return new_state, metrics
