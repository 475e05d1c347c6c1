"""The optimizer, learning-rate schedule and jitted train/eval steps of standalone training.

The model is split once (`nnx.split`) into a graph definition and three
states: `params` (nnx.Param), `batch_stats` (nnx.BatchStat: batch-norm
running averages) and the rest (dropout's RNG stream, constant here). A train
state is a plain dict pytree

    {"step": int32 [], "params", "batch_stats", "opt_state"[, "ema_params"]}

that one jitted function maps to the next state: it merges the training-mode
graph (batch statistics, running averages updated, dropout on), computes the
task's loss (`tasks.Task.loss`: label-smoothed cross-entropy for
classification), applies the optax update and returns the updated running
averages. Evaluation merges the eval-mode graph (running
averages, no dropout) with the EMA weights when enabled. Dropout's key is
`fold_in(seed, step)`, so a resumed run draws the same masks as an
uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from supernet.standalone import StandaloneModel
from tunas_jax.errors import UsageError

OPTIMIZERS = ("rmsprop", "sgd", "adam")
SCHEDULES = ("cosine", "exponential")
State = dict[str, Any]


def check_config(config: ml_collections.ConfigDict) -> None:
    """One clear UsageError per bad recipe field, before any data is read."""
    if config.optimizer not in OPTIMIZERS:
        raise UsageError(f"config.optimizer: {config.optimizer!r} is unknown; use one of "
                         f"{OPTIMIZERS}")
    if config.schedule not in SCHEDULES:
        raise UsageError(f"config.schedule: {config.schedule!r} is unknown; use one of "
                         f"{SCHEDULES}")
    for field in ("batch_size", "eval_batch_size", "lr_batch_base", "eval_every_epochs",
                  "log_every_steps", "keep_checkpoints"):
        if config[field] <= 0:
            raise UsageError(f"config.{field}: {config[field]} must be positive")
    for field in ("num_epochs", "num_steps", "checkpoint_every_steps", "stop_after_steps",
                  "warmup_epochs", "weight_decay", "learning_rate"):
        if config[field] < 0:
            raise UsageError(f"config.{field}: {config[field]} must be >= 0")
    if config.num_steps == 0 and config.num_epochs == 0:
        raise UsageError("config.num_epochs: 0 with config.num_steps 0; train for something")
    if not 0.0 <= config.label_smoothing < 1.0:
        raise UsageError(f"config.label_smoothing: {config.label_smoothing} must be in [0, 1)")
    if not 0.0 <= config.ema_decay < 1.0:
        raise UsageError(f"config.ema_decay: {config.ema_decay} must be in [0, 1) (0 = off)")
    if not 0.0 <= config.dropout_rate < 1.0:
        raise UsageError(f"config.dropout_rate: {config.dropout_rate} must be in [0, 1)")


def make_schedule(config: ml_collections.ConfigDict, steps_per_epoch: int,
                  num_steps: int) -> Callable[[jax.Array], jax.Array]:
    """Learning rate of the update at step s (0-based): linear warmup, then cosine/exponential.

    The peak is `learning_rate * batch_size / lr_batch_base`. The exponential
    schedule is the published MobileNetEdgeTPU one: peak * decay_rate **
    floor(s / (decay_epochs * steps_per_epoch)), counted from step 0.
    """
    peak = config.learning_rate * config.batch_size / config.lr_batch_base
    warmup = min(round(config.warmup_epochs * steps_per_epoch), max(num_steps - 1, 0))
    decay_steps = max(1, round(config.decay_epochs * steps_per_epoch))
    cosine = config.schedule == "cosine"
    decay_rate = config.decay_rate

    def schedule(step: jax.Array) -> jax.Array:
        step = jnp.asarray(step, jnp.float32)
        # (s + 1) / warmup: the first update already moves the weights.
        warm = peak * (step + 1) / max(warmup, 1)
        if cosine:
            t = jnp.clip((step - warmup) / max(num_steps - warmup, 1), 0.0, 1.0)
            after = 0.5 * peak * (1.0 + jnp.cos(math.pi * t))
        else:
            after = peak * decay_rate ** jnp.floor(step / decay_steps)
        return jnp.where(step < warmup, warm, after)

    return schedule


def _kernel_mask(params: Any) -> Any:
    """True on conv/dense kernels: batch-norm scale/bias and the logits bias are not decayed."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: any(getattr(k, "key", None) == "kernel" for k in path), params)


def make_optimizer(config: ml_collections.ConfigDict,
                   schedule: Callable[[jax.Array], jax.Array]) -> optax.GradientTransformation:
    """The config's optimizer with coupled L2 on the kernels (`weight_decay * w` in the grad)."""
    if config.optimizer == "rmsprop":
        # TF1 RMSProp as the TPU recipes ran it: mean square starts at 1, eps inside the sqrt.
        opt = optax.rmsprop(schedule, decay=config.rmsprop_decay, eps=config.epsilon,
                            initial_scale=1.0, eps_in_sqrt=True,
                            momentum=config.momentum or None)
    elif config.optimizer == "sgd":
        opt = optax.sgd(schedule, momentum=config.momentum or None, nesterov=config.nesterov)
    elif config.optimizer == "adam":
        opt = optax.adam(schedule, b1=config.momentum, eps=config.epsilon)
    else:
        raise UsageError(f"config.optimizer: {config.optimizer!r} is unknown; use one of "
                         f"{OPTIMIZERS}")
    if config.weight_decay:
        return optax.chain(optax.add_decayed_weights(config.weight_decay, _kernel_mask), opt)
    return opt


