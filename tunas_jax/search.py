"""`run_search(config, workdir)`: the TuNAS one-shot search loop, resumable.

    tunas-jax search --config experiments/search/micro_digits.py --workdir W

What it does: validates the config; trains the latency regressor when its
workdir holds none (`tunas_jax.cost_model_training`); builds the supernet,
the controller and the data; restores the newest checkpoint of W if any;
runs the jitted step (`tunas_jax.search_step`) with a progress bar, metrics
(`W/metrics.jsonl`, TensorBoard) and checkpoints every N steps; and writes:
- `W/architecture.json`: the argmax architecture (foundation format) with
  `target_latency_ms`, `predicted_latency_ms` and the simulated
  `simulated_latency_ms` (measured, for `host_cpu`), all three in the config's
  `latency_metric` (named in the file, see `cost_models.latency_metric`), plus
  `simulated_end_to_end_latency_ms`, `energy_mj`, `params`, `macs` on the
  (first) target, and every target's latency, ratio and the combined ratio
  (`latency_ms_by_target`, ...: `tunas_jax.search_targets`);
- `W/search_summary.json`: the 5 most probable distinct networks under the
  final controller (indices, probability, predicted and simulated latency).

Several hardware targets at once (`config.targets` of several, with
`config.target_latencies_ms` and `config.multi_hardware_metric`): one regressor
per target, all evaluated in the one jitted step; see `tunas_jax.search_targets`.

A search killed at any point and rerun with the same command continues from
its last checkpoint and ends with the same architecture and controller logits.

Devices: one architecture per device, gradients and rewards averaged over a
`Mesh` of the local devices (`config.num_devices`, 0 = all). Multi-host
(`jax.distributed`, `tunas_jax.distributed`): the mesh spans every process's
devices (`num_devices` must be 0), each process reads and preprocesses only its
rows of each global batch (`config.batch_size` stays the global batch), process 0
writes config.json, the cost model, metrics and the outputs (the others wait for
the cost model at a barrier), and orbax writes each checkpoint once into the
shared workdir. Same global batch and seed, same search: 2 CPU processes end
as one process with two devices (tests/test_search.py).

Compilation: the persistent compilation cache (`config.compilation_cache_dir`,
default ~/.cache/tunas_jax/jax_cache) lets a rerun or a resume skip the
compile of the supernet step. With op warmup the step has two programs
(`search_step.make_step`): the warm one compiles at the first step, the plain
one at the first step after the warmup (`timing_s.first_plain_step_s`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import ml_collections
import numpy as np

import controllers
import supernet
from cost_models import check_latency_metric
from cost_models.interface import RegressorCostModel, Workload
from cost_models.regressor import load_cost_model, read_metadata
from search_spaces import Architecture, SearchSpace, get_space, read_json, write_json_atomic
from tasks import get_task, task_names
from tunas_jax import distributed, search_step, train
from tunas_jax.checkpointing import SearchCheckpointer, make_workdir
from tunas_jax.config_defaults import search_defaults
from tunas_jax.config_files import load_config
from tunas_jax.errors import UsageError
from tunas_jax.metrics_logging import MetricsLogger
from tunas_jax.progress import progress
from tunas_jax.search_targets import (
    cost_model_configs,
    ensure_cost_models,
    latency_costs,
    multi_hardware_metric,
    reference_costs,
    search_targets,
    target_latencies_ms,
)

ARCHITECTURE_FILE = "architecture.json"
CONFIG_FILE = "config.json"
SUMMARY_FILE = "search_summary.json"
OPTIMIZERS = ("rmsprop", "momentum", "adam")
TOP_K = 5


# ---- config ------------------------------------------------------------------------
def load_search_config(path: str | os.PathLike, overrides: Mapping[str, str] | None = None
                       ) -> ml_collections.ConfigDict:
    """The config file's `get_config()` with `field=value` / `a.b=value` overrides, validated."""
    config = load_config(path, overrides)
    validate_config(config)
    return config


def _check_keys(config: ml_collections.ConfigDict, reference: ml_collections.ConfigDict,
                prefix: str = "") -> None:
    for key in config:
        name = prefix + key
        if key not in reference:
            raise UsageError(f"config.{name}: unknown field; known: {sorted(reference)} "
                             "(see tunas_jax/config_defaults.py)")
        if isinstance(reference[key], ml_collections.ConfigDict):
            if not isinstance(config[key], ml_collections.ConfigDict):
                raise UsageError(f"config.{name}: must be a section like the defaults'")
            _check_keys(config[key], reference[key], name + ".")


