"""Standalone training and evaluation of one architecture: `tunas-jax train` / `evaluate`.

    tunas-jax train --config experiments/train/micro_digits.py \
        --config.architecture=ARCH.json --workdir W
    tunas-jax evaluate --workdir W

`run_training(config, workdir)` trains the standalone nnx model
(`supernet.build_model`) of `config.architecture` (a JSON file or
`preset:<name>`; a released segmentation preset trains with its own head)
from scratch or from a search's supernet weights (`config.init_from`),
evaluating on the eval split every `eval_every_epochs`. Writes into W:
- `run.json` (config, classes, channels, step counts) and `architecture.json`
  (what `evaluate` rebuilds the model from);
- `checkpoints/<step>/` (orbax: the train state + the data iterator position);
  a run killed and restarted with the same command continues bit-exactly;
- `metrics.jsonl` and `tensorboard/` (train loss/accuracy/learning rate every
  `log_every_steps`, `eval/top1` and `eval/loss` at each evaluation);
- `result.json` (atomic): top1 (0-1, eval split), params, macs, the simulated
  `simulated_latency_ms`/`energy_mj` on the first of `config.targets` and
  `predicted_latency_ms` from the learned regressor (null with
  `predicted_latency_reason` when there is none). Both latencies are in
  `config.latency_metric` (named in the file, see `cost_models.latency_metric`);
  `simulated_end_to_end_latency_ms` is the whole inference either way;
  `latency_ms_by_target` has every target's, and for an architecture from a
  multi-hardware search (its JSON names each target's target latency) also
  `latency_ratio_by_target` and the search's `combined_latency_ratio`
  (`multi_hardware_metric`) when the training costs every searched target.
`evaluate_workdir(W)` re-evaluates W's newest checkpoint; `load_trained_model(W)`
gives it as an eval-mode standalone model (what `tunas-jax export` writes).
The jitted steps are in `tunas_jax.train_step`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

import controllers
import supernet
from cost_models import check_latency_metric, get_target, metric_offset_ms
from cost_models.interface import SimulatorCostModel, Workload, check_targets
from search_spaces import Architecture, SpecError, get_preset, read_json, write_json_atomic
from search_spaces import load as load_architecture
from search_spaces.presets import PRESET_SETTINGS
from tasks import Task, describe, get_task
from tunas_jax import train_step
from tunas_jax.checkpointing import SearchCheckpointer, make_workdir
from tunas_jax.config_files import load_config
from tunas_jax.errors import UsageError
from tunas_jax.metrics_logging import MetricsLogger
from tunas_jax.progress import progress

PRESET_PREFIX = "preset:"
RUN_FILE = "run.json"
RESULT_FILE = "result.json"
ARCHITECTURE_FILE = "architecture.json"


# ---- config --------------------------------------------------------------------------
def load_train_config(path: str | os.PathLike, overrides: Mapping[str, str] | None = None
                      ) -> ml_collections.ConfigDict:
    """`get_config()` of a train config with `field=value` / `dataset.field=value` overrides."""
    return load_config(path, overrides)


def check_train_config(config: ml_collections.ConfigDict) -> None:
    """One clear error per bad recipe or cost field, before any data is read."""
    train_step.check_config(config)
    check_targets(config.targets, "config.targets")
    check_latency_metric(config.latency_metric, "config.latency_metric")


def _preset_name(text: str) -> str | None:
    """NAME of a `preset:NAME` architecture setting; None for a file path."""
    return text[len(PRESET_PREFIX):] if text.startswith(PRESET_PREFIX) else None


def _architecture_source(config: ml_collections.ConfigDict) -> str:
    """config.architecture, else the init_from search's architecture.json ('' if none)."""
    text = config.architecture.strip()
    if not text and config.init_from:
        return os.path.join(config.init_from, ARCHITECTURE_FILE)
    return text


def config_architecture(config: ml_collections.ConfigDict) -> Architecture:
    """The architecture to train: config.architecture, else the init_from search's."""
    text = _architecture_source(config)
    if not config.architecture.strip() and config.init_from and not os.path.isfile(text):
        raise UsageError(f"config.init_from={config.init_from!r}: no {ARCHITECTURE_FILE} "
                         "there; is it a finished search workdir? Or set config.architecture")
    if not text:
        raise UsageError("config.architecture: missing; pass --config.architecture=FILE.json "
                         "(an architecture JSON, e.g. a search's architecture.json) or "
                         f"--config.architecture={PRESET_PREFIX}NAME (e.g. "
                         f"{PRESET_PREFIX}mobilenet_edgetpu_v2_s)")
    name = _preset_name(text)
    if name is not None:
        try:
            return Architecture(get_preset(name), name=name)
        except SpecError as err:
            raise SpecError(f"config.architecture: {err}") from None
    try:
        return load_architecture(text)
    except SpecError as err:
        raise SpecError(f"config.architecture: {err}") from None


