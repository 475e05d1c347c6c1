"""Simulator datasets: sampled architectures of a space with their simulated costs.

A dataset is `N` index vectors of one space (the space's in-space presets
first, then uniform samples over the decisions) with the simulator's
latency, energy, parameter count and MAC count of each, for one hardware
target. It is what the learned latency regressor trains on.

Storage is one columnar `.npz` file: numpy only (no new dependency, unlike
Parquet or Arrow), one array per column, loaded with `allow_pickle=False`
(no code runs when a file is read), and a 0-d string array `metadata_json`
holding the space name and fingerprint, target, seed and preset rows, so a
dataset of another space or target is refused. Files are written to a
temporary name beside the destination and renamed.

Simulation fans out over all cores: chunks of index vectors go to a
`ProcessPoolExecutor` with the 'spawn' start method (JAX is not fork-safe,
and the caller may have imported it), or, with `executor="ray"`, to an actor
pool on a Ray cluster (`cost_models.ray_executor`: many machines, workers
restarted on failure). This module and the workers never import JAX.
Sampling happens in the parent from one seeded generator and chunks are put
back in order, so the file's contents depend only on the seed, never on the
executor.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import math
import multiprocessing
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from search_spaces import PRESETS, SearchSpace, SpecError
from search_spaces.fileio import atomic_write

FORMAT = "tunas-jax/simulator-dataset"
FORMAT_VERSION = 1
COLUMNS = ("latency_ms", "energy_mj", "params", "macs")
# Per-segment columns: [N, 2 * (2 + number of blocks)] (halves of stem, blocks, head).
SEGMENT_COLUMNS = ("segment_weight_bytes",)
# Below this many architectures, spawning workers costs more than it saves.
MIN_PARALLEL = 512
# Where the chunks are costed: this machine's processes, or a Ray cluster.
EXECUTORS = ("local", "ray")
# Architectures per progress update when a cost service simulates the dataset.
SERVICE_CHUNK = 16_384


@dataclasses.dataclass(frozen=True)
class SimulatorDataset:
    indices: np.ndarray      # int32 [N, D]
    latency_ms: np.ndarray   # float64 [N]
    energy_mj: np.ndarray    # float64 [N]
    params: np.ndarray       # int64 [N]
    macs: np.ndarray         # int64 [N]
    metadata: dict[str, Any]
    segment_weight_bytes: np.ndarray | None = None  # int64 [N, 2 * (2 + blocks)]

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def check(self, space: SearchSpace, target: Any = None,
              where: str = "dataset") -> SimulatorDataset:
        """SpecError unless this dataset was simulated for `space` (and `target`).

        `target` is a name, or a `HardwareTarget` whose numbers must also match
        (a recalibrated target or an updated simulator target keeps its name).
        """
        m = self.metadata
        target_name = target if target is None or isinstance(target, str) else target.name
        if m.get("space_fingerprint") != space.fingerprint:
            raise SpecError(f"{where}: simulated for space {m.get('space')!r} (fingerprint "
                            f"{m.get('space_fingerprint')}), not {space.name!r} "
                            f"({space.fingerprint}); delete it or point to another dataset")
        if target_name is not None and m.get("target") != target_name:
            raise SpecError(f"{where}: simulated for target {m.get('target')!r}, not "
                            f"{target_name!r}; delete it or point to another dataset")
        if (target is not None and not isinstance(target, str)
                and m.get("target_config") != target.to_json()):
            changed = sorted(k for k, v in target.to_json().items()
                             if (m.get("target_config") or {}).get(k) != v)
            raise SpecError(f"{where}: simulated with other {target_name} numbers (fields "
                            f"{changed} differ); delete it to re-simulate")
        if self.indices.ndim != 2 or self.indices.shape[1] != space.num_decisions:
            raise SpecError(f"{where}.indices: shape {self.indices.shape}, expected "
                            f"[N, {space.num_decisions}]")
        return self


def in_space_presets(space: SearchSpace) -> dict[str, tuple[int, ...]]:
    """The named presets that are members of `space`, with their indices."""
    out = {}
    for name, build in PRESETS.items():
        indices = space.encode(build())
        if indices is not None:
            out[name] = indices
    return out


def sample_architectures(space: SearchSpace, num: int,
                         seed: int) -> tuple[np.ndarray, dict[str, int]]:
    """[num, D] indices (in-space presets first, then uniform) and {preset: row}."""
    if num < 1:
        raise SpecError(f"num: {num}; simulate at least one architecture")
    presets = list(in_space_presets(space).items())[:num]
    rng = np.random.default_rng(seed)
    uniform = space.sample(rng, num - len(presets)).reshape(-1, space.num_decisions)
    rows = [np.asarray(indices, np.int32)[None] for _, indices in presets]
    indices = np.concatenate([*rows, uniform.astype(np.int32)])
    return indices.astype(np.int32), {name: i for i, (name, _) in enumerate(presets)}


# ---- simulation -------------------------------------------------------------
_COSTERS: dict[tuple[Any, ...], Any] = {}


def cost_chunk(space: SearchSpace, target: Any, image_size: int | None,
               num_classes: int | None, indices: np.ndarray, task: str = ""
               ) -> dict[str, np.ndarray]:
    """Costs of one chunk of index vectors (runs in a worker process); `task`: the head's
    task as `Task.to_json()` JSON text, '' = classification of `num_classes`."""
    from cost_models.arch_cost import ArchitectureCoster
    from tasks import task_from_json

    key = (space.fingerprint, target, image_size, num_classes, task)
    if key not in _COSTERS:  # a coster caches per-layer costs: keep one per worker
        _COSTERS[key] = ArchitectureCoster(
            space, target, image_size=image_size,
            task=task_from_json(task, num_classes or space.default_num_classes))
    coster = _COSTERS[key]
    costs = coster.cost_batch(np.asarray(indices))
    out = {c: np.asarray(costs[c]) for c in COLUMNS}
    out["segment_weight_bytes"] = segment_weight_bytes(coster, indices)
    return out


def segment_weight_bytes(coster: Any, indices: np.ndarray) -> np.ndarray:
    """int64 [N, 2 * (2 + blocks)]: weight bytes of each half-segment (stem, blocks,
    head; halves as `cost_models.features` splits them), in network order.

    The cache-aware regressor learns where the on-chip weight cache fills from
    these. Read from the coster's per-segment cache entries.
    """
    from cost_models.features import half_segment_weight_bytes

    ids = coster.segment_ids(np.asarray(indices, np.int64))
    halves = {int(e): half_segment_weight_bytes(coster.entry_layer_weights(int(e)))
              for e in np.unique(ids)}
    table = np.zeros((int(ids.max()) + 1, 2), np.int64)
    for e, h in halves.items():
        table[e] = h
    return table[ids].reshape(len(ids), -1)


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_chunk_size(n: int, workers: int) -> int:
    """A few chunks per worker: a smooth progress bar and load balance."""
    return max(64, min(2048, math.ceil(n / (workers * 8))))


def simulate_architectures(space: SearchSpace, target: Any, indices: np.ndarray,
                           image_size: int | None = None, num_classes: int | None = None,
                           task: str = "",
                           workers: int | None = None, chunk_size: int | None = None,
                           on_progress: Callable[[int], Any] | None = None,
                           executor: str = "local", ray_address: str | None = None,
                           cost_service: str | None = None) -> dict[str, np.ndarray]:
    """Simulated costs of `indices` [N, D], in order, computed on `workers` processes
    (`executor="local"`) or Ray actors (`"ray"`, on the cluster at `ray_address`; none:
    the running one, else a local one), or, with `cost_service` (HOST:PORT, or a
    comma-separated list), by that `tunas-jax serve-costs` service.

    `target` is a `cost_models.hardware.HardwareTarget` or a shipped target's name.
    """
    from cost_models.hardware import get_target

    target = get_target(target)
    check_executor(executor)
    indices = np.asarray(indices, np.int32)
    n = len(indices)
    if task and (cost_service or executor == "ray"):
        raise SpecError("task: a head other than classification is costed by the local "
                        "executor only (not yet by the cost service or Ray)")
    if cost_service and n:
        return _simulate_on_service(cost_service, space, target, indices, image_size,
                                    num_classes, chunk_size or SERVICE_CHUNK, on_progress)
    if executor == "ray" and n:
        from cost_models.ray_executor import RayCostExecutor

        with RayCostExecutor(space, target, image_size, num_classes, workers,
                             ray_address or None) as pool:
            return pool.cost(indices, chunk_size, on_progress)
    workers = default_workers() if workers is None else max(1, workers)
    chunk_size = chunk_size or default_chunk_size(n, workers)
    starts = list(range(0, n, chunk_size))
    results: list[dict[str, np.ndarray] | None] = [None] * len(starts)
    if workers == 1 or n < MIN_PARALLEL:
        for i, s in enumerate(starts):
            results[i] = cost_chunk(space, target, image_size, num_classes,
                                    indices[s:s + chunk_size], task)
            if on_progress:
                on_progress(len(results[i]["latency_ms"]))
    else:
        context = multiprocessing.get_context("spawn")  # never fork a process that has JAX
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = {pool.submit(cost_chunk, space, target, image_size, num_classes,
                                   indices[s:s + chunk_size], task): i
                       for i, s in enumerate(starts)}
            for future in concurrent.futures.as_completed(futures):
                i = futures[future]
                results[i] = future.result()
                if on_progress:
                    on_progress(len(results[i]["latency_ms"]))
    if not results:
        return {c: np.zeros(0) for c in COLUMNS}
    return {c: np.concatenate([r[c] for r in results]) for c in results[0]}


def _simulate_on_service(address: str, space: SearchSpace, target: Any, indices: np.ndarray,
                         image_size: int | None, num_classes: int | None, chunk_size: int,
                         on_progress: Callable[[int], Any] | None) -> dict[str, np.ndarray]:
    """`simulate_architectures` through a cost service (the `service` extra)."""
    from cost_models.hardware import get_target
    from cost_models.interface import Workload
    from cost_service.client import RemoteCostModel, ServiceError
    from tasks import Classification

    if target != get_target(target.name):  # the service knows shipped targets by name only
        raise SpecError(f"cost_service: target {target.name!r} has numbers other than the "
                        "shipped target of that name; simulate it locally")
    workload = Workload(image_size or space.default_image_size,
                        Classification(num_classes or space.default_num_classes))
    parts: dict[str, list[np.ndarray]] = {}
    with RemoteCostModel(address, space, workload) as remote:
        for s in range(0, len(indices), chunk_size):
            chunk = indices[s:s + chunk_size]
            try:
                columns = remote.dataset_columns(chunk, target.name)
            except ServiceError as err:
                raise SpecError(f"cost_service: {err}") from None
            for column, values in columns.items():
                parts.setdefault(column, []).append(values)
            if on_progress:
                on_progress(len(chunk))
    return {c: np.concatenate(v) for c, v in parts.items()}


def check_executor(executor: str, field: str = "executor") -> str:
    if executor not in EXECUTORS:
        raise SpecError(f"{field}: {executor!r}; use one of {EXECUTORS}")
    return executor


def simulate_dataset(space: SearchSpace, target: Any, num: int, seed: int = 0,
                     image_size: int | None = None, num_classes: int | None = None,
                     workers: int | None = None,
                     on_progress: Callable[[int], Any] | None = None, task: str = "",
                     executor: str = "local", ray_address: str | None = None,
                     cost_service: str | None = None) -> SimulatorDataset:
    """Sample `num` architectures of `space` (presets first) and simulate them on
    `target` (a `HardwareTarget` or a shipped target's name).

    `on_progress(n)` is called as each chunk of `n` architectures finishes
    (the CLI hangs its progress bar there; libraries don't draw bars).
    """
    from cost_models.hardware import get_target

    target = get_target(target)  # unknown names fail before any work
    check_executor(executor)
    indices, preset_rows = sample_architectures(space, num, seed)
    costs = simulate_architectures(space, target, indices, image_size, num_classes, task,
                                   workers, on_progress=on_progress, executor=executor,
                                   ray_address=ray_address, cost_service=cost_service)
    metadata = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "space": space.name, "space_fingerprint": space.fingerprint, "target": target.name,
        "seed": int(seed), "num_architectures": int(num),
        "image_size": image_size or space.default_image_size,
        "num_classes": num_classes or space.default_num_classes,
        "presets": preset_rows,
        # A head other than classification's (`Task.to_json()`); absent = classification.
        **({"task": json.loads(task)} if task else {}),
        # The exact hardware numbers (a calibrated target keeps its shipped name).
        "target_config": target.to_json(),
    }
    return SimulatorDataset(indices, costs["latency_ms"].astype(np.float64),
                            costs["energy_mj"].astype(np.float64),
                            costs["params"].astype(np.int64), costs["macs"].astype(np.int64),
                            metadata, costs["segment_weight_bytes"].astype(np.int64))


def write_dataset(path: str | os.PathLike, dataset: SimulatorDataset) -> None:
    """Write the columnar .npz atomically (temp file beside `path`, then rename)."""
    extra = {c: getattr(dataset, c) for c in SEGMENT_COLUMNS if getattr(dataset, c) is not None}
    with atomic_write(path, "wb", ".npz") as f:
        np.savez(f, indices=dataset.indices, **extra,
                 **{c: getattr(dataset, c) for c in COLUMNS},
                 metadata_json=np.array(json.dumps(dataset.metadata, sort_keys=True)))


def read_dataset(path: str | os.PathLike, space: SearchSpace | None = None,
                 target: Any = None) -> SimulatorDataset:
    """Read a dataset; with `space` (and `target`, see `check`) refuse one made for others."""
    try:
        with np.load(os.fspath(path), allow_pickle=False) as data:
            arrays = {k: data[k] for k in ("indices", *COLUMNS, "metadata_json")}
            arrays.update({k: data[k] for k in SEGMENT_COLUMNS if k in data.files})
    except OSError as err:
        raise SpecError(f"dataset {path}: cannot read ({err})") from None
    except (KeyError, ValueError) as err:
        raise SpecError(f"dataset {path}: not a tunas-jax simulator dataset ({err})") from None
    metadata = json.loads(str(arrays.pop("metadata_json")))
    if metadata.get("format") != FORMAT or metadata.get("format_version") != FORMAT_VERSION:
        raise SpecError(f"dataset {path}.metadata: format {metadata.get('format')!r} version "
                        f"{metadata.get('format_version')!r}; expected {FORMAT!r} "
                        f"version {FORMAT_VERSION}")
    dataset = SimulatorDataset(metadata=metadata, **arrays)
    if space is not None:
        dataset.check(space, target, where=f"dataset {path}")
    return dataset