def validate_config(config: ml_collections.ConfigDict) -> None:
    """One clear error (naming the field and the fix) for the first problem found."""
    _check_keys(config, search_defaults())
    get_space(config.space)  # SpecError naming unknown spaces
    if config.task not in task_names():
        raise UsageError(f"config.task: {config.task!r} is unknown; use one of {task_names()}")
    search_targets(config)
    multi_hardware_metric(config)
    cost_model_configs(config)
    check_latency_metric(config.latency_metric, "config.latency_metric")
    for t0 in target_latencies_ms(config):
        controllers.make_reward_fn(config.reward, target_latency_ms=t0, beta=config.reward_beta)
    for name in ("steps", "batch_size"):
        if int(config[name]) <= 0:
            raise UsageError(f"config.{name}: {config[name]} must be positive")
    if int(config.max_branches_per_layer) < 0:
        raise UsageError("config.max_branches_per_layer: must be >= 0 (0 = exact branches "
                         "everywhere)")
    if int(config.valid_batch_size) < 0:
        raise UsageError("config.valid_batch_size: must be >= 0 (0 = 4 x batch_size)")
    if config.optimizer.name not in OPTIMIZERS:
        raise UsageError(f"config.optimizer.name: {config.optimizer.name!r}; use one of "
                         f"{OPTIMIZERS}")
    try:
        search_step.weight_decay_scope(config.optimizer)
    except ValueError as error:  # its message names the field and the choices
        raise UsageError(f"config.{error}") from None
    for name in ("log_every", "checkpoint_every"):
        if int(config[name]) <= 0:
            raise UsageError(f"config.{name}: {config[name]} must be a positive step count")
    controller_config(config)  # SpecError naming bad controller fields
    num = _num_devices(config)
    per_device = int(config.architectures_per_device)
    if per_device < 1:
        raise UsageError(f"config.architectures_per_device: {per_device} must be >= 1")
    for name in ("batch_size", "valid_batch_size"):
        value = int(config[name]) or 4 * int(config.batch_size)
        if value % (num * per_device):
            raise UsageError(
                f"config.{name}: {value} is not divisible by the {num} devices x "
                f"{per_device} architectures_per_device; pick a multiple of "
                f"{num * per_device} or change config.architectures_per_device")


def _num_devices(config: ml_collections.ConfigDict) -> int:
    if jax.process_count() > 1:
        if int(config.num_devices):
            raise UsageError(f"config.num_devices: {config.num_devices}, but with "
                             f"{jax.process_count()} processes the mesh spans every "
                             "process's devices; use 0")
        return jax.device_count()
    available = jax.local_device_count()
    num = int(config.num_devices) or available
    if num > available:
        raise UsageError(f"config.num_devices: {num} but only {available} local devices")
    return num


def make_plan(config: ml_collections.ConfigDict, input_channels: int = 3
              ) -> supernet.SupernetPlan:
    """The supernet plan of `config`'s space and `max_branches_per_layer`."""
    limit = int(config.max_branches_per_layer)
    return supernet.make_plan(get_space(config.space), limit or None, input_channels)


make_task = train.make_task


def controller_config(config: ml_collections.ConfigDict) -> controllers.ReinforceConfig:
    values = dict(config.controller.to_dict())
    values.update(total_steps=int(config.steps), batch_size=int(config.batch_size))
    return controllers.ReinforceConfig.from_mapping(values)


def abstract_state(config: ml_collections.ConfigDict, num_classes: int,
                   input_channels: int) -> search_step.SearchState:
    """The shapes and structure of `config`'s search state (nothing computed)."""
    space = get_space(config.space)
    plan = make_plan(config, input_channels)
    optimizer, _ = search_step.make_optimizer(config.optimizer, int(config.steps),
                                              int(config.batch_size))
    return jax.eval_shape(lambda: search_step.init_state(
        space, plan, make_task(config, num_classes), optimizer, controller_config(config),
        int(config.seed)))


