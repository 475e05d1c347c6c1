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

import jax

from tunas_jax.errors import UsageError

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
