"""The one jitted step of a TuNAS search, over an explicit state pytree.

Per step and per device (TuNAS: one architecture per accelerator core):
1. sample an architecture from the controller; during the warmup, force the
   largest filter choices (filter warmup) and mark op decisions whose choices
   are all run and averaged (op warmup, `supernet.apply(..., op_warm=...)`);
2. train the shared weights on the device's share of the training batch
   (the task's loss, e.g. label-smoothed cross-entropy); gradients are
   averaged over devices;
3. evaluate THE SAME architecture (same indices, same op warmup) with the
   UPDATED weights on the device's share of the validation batch: the task's
   quality Q (top-1 accuracy for classification);
4. predict its latency T with the learned regressor (pure JAX, in the jit),
   minus `RewardParams.latency_offset_ms` (the fixed per-inference part when
   the config's `latency_metric` is `layers`, see `cost_models.latency_metric`);
5. reward R(Q, T); every device gathers all devices' architectures and
   rewards and applies the same REINFORCE update (rewards averaged), so the
   controller stays replicated.

The step is a `shard_map` over a 1-D mesh (axis `devices`): the state is
replicated (`P()`), the batches are split along their first axis
(`P('devices')`). With one device it is the K = 1 case of the same code.
Architectures are traced int32 values, so no sample ever retraces. The
reward's target, beta and latency offset are traced too: searches at several
targets share one compiled step (and the persistent compilation cache).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import controllers
import supernet
from cost_models.regressor import LatencyPredictor
from search_spaces import SearchSpace
from tasks import Task

AXIS = "devices"

shard_map = getattr(jax, "shard_map", None)
_NO_CHECK = "check_vma"
if shard_map is None:  # jax < 0.6: the experimental one, whose flag has the old name
    from jax.experimental.shard_map import shard_map  # type: ignore[no-redef]

    _NO_CHECK = "check_rep"


@flax.struct.dataclass
class SearchState:
    """Everything a search step changes (checkpointed whole)."""

    params: Any  # supernet shared weights (supernet.init_params)
    opt_state: Any  # optax state of the shared-weight optimizer
    controller: controllers.ControllerState
    rng: jax.Array  # uint32 [2] raw PRNG key (raw so that orbax stores it as an array)
    step: jax.Array  # int32 scalar: steps done


@flax.struct.dataclass
class RewardParams:
    """The reward's numbers, passed into the jitted step as float32 scalars."""

    target_latency_ms: jax.Array
    beta: jax.Array
    latency_offset_ms: jax.Array  # subtracted from the regressor's end-to-end prediction

    @classmethod
    def create(cls, target_latency_ms: float, beta: float, latency_offset_ms: float = 0.0
               ) -> RewardParams:
        return cls(*(jnp.float32(v) for v in (target_latency_ms, beta, latency_offset_ms)))