def restore_search_state(workdir: str, num_classes: int, input_channels: int
                         ) -> tuple[ml_collections.ConfigDict, search_step.SearchState, int]:
    """(config, state, step) of the newest checkpoint of a search workdir, restored by
    structure: the state template is rebuilt from the search's own W/config.json."""
    config_path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(config_path):
        raise UsageError(f"{workdir}: no {CONFIG_FILE}; not a `tunas-jax search` workdir (or "
                         "one from before searches recorded their config: rerun that search)")
    config = ml_collections.ConfigDict(read_json(config_path, "search config"))
    checkpointer = SearchCheckpointer(workdir, read_only=True)
    try:
        step = checkpointer.latest_step()
        if step is None:
            raise UsageError(f"{workdir}: no checkpoint in {checkpointer.directory}")
        template = abstract_state(config, num_classes, input_channels)
        state, _ = checkpointer.restore(step, template)
    finally:
        checkpointer.close()
    return config, state, step


# ---- outputs ------------------------------------------------------------------------------
def _group_paths(log_p: list[np.ndarray], space: SearchSpace, group: tuple[int, ...]
                 ) -> list[tuple[float, dict[int, int]]]:
    """Every distinct active path of one decision group with its log-probability."""
    grid = np.stack(np.meshgrid(*[np.arange(len(log_p[d])) for d in group], indexing="ij"),
                    -1).reshape(-1, len(group))
    full = np.zeros((len(grid), space.num_decisions), np.int64)
    full[:, group] = grid
    active = np.asarray(space.active_mask(full))[:, group]
    paths: dict[tuple[int, ...], float] = {}
    for row, mask in zip(grid, active, strict=True):
        path = tuple(int(i) if a else -1 for i, a in zip(row, mask, strict=True))
        paths[path] = sum(float(log_p[d][i]) for d, i in zip(group, path, strict=True)
                          if i >= 0)
    return sorted(((lp, {d: max(i, 0) for d, i in zip(group, path, strict=True)})
                   for path, lp in paths.items()), key=lambda entry: -entry[0])


def top_networks(logits: np.ndarray, space: SearchSpace, k: int = TOP_K
                 ) -> list[tuple[list[int], float]]:
    """The k most probable distinct networks: (representative indices, probability).

    A network's probability counts its active decisions only: a skipped block's
    kernel, never trained or rewarded, does not split it into copies. Exact: the
    controller's distribution factors over `space.decision_groups` (a block's op
    with the decisions it may switch off), so each group's active paths are
    enumerated with their probabilities and a beam over the independent groups
    keeps the top paths (inactive decisions reported as index 0). Paths that
    decode to one network (two group sizes realized as one group count) are
    merged, their probabilities summed.
    """
    log_p = []
    for d, n in enumerate(space.num_choices):
        row = logits[d, :n].astype(np.float64)
        log_p.append(row - row.max() - np.log(np.sum(np.exp(row - row.max()))))
    width = 8 * k  # spare paths: merging may lift a network above unmerged ones
    beams: list[tuple[float, dict[int, int]]] = [(0.0, {})]
    for group in space.decision_groups:
        options = _group_paths(log_p, space, group)[:width]
        beams = sorted(((lp + glp, {**chosen, **gchosen}) for lp, chosen in beams
                        for glp, gchosen in options), key=lambda entry: -entry[0])[:width]
    networks: dict[Any, list] = {}
    for lp, chosen in beams:
        idx = [chosen[d] for d in range(space.num_decisions)]
        spec = space.decode(idx)
        if spec in networks:
            networks[spec][1] += float(np.exp(lp))
        else:
            networks[spec] = [idx, float(np.exp(lp))]
    ranked = sorted(networks.values(), key=lambda entry: -entry[1])[:k]
    return [(idx, p) for idx, p in ranked]