# ---- data ----------------------------------------------------------------------------
def _train_data(config: ml_collections.ConfigDict) -> dict[str, Any]:
    from tunas_jax.data import make_iterator, make_preprocess, sources

    ds = config.dataset
    source = sources.load_source(ds, ds.train_split, "train_split")
    if ds.get("in_memory", True):
        source = sources.maybe_in_memory(source)
    preprocess = make_preprocess(ds, source)
    steps_per_epoch = len(source) // config.batch_size
    if steps_per_epoch == 0:
        raise UsageError(f"config.batch_size: {config.batch_size} exceeds the "
                         f"{len(source)} examples of {ds.train_split!r}")
    iterator = make_iterator(source, config.batch_size, config.seed, True,
                             preprocess=preprocess, num_threads=config.num_threads)
    return {"iterator": iterator, "steps_per_epoch": steps_per_epoch,
            "num_classes": sources.num_classes(source),
            "input_channels": int(source.dataset_info.features["image"].shape[-1]),
            "num_examples": len(source)}


def _eval_data(config: ml_collections.ConfigDict) -> Any:
    from tunas_jax.data import create_eval_data

    return create_eval_data(config.dataset, batch_size=config.eval_batch_size,
                            num_threads=config.num_threads)


# ---- init_from: the search's supernet weights -----------------------------------------------
def load_search_params(search_workdir: str, arch: Architecture, num_classes: int,
                       input_channels: int) -> Any:
    """The supernet weights of the newest checkpoint of a `tunas-jax search` workdir.

    The whole search state is restored by structure (its template rebuilt from
    the search's own config.json), then its `params` are taken. The search must
    be of the architecture's space, class count and input channels.
    """
    from tunas_jax import search

    where = f"config.init_from={search_workdir!r}"
    try:
        config, state, _ = search.restore_search_state(os.path.abspath(search_workdir),
                                                       num_classes, input_channels)
    except (UsageError, SpecError) as err:
        raise UsageError(f"{where}: {err}") from None
    except ValueError as err:  # restored shapes differ from this model's
        raise UsageError(f"{where}: its checkpoint is not a supernet with {num_classes} "
                         f"classes and {input_channels} input channels (dataset must match "
                         f"the search's): {err}") from None
    if config.space != arch.space.name:
        raise UsageError(f"{where}: searched space {config.space!r}, the architecture is of "
                         f"{arch.space.name!r}")
    return jax.tree.map(np.asarray, state.params)


# What a released preset's task settings do not decide when it is trained: the class
# count comes from the data, the ignore label and output stage from the config.
_PRESET_SETTINGS_FROM_CONFIG = ("name", "num_classes", "ignore_label", "output_stage")


