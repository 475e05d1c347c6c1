"""TuNAS's random-search baseline: K uniform architectures in a latency band, each trained.

    tunas-jax random-baseline --config experiments/train/micro_digits.py \
        --num 10 --latency-band 0.0167,0.0185 --workdir W

`run_random_baseline` draws index vectors of the space uniformly
(`controllers.random_search`), keeps the first `num` distinct ones whose
simulated latency on the first of `config.targets`, in `config.latency_metric`, lies in
[lo_ms, hi_ms], and trains each with `tunas_jax.train.run_training` under the
same config: the same recipe a searched architecture gets with that config.
Writes into W:
- `baseline.json`: space, band, seed and the chosen architectures, written
  before any training so that a rerun of the same command trains the same
  ones (a different space, band, count, seed or train config in W is
  refused); once all are trained it also holds every top1 and their
  mean/median/min/max;
- `architectures/arch_NN.json`: each chosen architecture;
- `arch_NN/`: one `tunas-jax train` workdir per architecture (result.json,
  checkpoints, metrics). An interrupted baseline resumes where it stopped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import ml_collections
import numpy as np

import controllers
from cost_models import metric_offset_ms
from cost_models.interface import SimulatorCostModel, Workload, check_targets
from search_spaces import (
    Architecture,
    SearchSpace,
    SpecError,
    get_space,
    read_json,
    write_json_atomic,
)
from tunas_jax import train
from tunas_jax.checkpointing import make_workdir
from tunas_jax.errors import UsageError

BASELINE_FILE = "baseline.json"
FORMAT = "tunas_jax.random_baseline"


def parse_band(text: str) -> tuple[float, float]:
    """'LO,HI' in ms -> (lo, hi); UsageError naming --latency-band otherwise."""
    try:
        lo, hi = (float(part) for part in text.split(","))
    except ValueError:
        raise UsageError(f"--latency-band: {text!r}; give two numbers of ms as LO,HI, "
                         "e.g. 0.0167,0.0185") from None
    if not 0 < lo < hi:
        raise UsageError(f"--latency-band: {text!r}; need 0 < LO < HI (ms)")
    return lo, hi


def sample_in_band(space: SearchSpace, config: ml_collections.ConfigDict, num: int,
                   lo_ms: float, hi_ms: float, seed: int, num_classes: int | None = None,
                   max_tries: int = 1_000_000) -> tuple[np.ndarray, np.ndarray]:
    """`num` distinct uniform architectures whose simulated latency (the config's target,
    image size and latency_metric; `num_classes` outputs, default the space's) is in
    [lo_ms, hi_ms], as `tunas-jax train` will report it: (indices [num, D], latency_ms)."""
    image_size = int(config.dataset.image_size)
    target = check_targets(config.targets, "config.targets")[0]
    task = train.make_task(config, num_classes or space.default_num_classes)
    costs = SimulatorCostModel(space, Workload(image_size, task))
    offset = metric_offset_ms(config.latency_metric, target, image_size,
                              task.output_values(image_size))

    def latency_ms(indices: np.ndarray) -> np.ndarray:
        return costs.cost(indices, [target])[target].latency_ms - offset

    try:
        return controllers.random_search(space, latency_ms, num=num, lo_ms=lo_ms, hi_ms=hi_ms,
                                         seed=seed, max_tries=max_tries, batch_size=4096)
    except SpecError as err:
        raise UsageError(f"--latency-band {lo_ms},{hi_ms} ({config.latency_metric} ms at "
                         f"{image_size} px on {target}): {err}; widen or move the band"
                         ) from None


def recipe(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The train config without the per-architecture field: what every run shares, as
    JSON values (tuples as lists), so that it compares equal to baseline.json's copy."""
    values = json.loads(json.dumps(config.to_dict()))
    values.pop("architecture", None)
    return values


def _plan(workdir: str, space: SearchSpace, config: ml_collections.ConfigDict, num: int,
          band: tuple[float, float], seed: int, num_classes: int | None = None
          ) -> dict[str, Any]:
    """baseline.json's plan: read back when it matches this command, else drawn and written."""
    path = os.path.join(workdir, BASELINE_FILE)
    request = {"space": space.name, "space_fingerprint": space.fingerprint,
               "target": config.targets[0], "latency_metric": config.latency_metric,
               "latency_band_ms": list(band), "num": num, "seed": seed,
               "recipe": recipe(config)}
    if os.path.exists(path):
        plan = read_json(path, "random baseline")
        previous = {key: plan.get(key) for key in request}
        if previous != request:
            changed = sorted(k for k in request if previous[k] != request[k])
            shown = {k: previous[k] for k in changed if k != "recipe"}
            raise UsageError(f"--workdir {workdir}: holds a baseline with other {changed} "
                             f"({shown or 'the train config differs'}); use a new workdir")
        return plan
    indices, latency_ms = sample_in_band(space, config, num, band[0], band[1], seed,
                                         num_classes)
    plan = {"format": FORMAT, **request, "architectures": []}
    os.makedirs(os.path.join(workdir, "architectures"), exist_ok=True)
    for i, (idx, ms) in enumerate(zip(indices, latency_ms, strict=True)):
        name = f"arch_{i:02d}"
        arch_path = os.path.join(workdir, "architectures", f"{name}.json")
        Architecture.from_indices(space, [int(v) for v in idx], name=f"random_{name}").save(
            arch_path, extra={"latency_metric": config.latency_metric,
                              "simulated_latency_ms": float(ms)})
        plan["architectures"].append({"name": name, "indices": [int(v) for v in idx],
                                      "simulated_latency_ms": float(ms)})
    write_json_atomic(path, plan)
    return plan


def summarize(values: list[float], metric: str) -> dict[str, float]:
    """Mean, median, min and max of the trained architectures' `metric` (the task's
    quality, e.g. top1), keyed `<stat>_<metric>`."""
    values = np.asarray(values, np.float64)
    return {f"mean_{metric}": float(values.mean()), f"median_{metric}": float(np.median(values)),
            f"min_{metric}": float(values.min()), f"max_{metric}": float(values.max())}


def _quality(result: dict[str, Any]) -> dict[str, Any]:
    """What a baseline entry keeps of a training result: its quality, under its name."""
    metric = result.get("quality_metric", "top1")
    return {"quality_metric": metric, metric: result[metric]}


def run_random_baseline(config: ml_collections.ConfigDict, workdir: str | os.PathLike, *,
                        space_name: str, num: int, band: tuple[float, float], seed: int = 0,
                        log: Callable[[str], Any] = print) -> dict[str, Any]:
    """Draw (or reload) the baseline's architectures and train each; returns baseline.json."""
    if num <= 0:
        raise UsageError(f"--num: {num}; need at least one architecture")
    space = get_space(space_name)
    train.check_train_config(config)
    workdir = make_workdir(workdir)
    # Cost with the dataset's class count, as each training's result.json will.
    from tunas_jax.data import load_source, num_classes  # deferred: TFDS import is slow

    classes = num_classes(load_source(config.dataset, config.dataset.train_split,
                                      "train_split"))
    plan = _plan(workdir, space, config, num, band, seed, classes)
    for i, entry in enumerate(plan["architectures"]):
        run_dir = os.path.join(workdir, entry["name"])
        result_path = os.path.join(run_dir, train.RESULT_FILE)
        if os.path.exists(result_path):
            entry.update(_quality(read_json(result_path, "training result")))
            continue
        log(f"random baseline: training {entry['name']} ({i + 1}/{num}), simulated "
            f"{entry['simulated_latency_ms']:.4f} ms ({config.latency_metric})")
        run_config = ml_collections.ConfigDict(config.to_dict())
        run_config.architecture = os.path.join(workdir, "architectures", entry["name"] + ".json")
        result = train.run_training(run_config, run_dir, log=log)
        if "stopped_at" in result:  # config.stop_after_steps: a drill, continue on rerun
            return {**plan, "stopped_at": {"architecture": entry["name"], **result}}
        entry.update(_quality(result))
        write_json_atomic(os.path.join(workdir, BASELINE_FILE), plan)
    metric = plan["architectures"][0]["quality_metric"]
    plan["summary"] = summarize([entry[metric] for entry in plan["architectures"]], metric)
    write_json_atomic(os.path.join(workdir, BASELINE_FILE), plan)
    return plan
