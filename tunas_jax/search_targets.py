"""A search's hardware targets: their latency targets, their regressors, their outputs.

One target (`config.targets = ("pixel6_edgetpu",)`): the reward's latency
ratio is T / T0 with T0 = `config.target_latency_ms`, and the regressor is
trained from `config.cost_model.config` into `config.cost_model.workdir`
(default `<W>/cost_model`), as before multi-hardware searches existed.

Several targets (a multi-hardware search, Chu et al. 2020):
- `config.target_latencies_ms`: one T0_i per target, in the order of
  `config.targets` (`target_latency_ms` is then unused);
- `config.multi_hardware_metric`: how the ratios T_i / T0_i combine into the
  reward's one ratio (`controllers.combine_latency_ratios`: average, geomean,
  worst);
- one regressor per target in `<cost_model.workdir or W/cost_model>/<target>`,
  each found or trained exactly as the single target's: from
  `config.cost_model.configs[i]` (one config file per target), or, when that
  is empty, from `config.cost_model.config` with its `target` field set to
  each target. `config.cost_model.overrides` apply to every one.

The outputs (`latency_costs`) keep the single-target scalar fields
(`target_latency_ms`, `simulated_latency_ms`, ...: the first target's, as
`tunas_jax.train`'s result.json) and add, for any number of targets,
`latency_ms_by_target`, `target_latency_ms_by_target`,
`latency_ratio_by_target`, `multi_hardware_metric` and
`combined_latency_ratio`.

`host_cpu` (this machine's CPU, measured: `tunas_jax.host_latency`) is a
target like the others for the reward: its regressor is trained on measured
latencies (`tunas_jax.host_dataset`; e.g.
`experiments/cost_models/micro_host_cpu.py`). Where the outputs simulate the
other targets, they measure it (`reference_costs`). It has no modelled
fixed part, so a search with it uses the `end_to_end` latency metric.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any

import ml_collections
import numpy as np

import controllers
from cost_models import get_target
from cost_models.interface import CostBatch, check_targets
from cost_models.regressor import METADATA_FILE, read_metadata
from search_spaces import SpecError
from tasks import Classification, Task
from tunas_jax import cost_model_training
from tunas_jax.config_defaults import set_overrides
from tunas_jax.config_files import load_config
from tunas_jax.errors import UsageError
from tunas_jax.host_latency import HOST_TARGET

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def search_targets(config: ml_collections.ConfigDict) -> tuple[str, ...]:
    """The search's hardware targets (`config.targets`), each named once; `host_cpu`
    (measured) among them only with the `end_to_end` latency metric."""
    given = tuple(config.targets)
    simulated = [t for t in given if t != HOST_TARGET]
    if simulated or not given:
        check_targets(simulated, "config.targets")
    names = tuple(t if t == HOST_TARGET else get_target(t).name for t in given)
    if len(set(names)) != len(names):
        raise UsageError(f"config.targets: {list(names)} names a target twice; name each once")
    if HOST_TARGET in names and config.get("latency_metric", "end_to_end") != "end_to_end":
        raise UsageError(f"config.latency_metric: {config.latency_metric!r} with target "
                         f"{HOST_TARGET}, which is measured and has no modelled fixed part "
                         "to subtract; use 'end_to_end'")
    return names


def reference_costs(space: Any, workload: Any, items: np.ndarray, targets: tuple[str, ...],
                    predictors: Mapping[str, Any]) -> dict[str, CostBatch]:
    """The ground truth the outputs report beside the regressors: each simulated target
    simulated, `host_cpu` measured (with the settings and statistic its regressor's
    dataset used)."""
    from cost_models.interface import SimulatorCostModel

    simulated = [t for t in targets if t != HOST_TARGET]
    out = SimulatorCostModel(space, workload).cost(items, simulated) if simulated else {}
    if HOST_TARGET in targets:
        from tunas_jax.host_latency import HostCpuCostModel

        settings = predictors[HOST_TARGET].metadata.get("measured", {})
        host = HostCpuCostModel(space, workload, warmup=int(settings.get("warmup", 5)),
                                repeats=int(settings.get("repeats", 20)),
                                statistic=settings.get("statistic", "median"))
        out.update(host.cost(items, [HOST_TARGET]))
    return {t: out[t] for t in targets}


def multi_hardware_metric(config: ml_collections.ConfigDict) -> str:
    try:
        return controllers.check_multi_hardware_metric(config.multi_hardware_metric)
    except SpecError as err:
        raise UsageError(f"config.{err}") from None


def target_latencies_ms(config: ml_collections.ConfigDict) -> tuple[float, ...]:
    """T0 per target: (`target_latency_ms`,) for one target, `target_latencies_ms` for
    several (one per target, in order)."""
    targets = search_targets(config)
    given = tuple(config.target_latencies_ms)
    if len(targets) == 1:
        if given:
            raise UsageError(f"config.target_latencies_ms: {list(given)} set for the single "
                             f"target {targets[0]}; use config.target_latency_ms (the list "
                             "is for several targets)")
        return (controllers.check_target_latency_ms(config.target_latency_ms),)
    if len(given) != len(targets):
        raise UsageError(
            f"config.target_latencies_ms: {len(given)} values {list(given)} for the "
            f"{len(targets)} targets {list(targets)}; give one target latency (ms of "
            "config.latency_metric) per target, in the order of config.targets")
    out = []
    for name, value in zip(targets, given, strict=True):
        try:
            out.append(controllers.check_target_latency_ms(value))
        except SpecError:
            raise UsageError(f"config.target_latencies_ms: {value!r} for {name} must be a "
                             "positive number of milliseconds") from None
    return tuple(out)


# ---- regressors ------------------------------------------------------------------------
def cost_model_workdirs(config: ml_collections.ConfigDict, workdir: str) -> dict[str, str]:
    """target -> its regressor's workdir."""
    base = os.path.abspath(config.cost_model.workdir or os.path.join(workdir, "cost_model"))
    targets = search_targets(config)
    if len(targets) == 1:
        return {targets[0]: base}
    return {t: os.path.join(base, t) for t in targets}