@dataclasses.dataclass
class StepFunctions:
    """The split model and the jitted functions over its state."""

    train_graphdef: Any
    eval_graphdef: Any
    rest: Any  # non-trainable, non-statistics state (dropout's RNG stream)
    tx: optax.GradientTransformation
    schedule: Callable[[jax.Array], jax.Array]
    use_ema: bool
    train_step: Callable[[State, dict[str, jax.Array]], tuple[State, dict[str, jax.Array]]]
    eval_step: Callable[..., dict[str, jax.Array]]
    task: Any  # the model's tasks.Task: its eval sums and metrics

    def eval_weights(self, state: State) -> tuple[Any, Any]:
        """(params, batch_stats) to evaluate: the EMA weights when enabled."""
        return state["ema_params" if self.use_ema else "params"], state["batch_stats"]


def split_model(model: StandaloneModel) -> tuple[Any, Any, Any, Any, Any]:
    """(train_graphdef, eval_graphdef, params, batch_stats, rest); the model is left training."""
    model.eval()
    eval_graphdef, *_ = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
    model.train()
    train_graphdef, params, batch_stats, rest = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
    return train_graphdef, eval_graphdef, params, batch_stats, rest


def make_step_functions(model: StandaloneModel, config: ml_collections.ConfigDict,
                        steps_per_epoch: int, num_steps: int) -> tuple[StepFunctions, State]:
    """The jitted steps for `model` and its initial train state."""
    train_graphdef, eval_graphdef, params, batch_stats, rest = split_model(model)
    schedule = make_schedule(config, steps_per_epoch, num_steps)
    tx = make_optimizer(config, schedule)
    use_ema = config.ema_decay > 0
    task = model.task
    label_smoothing = float(config.label_smoothing)
    ema_decay = float(config.ema_decay)
    dropout_key = jax.random.key(config.seed + 1)

    state: State = {"step": jnp.zeros((), jnp.int32), "params": params,
                    "batch_stats": batch_stats, "opt_state": tx.init(params)}
    if use_ema:
        state["ema_params"] = jax.tree.map(jnp.copy, params)

    def loss_fn(params, batch_stats, batch, key):
        # Fresh Variables at this trace level: batch norm writes its running averages
        # into them, and nnx refuses writes into Variables created outside the trace.
        batch_stats = jax.tree.map(lambda x: x, batch_stats)
        model = nnx.merge(train_graphdef, params, batch_stats, rest)
        # The explicit key makes dropout a function of (seed, step), not of a stateful stream.
        output, _ = model(batch[task.input_key], rngs=key)
        loss, metrics = task.loss(output, batch, label_smoothing=label_smoothing)
        return loss, (metrics, nnx.state(model, nnx.BatchStat))

    @jax.jit
    def train_step(state: State, batch: dict[str, jax.Array]):
        step = state["step"]
        key = jax.random.fold_in(dropout_key, step)
        (loss, (task_metrics, batch_stats)), grads = jax.value_and_grad(
            loss_fn, has_aux=True)(state["params"], state["batch_stats"], batch, key)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        new = {"step": step + 1, "params": params, "batch_stats": batch_stats,
               "opt_state": opt_state}
        if use_ema:
            # TF's ExponentialMovingAverage(num_updates=step) warmup of the decay.
            decay = jnp.minimum(ema_decay, (1.0 + step) / (10.0 + step))
            new["ema_params"] = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p,
                                             state["ema_params"], params)
        metrics = {"loss": loss, **task_metrics, "learning_rate": schedule(step)}
        return new, metrics

    @jax.jit
    def eval_step(params, batch_stats, batch, mask):
        model = nnx.merge(eval_graphdef, params, batch_stats, rest)
        output, _ = model(batch[task.input_key])
        return task.eval_sums(output, batch, mask)

    fns = StepFunctions(train_graphdef, eval_graphdef, rest, tx, schedule, use_ema,
                        train_step, eval_step, task)
    return fns, state


def evaluate(fns: StepFunctions, state: State, eval_data: Any) -> dict[str, float]:
    """The task's metrics over one pass of `eval_data` (padded batches; classification:
    top1 (0-1), mean cross-entropy, num_examples)."""
    params, batch_stats = fns.eval_weights(state)
    sums: dict[str, Any] = {}
    for batch in eval_data:
        mask = batch["mask"]
        inputs = {k: v for k, v in batch.items() if k != "mask"}
        out = jax.device_get(fns.eval_step(params, batch_stats, inputs, mask))
        for key, value in out.items():
            # Arrays too (segmentation's confusion matrix); float64 counts are exact.
            sums[key] = sums.get(key, 0.0) + np.asarray(value, np.float64)
    return fns.task.finish_eval(sums)