def write_outputs(config: ml_collections.ConfigDict, workdir: str, space: SearchSpace,
                  state: search_step.SearchState, predictors: dict[str, Any],
                  extra: dict[str, Any] | None = None, write: bool = True) -> dict[str, Any]:
    """`predictors`: target -> its regressor, every target of the search. `write`
    False: the summary only (a process other than the one that writes)."""
    # Simulate at the resolution and class count the cost models were trained for (the
    # deployment's), not the search's possibly reduced image size.
    targets = search_targets(config)
    meta = predictors[targets[0]].metadata
    task = (get_task(**meta["task"]) if meta.get("task") else make_task(
        config, int(meta.get("num_classes") or space.default_num_classes)))
    workload = Workload(int(meta.get("image_size") or space.default_image_size), task)
    logits = np.asarray(state.controller.logits)
    best = [int(i) for i in np.asarray(controllers.argmax_architecture(state.controller))]
    top = top_networks(logits, space)
    candidates = np.asarray([best] + [idx for idx, _ in top], np.int32)
    offsets = {t: p.metric_offset_ms(config.latency_metric) for t, p in predictors.items()}
    per_item = latency_costs(config, reference_costs(space, workload, candidates, targets,
                                                     predictors),
                             RegressorCostModel(predictors).cost(candidates, targets), offsets)
    costs = {**per_item[0], "workload": workload.to_json()}
    target = targets[0]  # the scalar fields' target (the only one, or the first)
    name = (f"tunas_{space.name}_{target}" if len(targets) == 1 else
            f"tunas_{space.name}_multi_{costs['multi_hardware_metric']}")
    arch = Architecture.from_indices(space, best, name=name)
    if write:
        arch.save(os.path.join(workdir, ARCHITECTURE_FILE), extra={"target": target, **costs})
    keep = ("predicted_latency_ms", "simulated_latency_ms", "latency_ms_by_target",
            "latency_ratio_by_target", "combined_latency_ratio")
    summary = {
        "space": space.name, "target": target, "targets": list(targets),
        "latency_metric": config.latency_metric,
        "target_latency_ms": costs["target_latency_ms"],
        "multi_hardware_metric": costs["multi_hardware_metric"],
        "steps": int(state.step), "argmax": {"indices": best, **costs},
        "top_architectures": [
            {"indices": idx, "indices_string": ":".join(map(str, idx)), "probability": p,
             **{k: per_item[i + 1][k] for k in keep}}
            for i, (idx, p) in enumerate(top)],
        **(extra or {}),
    }
    if write:
        write_json_atomic(os.path.join(workdir, SUMMARY_FILE), summary)
    return summary


# ---- the loop ---------------------------------------------------------------------------
def enable_compilation_cache(setting: str) -> str | None:
    if setting == "none":
        return None
    path = setting or os.path.join(os.path.expanduser("~"), ".cache", "tunas_jax", "jax_cache")
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    return path