def cost_model_configs(config: ml_collections.ConfigDict
                       ) -> dict[str, tuple[str, dict[str, Any]]]:
    """target -> (cost-model config file, its overrides) to train its regressor from."""
    targets = search_targets(config)
    files = tuple(config.cost_model.configs)
    overrides = set_overrides(config.cost_model.overrides)
    if len(targets) == 1:
        if files:
            raise UsageError(f"config.cost_model.configs: {list(files)} set for the single "
                             f"target {targets[0]}; use config.cost_model.config")
        return {targets[0]: (config.cost_model.config, overrides)}
    if "target" in overrides:
        raise UsageError("config.cost_model.overrides.target: set in a multi-hardware search, "
                         "whose regressors each train for their own target; leave it unset")
    if not files:
        return {t: (config.cost_model.config, {**overrides, "target": t}) for t in targets}
    if len(files) != len(targets):
        raise UsageError(
            f"config.cost_model.configs: {len(files)} files for the {len(targets)} targets "
            f"{list(targets)}; give one cost-model config per target, in the order of "
            "config.targets (or none: config.cost_model.config with each target)")
    return {t: (f, overrides) for t, f in zip(targets, files, strict=True)}


def ensure_cost_models(config: ml_collections.ConfigDict, workdir: str,
                       log: Callable[[str], Any] = print, task: Task | None = None
                       ) -> dict[str, str]:
    """target -> its regressor's workdir; trains each missing one first (one at a time).

    A `task` other than classification is costed with its own head: it is handed to
    each cost-model config (its `task` field), and an existing regressor must have
    been trained for it."""
    paths = cost_model_workdirs(config, workdir)
    wanted = None if task is None or isinstance(task, Classification) else task.to_json()
    for target, (config_path, overrides) in cost_model_configs(config).items():
        path = paths[target]
        if os.path.exists(os.path.join(path, METADATA_FILE)):
            trained_for = read_metadata(path).get("task")
            if wanted is not None and trained_for != wanted:
                raise UsageError(
                    f"config.cost_model.workdir: the {target} regressor in {path} was trained "
                    f"for task {trained_for or 'classification'}, the search's is {wanted}; "
                    "point config.cost_model.workdir at a new folder")
            continue
        resolved = config_path
        if not os.path.isabs(resolved) and not os.path.exists(resolved):
            resolved = os.path.join(REPO_ROOT, resolved)
        if wanted is not None:
            overrides = {**overrides, "task": json.dumps(wanted, sort_keys=True)}
        cm_config = load_config(resolved, overrides)
        if cm_config.space != config.space or cm_config.target != target:
            raise UsageError(
                f"config.cost_model: {config_path} trains for {cm_config.space}/"
                f"{cm_config.target}, the search needs {config.space}/{target}; point it "
                "at a cost-model config for this space and target")
        log(f"cost model: none in {path}; training one for {target} from {config_path} first")
        cost_model_training.train_cost_model(cm_config, path, log=log)
    return paths


# ---- outputs -----------------------------------------------------------------------------
def latency_costs(config: ml_collections.ConfigDict, simulated: Mapping[str, CostBatch],
                  predicted: Mapping[str, CostBatch], offsets_ms: Mapping[str, float]
                  ) -> list[dict[str, Any]]:
    """Per costed item, the latency fields of architecture.json / search_summary.json:
    `latency_ms_by_target` (simulated, in config.latency_metric), the predicted ones,
    each target's T0 and ratio, the combined ratio and its metric, and the first
    target's as the single-target scalar fields."""
    targets = search_targets(config)
    t0 = dict(zip(targets, target_latencies_ms(config), strict=True))
    metric = multi_hardware_metric(config)
    sim_ms = {t: simulated[t].latency_ms - offsets_ms[t] for t in targets}
    pred_ms = {t: predicted[t].latency_ms - offsets_ms[t] for t in targets}
    ratios = np.stack([sim_ms[t] / t0[t] for t in targets], axis=-1)  # [N, T]
    combined = np.asarray(controllers.combine_latency_ratios(ratios, metric), np.float64)
    first = targets[0]
    out = []
    for i in range(len(combined)):
        out.append({
            "latency_metric": config.latency_metric,
            "target_latency_ms": t0[first],
            "predicted_latency_ms": float(pred_ms[first][i]),
            "simulated_latency_ms": float(sim_ms[first][i]),
            "simulated_end_to_end_latency_ms": float(simulated[first].latency_ms[i]),
            **{k: v for k, v in simulated[first].item(i).items() if k != "latency_ms"},
            "targets": list(targets),
            "target_latency_ms_by_target": t0,
            "latency_ms_by_target": {t: float(sim_ms[t][i]) for t in targets},
            "predicted_latency_ms_by_target": {t: float(pred_ms[t][i]) for t in targets},
            "latency_ratio_by_target": {t: float(ratios[i, j]) for j, t in enumerate(targets)},
            "multi_hardware_metric": metric,
            "combined_latency_ratio": float(combined[i]),
        })
    return out
