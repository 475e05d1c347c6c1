"""The one jitted step of a TuNAS search, over an explicit state pytree.

Per step and per device, K = `architectures_per_device` architectures (TuNAS:
one per accelerator core, 32 per step on its v2-32 slice, each on 128 images):
1. sample K architectures from the controller; during the warmup, force the
   largest filter choices (filter warmup) and mark op decisions whose choices
   are all run and averaged (op warmup, `supernet.apply(..., op_warm=...)`);
2. train the shared weights: architecture k's loss on its own 1/K of the
   device's share of the training batch (the task's loss, e.g. label-smoothed
   cross-entropy, plus weight_decay / 2 times the L2 of the conv kernels that
   architecture used, `supernet.kernel_l2`: TuNAS's masked L2, so weights off
   the sampled paths never decay); gradients are averaged over the K
   architectures and the devices (TuNAS's CrossShardOptimizer), then one
   optimizer update;
3. evaluate THE SAME architectures (same indices, same op warmup) with the
   UPDATED weights, each on its 1/K of the device's share of the validation
   batch: the task's quality Q (top-1 accuracy for classification);
4. predict its latency T_i on every target i with that target's learned
   regressor (pure JAX, all in the one jit), minus
   `RewardParams.latency_offset_ms` (the fixed per-inference part when the
   config's `latency_metric` is `layers`, see `cost_models.latency_metric`);
   normalize by each target's T0_i and combine the ratios into one, r
   (`controllers.combine_latency_ratios`: average, geomean or worst; one
   target: r = T / T0);
5. reward R(Q, r) (the reward function with T = r, T0 = 1); every device
   gathers all devices' architectures, rewards and credited decisions (the
   ones no warmup replaced) and applies the same REINFORCE update (rewards
   averaged, Adam's second moment from the per-architecture squared
   gradients), so the controller stays replicated.

The K architectures of a device run one after the other in a `lax.scan` (the
supernet traced once, the shared-weight gradient summed in the carry): under
`vmap` each `lax.switch` over branches would become a select that runs every
branch. K = 1 traces the plain path, without the scan.

The step is a `shard_map` over a 1-D mesh (axis `devices`): the state is
replicated (`P()`), the batches are split along their first axis
(`P('devices')`). One device is the same code on a mesh of one. Under
`jax.distributed` the mesh spans every process's devices (`make_mesh`) and
each process passes its own rows of the global batches (`global_batch`).
Architectures are traced int32 values, so no sample ever retraces. The
reward's targets, beta and latency offsets are traced too: searches at several
latency targets share one compiled step (and the persistent compilation cache).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Sequence
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
    """The reward's numbers, passed into the jitted step as float32 arrays: one target
    latency and one offset per hardware target ([T], in the order of the predictors)."""

    target_latency_ms: jax.Array  # [T]
    beta: jax.Array  # scalar
    latency_offset_ms: jax.Array  # [T], subtracted from each regressor's end-to-end latency

    @classmethod
    def create(cls, target_latency_ms: float | Sequence[float], beta: float,
               latency_offset_ms: float | Sequence[float] = 0.0) -> RewardParams:
        targets = jnp.atleast_1d(jnp.asarray(target_latency_ms, jnp.float32))
        offsets = jnp.broadcast_to(jnp.asarray(latency_offset_ms, jnp.float32), targets.shape)
        return cls(targets, jnp.float32(beta), offsets)


def make_optimizer(opt_config: Any, steps: int, batch_size: int
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Shared-weight optimizer and its learning-rate schedule (warmup + cosine to 0).

    The peak LR is base_learning_rate * batch_size / 256 (TuNAS's linear scaling).
    Weight decay is not here but in the loss, on the sampled path's conv kernels only
    (`shared_weight_loss`, `masked_weight_decay`), unless `weight_decay_scope` is
    'all_weights' (the ablation): then optax decays every weight here.
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
    if weight_decay_scope(opt_config) == "all_weights":
        core = optax.chain(optax.add_decayed_weights(float(opt_config.weight_decay)), core)
    return core, schedule


WEIGHT_DECAY_SCOPES = ("sampled_kernels", "all_weights")


def weight_decay_scope(opt_config: Any) -> str:
    """The config's `weight_decay_scope` (a workdir written before the field: TuNAS's)."""
    scope = getattr(opt_config, "weight_decay_scope", "sampled_kernels")
    if scope not in WEIGHT_DECAY_SCOPES:
        raise ValueError(f"optimizer.weight_decay_scope: {scope!r}; use one of "
                         f"{WEIGHT_DECAY_SCOPES}")
    return scope


def masked_weight_decay(opt_config: Any) -> float:
    """The `weight_decay` argument of `make_step`: the config's decay when it is TuNAS's
    masked L2 in the loss, 0 when `make_optimizer` decays every weight instead."""
    if weight_decay_scope(opt_config) != "sampled_kernels":
        return 0.0
    return float(opt_config.weight_decay)


def shared_weight_loss(plan: supernet.SupernetPlan, params: Any, indices: jax.Array,
                       task_loss: jax.Array, weight_decay: float,
                       op_warm: jax.Array | None = None) -> jax.Array:
    """The loss the shared weights minimize for architecture `indices`: the task's loss
    plus weight_decay / 2 * the L2 of the conv kernels the architecture used (TuNAS:
    `l2(weight_decay / 2)` kernel regularizers, masked to the sampled branch and
    channels; gradient weight_decay * w on those entries, zero elsewhere; under op
    warmup, the mixture's members weighted as their outputs, `supernet.kernel_l2`)."""
    if not weight_decay:
        return task_loss
    return task_loss + 0.5 * weight_decay * supernet.kernel_l2(plan, params, indices, op_warm)


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
              predictor: LatencyPredictor | Sequence[LatencyPredictor], reward: str,
              reward_params: RewardParams, label_smoothing: float, mesh: Mesh,
              trace_counter: list | None = None, weight_decay: float = 0.0,
              architectures_per_device: int = 1,
              multi_hardware_metric: str = controllers.DEFAULT_MULTI_HARDWARE_METRIC
              ) -> SearchStepFunction:
    """`step(state, train_batch, valid_batch) -> (state, metrics)`, jitted.

    `predictor`: one latency predictor per hardware target (or one), all evaluated in
    the step; `reward_params` holds as many target latencies and offsets.
    `multi_hardware_metric` combines the per-target latency ratios
    (`controllers.combine_latency_ratios`). `reward` names a `controllers.REWARDS`
    function, applied to the combined ratio with a target of 1.
    `weight_decay`: TuNAS's L2 on the sampled paths' conv kernels (`shared_weight_loss`).
    `architectures_per_device` (K): architectures sampled per device per step; each
    device's batches must split into K equal shares.

    Two programs, chosen on the host from the state's step and the schedule: the
    warm one (op warmup mixes choices, `supernet.apply(..., op_warm=...)`) while the
    op warmup probability is above 0, the plain one after. The warm program's per-unit
    mixtures (a `lax.scan` of skipped `lax.cond`s but for one member, differentiated)
    cost several plain steps even when nothing is warm (BENCHMARKS.md, "op warmup"),
    so no step after the warmup pays for them. A search without op warmup compiles the
    plain one only; one whose run goes past the warmup starts compiling the plain one in
    a background thread beside the first warm step
    (`SearchStepFunction.compile_plain_ahead`), so the two compiles overlap.

    `trace_counter`: a list that gets one element per trace, 'warm' or 'plain' (tests
    check that sampling new architectures never retraces).
    """
    reward_fn = controllers.get_reward_fn(reward)
    metric = controllers.check_multi_hardware_metric(multi_hardware_metric)
    predictors = tuple(predictor) if isinstance(predictor, (list, tuple)) else (predictor,)
    if int(reward_params.target_latency_ms.shape[0]) != len(predictors):
        raise ValueError(f"reward_params: {reward_params.target_latency_ms.shape[0]} target "
                         f"latencies for {len(predictors)} latency predictors")
    names = [getattr(p, "target_name", None) or f"target{i}" for i, p in enumerate(predictors)]
    num = int(architectures_per_device)
    if num < 1:
        raise ValueError(f"architectures_per_device: {num}; use at least 1")

    def split(batch: dict) -> dict:
        # [n, ...] -> [K, n / K, ...]: architecture k's share.
        def one(a: jax.Array) -> jax.Array:
            if a.shape[0] % num:
                raise ValueError(f"a device's batch of {a.shape[0]} does not split into "
                                 f"architectures_per_device={num} shares")
            return a.reshape(num, a.shape[0] // num, *a.shape[1:])
        return jax.tree.map(one, batch)

    def device_step(state: SearchState, predictors: tuple[LatencyPredictor, ...],
                    rp: RewardParams, train: dict, valid: dict, *, op_warmup: bool
                    ) -> tuple[SearchState, dict[str, jax.Array]]:
        schedule = state.controller.spec.config.schedule
        rng, next_rng = jax.random.split(state.rng)
        # Same rng on every device; fold in the device index for its own samples.
        device_rng = jax.random.fold_in(rng, jax.lax.axis_index(AXIS))
        sample_rng, warm_rng = jax.random.split(device_rng)
        sampled = controllers.sample(state.controller, sample_rng, num=num)  # [K, D]
        masks = controllers.warmup_masks(warm_rng, state.step, space, schedule, num)
        indices = controllers.apply_filter_warmup(sampled, masks, space)  # [K, D]
        # The plain program traces the plain supernet path (the warm one adds a scan over
        # each unit's block types and over each kxk switch's kernel/group choices).
        op_warm = masks.all_ops if op_warmup else None
        # TuNAS: a decision a warmup replaced gets no REINFORCE credit (unless the
        # controller's config asks for the ablation).
        credited = ~(masks.all_ops | masks.max_filters)
        if state.controller.spec.config.credit_warmed_decisions:
            credited = jnp.ones_like(credited)

        def loss_fn(params: Any, arch: jax.Array, warm: jax.Array | None, batch: dict
                    ) -> tuple[jax.Array, tuple[jax.Array, dict[str, jax.Array]]]:
            output, _ = supernet.apply(plan, task, params, arch, batch[task.input_key],
                                       op_warm=warm)
            loss, metrics = task.loss(output, batch, label_smoothing=label_smoothing)
            return (shared_weight_loss(plan, params, arch, loss, weight_decay, warm),
                    (loss, metrics))

        grad_fn = jax.grad(loss_fn, has_aux=True)
        warm_or_none = (lambda k: None) if op_warm is None else (lambda k: op_warm[k])
        if num == 1:
            grads, (loss, train_metrics) = grad_fn(state.params, indices[0], warm_or_none(0),
                                                   train)
        else:
            shares = split(train)

            def train_one(total: Any, k: jax.Array):
                grads, aux = grad_fn(state.params, indices[k], warm_or_none(k),
                                     jax.tree.map(lambda a: a[k], shares))
                return jax.tree.map(jnp.add, total, grads), aux

            total, (losses, metrics_k) = jax.lax.scan(
                train_one, jax.tree.map(jnp.zeros_like, state.params), jnp.arange(num))
            grads = jax.tree.map(lambda g: g / num, total)
            loss, train_metrics = jnp.mean(losses), jax.tree.map(jnp.mean, metrics_k)
        grads = jax.lax.pmean(grads, AXIS)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)

        def quality_of(k: jax.Array, batch: dict) -> jax.Array:
            output, _ = supernet.apply(plan, task, params, indices[k], batch[task.input_key],
                                       op_warm=warm_or_none(k), train=False)
            return task.quality(output, batch)

        if num == 1:
            quality = quality_of(0, valid)[None]
        else:
            valid_shares = split(valid)
            quality = jax.lax.map(
                lambda k: quality_of(k, jax.tree.map(lambda a: a[k], valid_shares)),
                jnp.arange(num))  # [K]
        # Floor: with the 'layers' offset a regressor error could reach <= 0 ms, which the
        # mnas rewards' power would turn into NaN.
        latency_ms = jnp.maximum(jnp.stack([p(indices) for p in predictors], axis=-1)
                                 - rp.latency_offset_ms, 1e-6)  # [K, T]
        ratio = controllers.combine_latency_ratios(latency_ms / rp.target_latency_ms,
                                                   metric)  # [K]
        reward = reward_fn(quality, ratio, 1.0, rp.beta)  # [K]

        # Every device gathers all samples and rewards and does the same update.
        def gather(a: jax.Array) -> jax.Array:  # [K, ...] -> [devices * K, ...]
            out = jax.lax.all_gather(a, AXIS)
            return out.reshape(-1, *a.shape[1:])

        controller, cmetrics = controllers.update(state.controller, gather(sampled),
                                                  gather(reward), gather(credited))

        metrics = {
            "loss": jax.lax.pmean(loss, AXIS),
            **{f"train_{k}": jax.lax.pmean(v, AXIS) for k, v in train_metrics.items()},
            "valid_quality": jax.lax.pmean(jnp.mean(quality), AXIS),
            # The first target's (the only one's for a single-target search).
            "predicted_latency_ms": jax.lax.pmean(jnp.mean(latency_ms[:, 0]), AXIS),
            "latency_ratio": jax.lax.pmean(jnp.mean(ratio), AXIS),
            **({f"predicted_latency_ms_{name}": jax.lax.pmean(jnp.mean(latency_ms[:, i]), AXIS)
                for i, name in enumerate(names)} if len(names) > 1 else {}),
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

    replicated = NamedSharding(mesh, P())
    batch_sharding = NamedSharding(mesh, P(AXIS))

    def program(op_warmup: bool) -> Callable[..., tuple[SearchState, dict[str, jax.Array]]]:
        # Replication of the outputs holds by construction (pmean / all_gather feed every
        # replicated output), which the checker cannot see through the controller update.
        sharded = shard_map(functools.partial(device_step, op_warmup=op_warmup), mesh=mesh,
                            in_specs=(P(), P(), P(), P(AXIS), P(AXIS)),
                            out_specs=(P(), P()), **{_NO_CHECK: False})

        def step(state: SearchState, predictors: tuple[LatencyPredictor, ...],
                 rp: RewardParams, train: dict, valid: dict):
            if trace_counter is not None:
                trace_counter.append("warm" if op_warmup else "plain")
            return sharded(state, predictors, rp, train, valid)

        return jax.jit(step, in_shardings=(replicated, replicated, replicated,
                                           batch_sharding, batch_sharding),
                       out_shardings=(replicated, replicated), donate_argnums=(0,))

    return SearchStepFunction({False: program(False), True: program(True)}, predictors,
                              reward_params, batch_sharding)


class SearchStepFunction:
    """`step_fn(state, train, valid) -> (state, metrics)`: the warm program while the
    state's step is inside the op warmup, the plain one after (`make_step`).

    `compile_plain_ahead` traces, lowers and compiles the plain program in a
    background thread: XLA compiles a program on one core, so on a machine of two or
    more the plain program's compile (minutes for a real space) overlaps the warm
    one's and the warmup's steps instead of stopping the search when the warmup
    ends. The first plain step waits for that thread, then runs its executable.
    """

    def __init__(self, programs: dict[bool, Any], predictors: tuple[LatencyPredictor, ...],
                 reward_params: RewardParams, batch_sharding: NamedSharding):
        self._programs, self._predictors, self._reward_params = (programs, predictors,
                                                                 reward_params)
        self._batch_sharding = batch_sharding
        self._ahead: threading.Thread | None = None
        self._ahead_compiled: Any = None  # the plain program's executable, once compiled

    @staticmethod
    def uses_warm_program(state: SearchState) -> bool:
        # Reads the step back from the device (a wait for the previous step) only while
        # the schedule has an op warmup: the state's step is the one source of truth.
        schedule = state.controller.spec.config.schedule
        return schedule.op_warmup_steps > 0 and controllers.op_warmup_active(
            int(state.step), schedule)

    def trace(self, warm: bool, state: SearchState, train: dict, valid: dict) -> Any:
        """The jitted program's `jax.stages.Traced` (benchmarks: jaxpr size, compile)."""
        return self._programs[warm].trace(state, self._predictors, self._reward_params,
                                          train, valid)

    def __call__(self, state: SearchState, train: dict, valid: dict
                 ) -> tuple[SearchState, dict[str, jax.Array]]:
        """One step. With several processes (`jax.distributed`), `train` and `valid` are
        this process's rows of the global batches (process i: the i-th slice)."""
        train, valid = self._global_batches(train, valid)
        warm = self.uses_warm_program(state)
        program = self._programs[warm]
        if not warm and self._ahead is not None:
            self._ahead.join()
            if self._ahead_compiled is not None:  # else the jitted program compiles and
                program = self._ahead_compiled    # raises what the thread met
        return program(state, self._predictors, self._reward_params, train, valid)

    def _global_batches(self, train: dict, valid: dict) -> tuple[dict, dict]:
        if jax.process_count() == 1:
            return train, valid
        return global_batch(train, self._batch_sharding), global_batch(
            valid, self._batch_sharding)

    def compile_plain_ahead(self, state: SearchState, train: dict, valid: dict) -> None:
        """Start compiling the plain program for the shapes of these arguments (the
        step's), once; for a run that will go past the op warmup (a run that stops
        inside it would compile for nothing)."""
        if self._ahead is not None:
            return
        # Shapes only: the state's buffers are donated to the warm steps meanwhile.
        shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype),
                              (state, *self._global_batches(train, valid)))

        def compile_plain() -> None:
            # A failure here is not lost: the step past the warmup then compiles the
            # jitted program, which raises it in the search's own thread.
            with contextlib.suppress(Exception):
                self._ahead_compiled = self.trace(False, *shapes).lower().compile()

        self._ahead = threading.Thread(target=compile_plain, name="compile-plain-step",
                                       daemon=True)
        self._ahead.start()

    def wait_for_plain_program(self) -> bool:
        """Wait for `compile_plain_ahead`'s thread; whether it left an executable."""
        if self._ahead is not None:
            self._ahead.join()
        return self._ahead_compiled is not None