def make_optimizer(opt_config: Any, steps: int, batch_size: int
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Shared-weight optimizer and its learning-rate schedule (warmup + cosine to 0).

    The peak LR is base_learning_rate * batch_size / 256 (TuNAS's linear scaling).
    Weight decay is L2 on the gradient before the optimizer (TuNAS adds it to the loss).
    """
    peak = float(opt_config.base_learning_rate) * batch_size / 256.0
    warmup = int(float(opt_config.warmup_fraction) * steps)
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, peak, warmup_steps=warmup, decay_steps=max(steps, warmup + 1), end_value=0.0)
    name = opt_config.name
    if name == "rmsprop":
        core = optax.rmsprop(schedule, decay=float(opt_config.decay),
                             eps=float(opt_config.epsilon), momentum=float(opt_config.momentum))
    elif name == "momentum":
        core = optax.sgd(schedule, momentum=float(opt_config.momentum))
    elif name == "adam":
        core = optax.adam(schedule)
    else:  # validated in tunas_jax.search
        raise ValueError(f"optimizer.name: {name!r}")
    return optax.chain(optax.add_decayed_weights(float(opt_config.weight_decay)), core), schedule


def init_state(space: SearchSpace, plan: supernet.SupernetPlan, task: Task,
               optimizer: optax.GradientTransformation,
               controller_config: controllers.ReinforceConfig, seed: int) -> SearchState:
    init_key, rng = jax.random.split(jax.random.PRNGKey(seed))
    params = supernet.init_params(plan, task, init_key)
    return SearchState(params=params, opt_state=optimizer.init(params),
                       controller=controllers.init(space, controller_config), rng=rng,
                       step=jnp.int32(0))


def make_step(space: SearchSpace, plan: supernet.SupernetPlan, task: Task,
              optimizer: optax.GradientTransformation, lr_schedule: optax.Schedule,
              predictor: LatencyPredictor, reward: str, reward_params: RewardParams,
              label_smoothing: float, mesh: Mesh, trace_counter: list | None = None
              ) -> Callable[..., tuple[SearchState, dict[str, jax.Array]]]:
    """`step(state, train_batch, valid_batch) -> (state, metrics)`, jitted.

    `reward` names a `controllers.REWARDS` function, applied with `reward_params`.

    `trace_counter`: a list that gets one element per trace (tests check that
    sampling new architectures never retraces).
    """
    reward_fn = controllers.get_reward_fn(reward)

    def device_step(state: SearchState, predictor: LatencyPredictor, rp: RewardParams,
                    train: dict, valid: dict) -> tuple[SearchState, dict[str, jax.Array]]:
        schedule = state.controller.spec.config.schedule
        rng, next_rng = jax.random.split(state.rng)
        # Same rng on every device; fold in the device index for its own sample.
        device_rng = jax.random.fold_in(rng, jax.lax.axis_index(AXIS))
        sample_rng, warm_rng = jax.random.split(device_rng)
        sampled = controllers.sample(state.controller, sample_rng, num=1)  # [1, D]
        masks = controllers.warmup_masks(warm_rng, state.step, space, schedule, 1)
        indices = controllers.apply_filter_warmup(sampled, masks, space)[0]  # [D]
        # Without op warmup the plain supernet path is traced: the warmup's scan over
        # every op combination multiplies compile time (minutes on CPU for micro).
        op_warm = masks.all_ops[0] if schedule.op_warmup_steps > 0 else None

        def loss_fn(params: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
            output, _ = supernet.apply(plan, task, params, indices, train[task.input_key],
                                       op_warm=op_warm)
            return task.loss(output, train, label_smoothing=label_smoothing)

        (loss, train_metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        grads = jax.lax.pmean(grads, AXIS)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)

        valid_output, _ = supernet.apply(plan, task, params, indices, valid[task.input_key],
                                         op_warm=op_warm, train=False)
        quality = task.quality(valid_output, valid)
        # Floor: with the 'layers' offset a regressor error could reach <= 0 ms, which the
        # mnas rewards' power would turn into NaN.
        latency_ms = jnp.maximum(predictor(indices[None])[0] - rp.latency_offset_ms, 1e-6)
        reward = reward_fn(quality, latency_ms, rp.target_latency_ms, rp.beta)

        # Every device gathers all samples and rewards and does the same update.
        all_sampled = jax.lax.all_gather(sampled[0], AXIS)  # [K, D]
        all_rewards = jax.lax.all_gather(reward, AXIS)  # [K]
        controller, cmetrics = controllers.update(state.controller, all_sampled, all_rewards)

        metrics = {
            "loss": jax.lax.pmean(loss, AXIS),
            **{f"train_{k}": jax.lax.pmean(v, AXIS) for k, v in train_metrics.items()},
            "valid_quality": jax.lax.pmean(quality, AXIS),
            "predicted_latency_ms": jax.lax.pmean(latency_ms, AXIS),
            "reward": cmetrics["reward"],
            "baseline": cmetrics["baseline"],
            "entropy": cmetrics["entropy"],
            "controller_learning_rate": cmetrics["learning_rate"],
            "learning_rate": jnp.asarray(lr_schedule(state.step), jnp.float32),
            "op_warmup_probability": controllers.op_warmup_probability(state.step, schedule),
            "filter_warmup_probability": controllers.filter_warmup_probability(
                state.step, schedule),
        }
        new_state = SearchState(params=params, opt_state=opt_state, controller=controller,
                                rng=next_rng, step=state.step + 1)
        return new_state, metrics

    # Replication of the outputs holds by construction (pmean / all_gather feed every
    # replicated output), which the checker cannot see through the controller update.
    sharded = shard_map(device_step, mesh=mesh, in_specs=(P(), P(), P(), P(AXIS), P(AXIS)),
                        out_specs=(P(), P()), **{_NO_CHECK: False})

    replicated = NamedSharding(mesh, P())
    batch_sharding = NamedSharding(mesh, P(AXIS))

    def step(state: SearchState, predictor: LatencyPredictor, rp: RewardParams, train: dict,
             valid: dict):
        if trace_counter is not None:
            trace_counter.append(1)
        return sharded(state, predictor, rp, train, valid)

    jitted = jax.jit(step, in_shardings=(replicated, replicated, replicated, batch_sharding,
                                         batch_sharding),
                     out_shardings=(replicated, replicated), donate_argnums=(0,))
    return lambda state, train, valid: jitted(state, predictor, reward_params, train, valid)


def replicate(state: SearchState, mesh: Mesh) -> SearchState:
    """The state placed as the step returns it (replicated over the mesh): a first call
    with differently placed arrays would trace the step a second time."""
    return jax.device_put(state, NamedSharding(mesh, P()))


def make_mesh(num_devices: int) -> Mesh:
    """A 1-D mesh over the first `num_devices` local devices (0 = all)."""
    devices = jax.local_devices()
    if num_devices:
        devices = devices[:num_devices]
    return Mesh(np.asarray(devices), (AXIS,))
