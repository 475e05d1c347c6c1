"""Simulator dataset builds on Ray: long-lived cost actors behind an actor pool.

    executor = RayCostExecutor(space, target, workers=4, address="auto")
    costs = executor.cost(indices)        # same columns as dataset.simulate_architectures

Each actor (`CostWorker`) is one process that keeps its `ArchitectureCoster`
(and with it the per-segment cost caches) for its whole life, so a chunk of
architectures costs only what earlier chunks did not already cost. Work goes
out through `ray.util.ActorPool`, one chunk per idle actor.

Faults: actors are created with `max_restarts` and `max_task_retries`, so
when a worker process dies Ray restarts it and resubmits its in-flight chunk.
Results are placed by chunk number and a chunk arriving twice is dropped, so
every architecture appears exactly once, in input order, whatever died.
Costing is deterministic (integer picosecond/femtojoule sums), so a retried
chunk gives the numbers the lost attempt would have.

`RayTaskPool` is the same cluster handling for one-off jobs: `submit(fn,
*args)` runs `fn` as a Ray task and returns a `concurrent.futures.Future`
(a multi-trial study's trials: `tunas_jax.multi_trial`, `config.executor =
'ray'`). A task that raises fails its future with the task's own exception;
a worker process that dies is retried by Ray (`MAX_RESTARTS` times).

`ray` is an optional dependency (the `ray` extra); this module imports it
only when an executor is built. Without a running cluster, `address=None`
starts a local one with `workers` CPUs and shuts it down on `close()`.
"""

from __future__ import annotations

import concurrent.futures as futures
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from search_spaces import SearchSpace, SpecError

# Restarts per actor before a dead worker fails the build.
MAX_RESTARTS = 4


def _ray() -> Any:
    try:
        import ray
    except ImportError as err:
        raise SpecError(f"executor 'ray': needs the 'ray' extra ({err}); "
                        "pip install 'tunas-jax[ray]'") from None
    return ray


def _connect(ray: Any, address: str | None, workers: int | None) -> bool:
    """Join the cluster at `address`, or the one this process already joined, or start a
    local one with `workers` CPUs; True when this call started (so owns) it."""
    if ray.is_initialized():
        return False
    kwargs = {"address": address} if address else {"num_cpus": workers}
    ray.init(**kwargs, include_dashboard=False, log_to_driver=False)
    return True


class _CostWorker:
    """One long-lived cost process (wrapped with `ray.remote` at executor build)."""

    def __init__(self, space: SearchSpace, target: Any, image_size: int | None,
                 num_classes: int | None) -> None:
        self.args = (space, target, image_size, num_classes)

    def cost(self, chunk: int, indices: np.ndarray) -> tuple[int, dict[str, np.ndarray]]:
        from cost_models.dataset import cost_chunk  # keeps one coster per process

        return chunk, cost_chunk(*self.args, indices)

    def pid(self) -> int:
        return os.getpid()


class RayCostExecutor:
    """`workers` cost actors of one (space, target, workload) on a Ray cluster."""

    def __init__(self, space: SearchSpace, target: Any, image_size: int | None = None,
                 num_classes: int | None = None, workers: int | None = None,
                 address: str | None = None) -> None:
        from cost_models.hardware import get_target

        ray = self.ray = _ray()
        self._owns_cluster = _connect(ray, address, workers)
        if workers is None:
            workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        actor_class = ray.remote(num_cpus=1, max_restarts=MAX_RESTARTS,
                                 max_task_retries=-1)(_CostWorker)
        target = get_target(target)
        self.actors = [actor_class.remote(space, target, image_size, num_classes)
                       for _ in range(max(1, workers))]

    def pids(self) -> list[int]:
        """The worker processes' ids (a restarted worker has a new one)."""
        return self.ray.get([a.pid.remote() for a in self.actors])

    def cost(self, indices: np.ndarray, chunk_size: int | None = None,
             on_progress: Callable[[int], Any] | None = None) -> dict[str, np.ndarray]:
        """Costs of `indices` [N, D] in input order (columns of `dataset.cost_chunk`)."""
        from ray.util import ActorPool

        from cost_models.dataset import default_chunk_size

        indices = np.asarray(indices, np.int32)
        n = len(indices)
        chunk_size = chunk_size or default_chunk_size(n, len(self.actors))
        starts = list(range(0, n, chunk_size))
        pool = ActorPool(self.actors)
        for i, s in enumerate(starts):
            pool.submit(lambda actor, job: actor.cost.remote(*job),
                        (i, indices[s:s + chunk_size]))
        results: dict[int, dict[str, np.ndarray]] = {}
        while pool.has_next():
            chunk, costs = pool.get_next_unordered()
            if chunk in results:  # a retried chunk whose first answer also arrived
                continue
            results[chunk] = costs
            if on_progress:
                on_progress(len(costs["latency_ms"]))
        missing = sorted(set(range(len(starts))) - set(results))
        if missing:
            raise RuntimeError(f"ray executor: chunks {missing} were never costed")
        if not results:
            return {}
        return {c: np.concatenate([results[i][c] for i in range(len(starts))])
                for c in results[0]}

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors = []
        if self._owns_cluster:
            self.ray.shutdown()

    def __enter__(self) -> RayCostExecutor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class RayTaskPool:
    """Ray tasks of one CPU each, behind `submit(fn, *args) -> concurrent Future`."""

    def __init__(self, workers: int | None = None, address: str | None = None) -> None:
        ray = self.ray = _ray()
        self._owns_cluster = _connect(ray, address, workers)
        self._remote: dict[Callable[..., Any], Any] = {}
        self._refs: list[Any] = []  # submitted tasks, to cancel on shutdown

    def submit(self, fn: Callable[..., Any], *args: Any) -> futures.Future:
        """Run `fn(*args)` on the cluster (`fn` importable there: a module-level function)."""
        if fn not in self._remote:
            self._remote[fn] = self.ray.remote(num_cpus=1, max_retries=MAX_RESTARTS)(fn)
        done: futures.Future = futures.Future()
        ref = self._remote[fn].remote(*args)
        self._refs.append(ref)
        ray_future = ref.future()

        def settle(f: futures.Future) -> None:
            try:
                done.set_result(f.result())
            except BaseException as err:  # the task's own exception, not Ray's wrapper
                done.set_exception(getattr(err, "cause", None) or err)

        ray_future.add_done_callback(settle)
        return done

    def shutdown(self, cancel_futures: bool = False) -> None:
        """Stop a cluster this pool started (its tasks with it); on a joined one, cancel
        the unfinished tasks when `cancel_futures`."""
        if cancel_futures and not self._owns_cluster:
            ready, _ = self.ray.wait(self._refs, num_returns=len(self._refs), timeout=0)
            for ref in set(self._refs) - set(ready):
                self.ray.cancel(ref, force=True)
        self._refs = []
        if self._owns_cluster:
            self.ray.shutdown()
            self._owns_cluster = False