def run_search(config: ml_collections.ConfigDict, workdir: str | os.PathLike, *,
               log: Callable[[str], Any] = print, stop_at_step: int | None = None,
               trace_counter: list | None = None) -> dict[str, Any]:
    """Run (or resume) the search of `config` in `workdir`; returns the summary dict.

    `stop_at_step` ends the run after that step WITHOUT a checkpoint or outputs,
    as if killed (used to test resuming); the summary is then {'stopped_at': step}.
    """
    from tunas_jax.data import create_search_data  # deferred: TFDS import is slow

    validate_config(config)
    workdir = make_workdir(workdir)
    enable_compilation_cache(config.compilation_cache_dir)
    primary = distributed.is_primary()  # the one process that writes files
    if primary:
        write_json_atomic(os.path.join(workdir, CONFIG_FILE), config.to_dict())
    times: dict[str, float] = {}
    space = get_space(config.space)
    batch_size = int(config.batch_size)
    valid_batch_size = int(config.valid_batch_size) or 4 * batch_size
    # The data first: the task (the cost models' head) needs the dataset's classes.
    data = create_search_data(config.dataset, batch_size=batch_size,
                              valid_batch_size=valid_batch_size, seed=int(config.seed),
                              num_threads=int(config.data_threads),
                              shard=(jax.process_index(), jax.process_count()))
    task = make_task(config, data.num_classes)
    start = time.perf_counter()
    # The primary builds missing cost models; the others then load them.
    cm_dirs = distributed.primary_first(
        "search cost models", lambda: ensure_cost_models(config, workdir, log, task), workdir)
    # The in-jit predictors of the reward (one per target), through the cost interface.
    targets = search_targets(config)
    costs = RegressorCostModel({t: load_cost_model(cm_dirs[t], space, t) for t in targets})
    predictors = {t: costs.in_jit(t) for t in targets}
    _check_same_workload(predictors)
    times["cost_model_s"] = time.perf_counter() - start

    mesh = search_step.make_mesh(int(config.num_devices))  # validated: 0 = all
    plan = make_plan(config, data.image_shape[-1])
    optimizer, lr_schedule = search_step.make_optimizer(config.optimizer, int(config.steps),
                                                        batch_size)
    state = search_step.init_state(space, plan, task, optimizer, controller_config(config),
                                   int(config.seed))
    checkpointer = SearchCheckpointer(workdir, int(config.keep_checkpoints))
    resume_step, state, saved = checkpointer.restore_newest_readable(state, log)
    if resume_step:
        data.set_state(saved["iterators"])
        log(f"resuming from step {resume_step} ({checkpointer.directory})")
    state = search_step.replicate(state, mesh)
    reward_params = search_step.RewardParams.create(
        target_latencies_ms(config), float(config.reward_beta),
        [p.metric_offset_ms(config.latency_metric) for p in predictors.values()])
    step_fn = search_step.make_step(space, plan, task, optimizer, lr_schedule,
                                    tuple(predictors.values()), config.reward, reward_params,
                                    float(config.optimizer.label_smoothing), mesh, trace_counter,
                                    weight_decay=search_step.masked_weight_decay(
                                        config.optimizer),
                                    architectures_per_device=int(
                                        config.architectures_per_device),
                                    multi_hardware_metric=multi_hardware_metric(config))
    op_warmup_steps = state.controller.spec.config.schedule.op_warmup_steps
    logger = MetricsLogger(workdir, space, resume_step) if primary else _NoMetrics()
    total = int(config.steps)
    end = total if stop_at_step is None else min(total, stop_at_step)
    step = resume_step
    step_start = time.perf_counter()
    try:
        with progress(total=total, initial=resume_step, desc="search", unit="step",
                      disable=None if primary else True) as bar:
            while step < end:
                plain_start = time.perf_counter()
                train_batch, valid_batch = next(data.train), next(data.valid)
                if step == resume_step and step < op_warmup_steps < end:
                    # This run reaches the plain program: compile it beside the warm one.
                    step_fn.compile_plain_ahead(state, train_batch, valid_batch)
                state, metrics = step_fn(state, train_batch, valid_batch)
                step += 1
                if step == resume_step + 1:
                    jax.block_until_ready(state)
                    times["first_step_s"] = time.perf_counter() - step_start  # incl. compile
                    step_start = time.perf_counter()
                elif step == op_warmup_steps + 1:  # the plain program's compile + 1 step
                    jax.block_until_ready(state)
                    times["first_plain_step_s"] = time.perf_counter() - plain_start
                if step % int(config.log_every) == 0 or step == total:
                    scalars = jax.device_get(metrics)
                    logger.log(step, scalars, controllers.probabilities(state.controller.logits))
                    bar.set_postfix(loss=f"{scalars['loss']:.3f}",
                                    q=f"{scalars['valid_quality']:.2f}",
                                    lat=f"{scalars['predicted_latency_ms']:.4f}",
                                    r=f"{scalars['latency_ratio']:.3f}")
                if step % int(config.checkpoint_every) == 0 or step == total:
                    checkpointer.save(step, state, data.get_state())
                bar.update(1)
        jax.block_until_ready(state)
        times["steps_s"] = time.perf_counter() - step_start
    finally:
        logger.close()
        checkpointer.close()
    if step < total:
        return {"stopped_at": step}
    summary = write_outputs(config, workdir, space, state, predictors,
                            extra={"timing_s": times}, write=primary)
    summary["final_logits"] = np.asarray(state.controller.logits).tolist()
    heldout = {t: read_metadata(cm_dirs[t]).get("heldout") for t in targets}
    summary["cost_model_metrics"] = heldout[targets[0]] if len(targets) == 1 else heldout
    return summary


class _NoMetrics:
    """The metrics logger of a process that does not write (not process 0)."""

    def log(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


def _check_same_workload(predictors: Mapping[str, Any]) -> None:
    """The targets' regressors must cost the same network (resolution and classes): the
    outputs simulate every target at one workload."""
    workloads = {t: (p.metadata.get("image_size"), p.metadata.get("num_classes"))
                 for t, p in predictors.items()}
    if len(set(workloads.values())) > 1:
        raise UsageError(f"config.cost_model: the targets' regressors were trained for "
                         f"different (image_size, num_classes) {workloads}; train them all "
                         "for one workload")