def global_batch(local: dict, sharding: NamedSharding) -> dict:
    """The global batch whose rows this process holds (`local`), split over the mesh."""
    return jax.tree.map(
        lambda a: jax.make_array_from_process_local_data(sharding, np.asarray(a)), local)


def replicate(state: SearchState, mesh: Mesh) -> SearchState:
    """The state placed as the step returns it (replicated over the mesh): a first call
    with differently placed arrays would trace the step a second time. With several
    processes every process passes the same values (same seed or checkpoint)."""
    sharding = NamedSharding(mesh, P())
    if jax.process_count() == 1:
        return jax.device_put(state, sharding)

    def one(leaf: Any) -> jax.Array:
        host = np.asarray(leaf)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(one, state)


def make_mesh(num_devices: int) -> Mesh:
    """A 1-D mesh over the first `num_devices` local devices (0 = all); with several
    processes (`jax.distributed`), over every process's devices (`num_devices` 0)."""
    if jax.process_count() > 1:
        if num_devices:
            raise ValueError(f"num_devices: {num_devices}; with {jax.process_count()} "
                             "processes the mesh spans all devices (use 0)")
        return Mesh(np.asarray(jax.devices()), (AXIS,))
    devices = jax.local_devices()
    if num_devices:
        devices = devices[:num_devices]
    return Mesh(np.asarray(devices), (AXIS,))
