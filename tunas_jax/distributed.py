"""Several processes (`jax.distributed`): joining, who writes, and waiting for each other.

A multi-host search runs the same command in every process, with the same config and
the same `--workdir` on a filesystem they share:

    tunas-jax search --config C --workdir W --coordinator HOST:PORT \
        --num-processes N --process-id I

Each process reads its rows of every global batch (`tunas_jax.data`), the mesh spans
every process's devices (`search_step.make_mesh`); process 0 (the primary) writes the
files (W/config.json, metrics, architecture.json, the cost model), orbax writes the
checkpoints once, and the others wait at a barrier where they need what it wrote.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

import jax

from search_spaces.fileio import atomic_write
from tunas_jax.errors import PrimaryFailedError, UsageError

T = TypeVar("T")

# How long a process waits at a barrier for the others (process 0 may be training the
# search's cost model meanwhile: minutes for a large space).
BARRIER_TIMEOUT_S = 3600.0


def initialize(coordinator: str | None, num_processes: int | None,
               process_id: int | None) -> None:
    """`jax.distributed.initialize` from the CLI's options; nothing when none is given.
    Must run before anything touches a JAX device."""
    given = [coordinator is not None, num_processes is not None, process_id is not None]
    if not any(given):
        return
    if not all(given):
        raise UsageError("--coordinator, --num-processes and --process-id go together: "
                         "pass all three (the same --coordinator and --num-processes in "
                         "every process, --process-id 0..N-1)")
    if ":" not in coordinator:
        raise UsageError(f"--coordinator {coordinator!r}: use HOST:PORT (process 0's host)")
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise UsageError(f"--process-id {process_id} with --num-processes {num_processes}: "
                         "the id must be in 0..N-1 and N >= 1")
    jax.distributed.initialize(coordinator, num_processes=num_processes,
                               process_id=process_id)


def is_primary() -> bool:
    """Whether this process writes the run's files (process 0; always, with one)."""
    return jax.process_index() == 0


def barrier(name: str, timeout_s: float = BARRIER_TIMEOUT_S) -> None:
    """Every process waits here until all have arrived (no-op with one process); `name`
    must be unique within the run."""
    if jax.process_count() > 1:
        # The coordination service's barrier (what orbax's distributed barrier calls):
        # `multihost_utils.sync_global_devices` is a device collective whose setup
        # times out after 30 s, shorter than process 0 may need to train a cost model.
        from jax._src import distributed as jax_distributed

        jax_distributed.global_state.client.wait_at_barrier(name, int(timeout_s * 1000))


def primary_first(name: str, fn: Callable[[], T], workdir: str) -> T:
    """`fn()` in process 0 while the others wait at barrier `name`, then in the others
    (which read what process 0 wrote). Process 0's error is written under `workdir` (on
    the shared filesystem, one file per `name`) before it reaches the barrier, so the
    others stop at once with it instead of running into a half-built result or the
    barrier's timeout."""
    if jax.process_count() == 1:
        return fn()
    error_path = os.path.join(workdir, f".process_0_error.{name.replace(' ', '_')}.txt")
    if is_primary():
        if os.path.exists(error_path):  # a previous run's
            os.remove(error_path)
        try:
            result = fn()
        except BaseException as err:
            with atomic_write(error_path) as f:
                f.write(f"{type(err).__name__}: {err}")
            barrier(name)
            raise
        barrier(name)
        return result
    barrier(name)
    if os.path.exists(error_path):
        with open(error_path) as f:
            raise PrimaryFailedError(f"process 0 failed at {name!r} (its log has the "
                                     f"details): {f.read()}")
    return fn()