def _preset_head_settings(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The head a `preset:NAME` architecture is released with (`PRESET_SETTINGS`), {} for
    any other architecture. Without it, `preset:autoseg_edgetpu_xs` would train the
    released backbone under the config's head, a different model than its name says."""
    text = str(config.get("architecture", "") or "").strip()
    name = _preset_name(text)
    if name is None:
        return {}
    task = PRESET_SETTINGS.get(name, {}).get("task")
    if not task:
        return {}
    if task["name"] != config.task:
        raise UsageError(f"config.task: {config.task!r}, but {text} is released as a "
                         f"{task['name']} model; set --config.task={task['name']} (and its "
                         "dataset), or train a classification preset")
    return {k: v for k, v in task.items() if k not in _PRESET_SETTINGS_FROM_CONFIG}


def make_task(config: ml_collections.ConfigDict, num_classes: int) -> Task:
    """The config's task (`config.task`, its settings in the section of that name if the
    config has one, e.g. `config.segmentation`) for a dataset of `num_classes` classes;
    for a released `preset:NAME` with a head of its own, that head (the data's classes
    and the config's ignore label and output stage still apply)."""
    section = config.get(config.task)
    settings = section.to_dict() if isinstance(section, ml_collections.ConfigDict) else {}
    settings.update(_preset_head_settings(config))
    try:
        return get_task(config.task, num_classes=num_classes, **settings)
    except SpecError as err:
        raise UsageError(f"config.{config.task}: {err}") from None


def _build_model(config: ml_collections.ConfigDict, arch: Architecture, num_classes: int,
                 input_channels: int) -> supernet.StandaloneModel:
    return supernet.build_model(arch.spec, make_task(config, num_classes),
                                rngs=nnx.Rngs(config.seed),
                                input_channels=input_channels,
                                dropout_rate=config.dropout_rate)


# ---- costs and result -------------------------------------------------------------------------
def cost_report(config: ml_collections.ConfigDict, arch: Architecture, num_classes: int,
                input_channels: int, log: Callable[[str], Any] = print) -> dict[str, Any]:
    """params, macs, simulated latency/energy on each of config.targets (the first one's
    as the scalar fields), predicted latency (or why not) on the first."""
    targets = check_targets(config.targets, "config.targets")
    target = get_target(targets[0])
    image_size = int(config.dataset.image_size)
    workload = Workload(image_size, make_task(config, num_classes), input_channels)
    network = describe(arch.spec, image_size, workload.task, name=arch.name or "network",
                       input_channels=input_channels)
    by_target = SimulatorCostModel(arch.space, workload).cost([network], targets)
    sim = by_target[target.name]
    metric = config.latency_metric
    outputs = workload.task.output_values(image_size)
    offset = metric_offset_ms(metric, target, image_size, outputs, input_channels)
    latency_ms_by_target = {
        name: float(batch.latency_ms[0]) - metric_offset_ms(
            metric, name, image_size, outputs, input_channels)
        for name, batch in by_target.items()}
    report: dict[str, Any] = {
        **{k: v for k, v in sim.item(0).items() if k != "latency_ms"},
        "latency_metric": metric, "simulated_latency_ms": float(sim.latency_ms[0]) - offset,
        "simulated_end_to_end_latency_ms": float(sim.latency_ms[0]),
        "target": target.name, "image_size": image_size, "num_classes": num_classes,
        # Both names: `simulated_...` for readers from before multi-hardware searches.
        "simulated_latency_ms_by_target": latency_ms_by_target,
        "latency_ms_by_target": latency_ms_by_target,
        **searched_latency_ratios(config, latency_ms_by_target),
        "predicted_latency_ms": None}
    cm_dir = config.cost_model_workdir
    if arch.space is None:
        reason = "the architecture has no search space (a preset or free-standing network)"
    elif not cm_dir:
        reason = "config.cost_model_workdir is not set"
    elif not os.path.isdir(cm_dir):
        reason = f"config.cost_model_workdir {cm_dir!r} does not exist"
    else:
        from cost_models.regressor import load_cost_model

        try:
            predictor = load_cost_model(cm_dir, arch.space, target.name)
            report["predicted_latency_ms"] = float(
                predictor(jnp.asarray([arch.indices], jnp.int32))[0]
                - predictor.metric_offset_ms(metric))
            report["predicted_latency_image_size"] = predictor.metadata.get("image_size")
            return report
        except SpecError as err:
            reason = str(err)
            log(f"predicted latency: none ({reason})")
    report["predicted_latency_reason"] = reason
    return report


def searched_latency_ratios(config: ml_collections.ConfigDict,
                            latency_ms_by_target: dict[str, float]) -> dict[str, Any]:
    """Each target's ratio to the search's target latency and the search's combined ratio,
    for an architecture JSON from a search that names them (`target_latency_ms_by_target`,
    `multi_hardware_metric`); {} when it does not, when it searched another latency
    metric, or when config.targets lacks one of its targets."""
    path = _architecture_source(config)
    if not path or path.startswith(PRESET_PREFIX) or not os.path.isfile(path):
        return {}
    doc = read_json(path, "architecture")
    t0, combine = doc.get("target_latency_ms_by_target"), doc.get("multi_hardware_metric")
    if (not t0 or not combine or doc.get("latency_metric") != config.latency_metric
            or not set(t0) <= set(latency_ms_by_target)):
        return {}
    ratios = {t: latency_ms_by_target[t] / float(ms) for t, ms in t0.items()}
    return {"target_latency_ms_by_target": t0, "latency_ratio_by_target": ratios,
            "multi_hardware_metric": combine, "combined_latency_ratio": float(
                controllers.combine_latency_ratios(list(ratios.values()), combine))}


def eval_record(task: Task, metrics: dict[str, Any]) -> dict[str, Any]:
    """An evaluation as result.json stores it: the task's primary metric as `quality`
    (named by `quality_metric`) and under its own name, the rest as `eval_<name>`
    (classification: top1, eval_loss, num_eval_examples)."""
    primary = task.primary_metric
    return {"quality_metric": primary, "quality": metrics[primary], primary: metrics[primary],
            **{("num_eval_examples" if k == "num_examples" else f"eval_{k}"): v
               for k, v in metrics.items() if k != primary}}


# ---- the loop -----------------------------------------------------------------------------
def _prepare_workdir(workdir: str, arch: Architecture) -> None:
    """Write architecture.json on the first run; refuse a workdir of another architecture."""
    path = os.path.join(workdir, ARCHITECTURE_FILE)
    if os.path.exists(path):
        previous = load_architecture(path)
        if previous.spec != arch.spec:
            raise UsageError(f"--workdir {workdir}: holds a run of another architecture "
                             f"({previous.name}); use a new workdir")
        return
    arch.save(path)


def run_training(config: ml_collections.ConfigDict, workdir: str | os.PathLike, *,
                 log: Callable[[str], Any] = print) -> dict[str, Any]:
    """Train (or resume) `config` in `workdir`; returns the result.json dict.

    With `config.stop_after_steps` the run checkpoints and returns
    {'stopped_at': step} early, as if killed (a preemption drill).
    """
    start = time.perf_counter()
    check_train_config(config)
    arch = config_architecture(config)
    if config.init_from and arch.space is None:
        raise UsageError("config.init_from: needs an architecture of the search's space, not "
                         "a preset")
    workdir = make_workdir(workdir)
    data = _train_data(config)
    num_classes, channels = data["num_classes"], data["input_channels"]
    steps_per_epoch = data["steps_per_epoch"]
    num_steps = config.num_steps or config.num_epochs * steps_per_epoch
    eval_every = max(1, round(config.eval_every_epochs * steps_per_epoch))
    _prepare_workdir(workdir, arch)
    run_info = {"config": config.to_dict(), "num_classes": num_classes,
                "input_channels": channels, "steps_per_epoch": steps_per_epoch,
                "num_steps": num_steps, "num_train_examples": data["num_examples"]}
    write_json_atomic(os.path.join(workdir, RUN_FILE), run_info)

    checkpointer = SearchCheckpointer(workdir, config.keep_checkpoints)
    step = checkpointer.latest_step() or 0
    model = _build_model(config, arch, num_classes, channels)
    # On resume the checkpoint holds the weights: the search workdir is not read again.
    if config.init_from and not step:
        params = load_search_params(config.init_from, arch, num_classes, channels)
        supernet.inherit(model, arch.space, supernet.make_plan(arch.space), params,
                         arch.indices)
        log(f"initialized from the supernet of {config.init_from}")
    num_params = supernet.count_params(model)
    fns, state = train_step.make_step_functions(model, config, steps_per_epoch, num_steps)
    del model
    if step:
        step, state, saved = checkpointer.restore_newest_readable(state, log)
        data["iterator"].set_state(saved["iterators"])
        log(f"resuming from step {step} of {num_steps} ({checkpointer.directory})")
    eval_data = _eval_data(config)
    # The logger reads the space only for controller probabilities, which training has none of.
    logger = MetricsLogger(workdir, arch.space, step)  # type: ignore[arg-type]
    end = min(num_steps, config.stop_after_steps) if config.stop_after_steps else num_steps
    last_eval: dict[str, float] | None = None
    pending: list[dict[str, Any]] = []
    try:
        with progress(total=num_steps, initial=step, desc="train", unit="step") as bar:
            while step < end:
                batch = next(data["iterator"])
                state, metrics = fns.train_step(state, batch)
                step += 1
                pending.append(metrics)
                bar.update(1)
                if step % config.log_every_steps == 0 or step == num_steps:
                    means = {k: float(np.mean([m[k] for m in jax.device_get(pending)]))
                             for k in pending[0]}
                    pending = []
                    logger.log(step, {f"train/{k}": v for k, v in means.items()}
                               | {"epoch": step / steps_per_epoch})
                    bar.set_postfix({k: f"{v:.3f}" for k, v in means.items()
                                     if k != "learning_rate"})
                evaluate_now = step % eval_every == 0 or step == num_steps
                if evaluate_now:
                    last_eval = train_step.evaluate(fns, state, eval_data)
                    logger.log(step, {f"eval/{k}": v for k, v in last_eval.items()
                                      if k != "num_examples"}
                               | {"epoch": step / steps_per_epoch})
                    log(f"step {step}/{num_steps} (epoch {step / steps_per_epoch:.1f}): "
                        f"eval {fns.task.primary_metric} "
                        f"{last_eval[fns.task.primary_metric]:.4f}")
                periodic = config.checkpoint_every_steps and \
                    step % config.checkpoint_every_steps == 0
                if evaluate_now or periodic or step == end:
                    checkpointer.save(step, state, data["iterator"].get_state())
    finally:
        logger.close()
        checkpointer.close()
    if step < num_steps:
        return {"stopped_at": step}
    if last_eval is None:  # resumed after the final step: evaluate the restored state
        last_eval = train_step.evaluate(fns, state, eval_data)
    result = {
        **eval_record(fns.task, last_eval),
        "eval_split": config.dataset.eval_split,
        "weights": "ema" if fns.use_ema else "raw",
        **cost_report(config, arch, num_classes, channels, log),
        "trainable_params": num_params,
        "architecture": {"name": arch.name, "space": arch.space and arch.space.name,
                         "indices": list(arch.indices) if arch.indices else None,
                         "indices_string": arch.indices_string},
        "dataset": config.dataset.name, "steps": step, "epochs": step / steps_per_epoch,
        "init_from": config.init_from or None,
        "wall_time_s": round(time.perf_counter() - start, 2),
    }
    write_json_atomic(os.path.join(workdir, RESULT_FILE), result)
    return result


# ---- evaluate / restore -------------------------------------------------------------------
@dataclasses.dataclass
class TrainedModel:
    """A `tunas-jax train` workdir's newest checkpoint as an eval-mode standalone model."""

    model: supernet.StandaloneModel  # eval mode: BN running averages, no dropout
    config: ml_collections.ConfigDict
    architecture: Architecture
    run_info: dict[str, Any]
    step: int
    weights: str  # 'ema' or 'raw': which weights the run evaluates


def _restore_workdir(workdir: str | os.PathLike,
                     output_stage: str | None = None) -> tuple[Any, ...]:
    """(config, run_info, arch, step functions, restored train state, step) of a workdir;
    `output_stage` replaces a segmentation run's."""
    workdir = os.path.abspath(os.fspath(workdir))
    run_path = os.path.join(workdir, RUN_FILE)
    if not os.path.isfile(run_path):
        raise UsageError(f"--workdir {workdir}: no {RUN_FILE}; not a `tunas-jax train` workdir")
    with open(run_path) as f:
        run_info = json.load(f)
    config = ml_collections.ConfigDict(run_info["config"])
    if output_stage is not None:
        if config.task != "segmentation":
            raise UsageError(f"--output-stage: the run in {workdir} is {config.task!r}; "
                             "only segmentation has an output stage (drop the option)")
        config.segmentation.output_stage = output_stage
    arch = load_architecture(os.path.join(workdir, ARCHITECTURE_FILE))
    model = _build_model(config, arch, run_info["num_classes"], run_info["input_channels"])
    fns, state = train_step.make_step_functions(model, config, run_info["steps_per_epoch"],
                                                run_info["num_steps"])
    checkpointer = SearchCheckpointer(workdir, config.keep_checkpoints)
    try:
        step = checkpointer.latest_step()
        if step is None:
            raise UsageError(f"--workdir {workdir}: no checkpoint in {checkpointer.directory}")
        state, _ = checkpointer.restore(step, state)
    finally:
        checkpointer.close()
    return config, run_info, arch, fns, state, step


def load_trained_model(workdir: str | os.PathLike) -> TrainedModel:
    """The newest checkpoint of a `tunas-jax train` workdir as the model `evaluate` scores
    (EMA weights when the run used them), in eval mode."""
    config, run_info, arch, fns, state, step = _restore_workdir(workdir)
    params, batch_stats = fns.eval_weights(state)
    model = nnx.merge(fns.eval_graphdef, params, batch_stats, fns.rest)
    return TrainedModel(model, config, arch, run_info, step, "ema" if fns.use_ema else "raw")


def evaluate_workdir(workdir: str | os.PathLike,
                     output_stage: str | None = None) -> dict[str, Any]:
    """Re-evaluate the newest checkpoint of a `tunas-jax train` workdir on its eval split;
    a segmentation run with `output_stage` ('exact' | 'approximate') instead of its own,
    which measures what the approximate stage costs in mIoU on one trained model."""
    config, _, _, fns, state, step = _restore_workdir(workdir, output_stage)
    metrics = train_step.evaluate(fns, state, _eval_data(config))
    extra = {} if output_stage is None else {"output_stage": output_stage}
    return {**eval_record(fns.task, metrics), "step": step,
            "eval_split": config.dataset.eval_split,
            "weights": "ema" if fns.use_ema else "raw", **extra}
