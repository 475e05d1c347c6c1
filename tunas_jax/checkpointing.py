"""Search checkpoints with orbax: the whole `SearchState` plus the data-iterator state.

A checkpoint holds the state's array leaves (supernet weights and optimizer,
controller logits/Adam/baseline/step, raw RNG key, step) and, as JSON, the
grain iterators' positions (`SearchData.get_state`). Restoring needs a
freshly initialised state of the same config as the template: its tree
structure (including the controller's static spec) is reused, only the
leaves come from disk. Saves are orbax's (written to a temp folder, then
renamed), so a search killed mid-save resumes from the previous checkpoint.

Resuming tolerates a damaged checkpoint (`restore_newest_readable`): one that
does not read back (bytes flipped on disk, files missing) is reported in one
line, the run resumes from the previous one orbax kept and the unreadable one
is moved aside; when none reads, one line says how to start over. `make_workdir` turns a
`--workdir` that is a file into one clear error. `train` uses the same class.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np

from tunas_jax import distributed
from tunas_jax.errors import UsageError

CHECKPOINT_DIR = "checkpoints"
# Where an unreadable checkpoint is moved (beside, not inside, orbax's folder: orbax
# would list it as a step, and a later save of the same step would collide with it).
UNREADABLE_DIR = "checkpoints_unreadable"
# How long a failed restore waits for orbax's reads still in flight (see _DrainingLoop).
DRAIN_TIMEOUT_S = 60.0


class UnreadableCheckpoint(UsageError):
    """A checkpoint whose files do not read back (corrupted or incomplete on disk)."""

    def __init__(self, directory: str, step: int, reason: str) -> None:
        super().__init__(f"checkpoint step {step} in {directory} is unreadable ({reason})")
        self.step, self.reason = step, reason


def make_workdir(path: str | os.PathLike, option: str = "--workdir") -> str:
    """`path` made absolute and created; UsageError naming `option` when a file is in the way."""
    path = os.path.abspath(os.fspath(path))
    try:
        os.makedirs(path, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UsageError(f"{option} {path}: a file is in the way (the path or one of its "
                         f"parents is a file, not a folder); pass a folder path: a new "
                         f"one, or the workdir of the run to resume") from None
    return path


def _reason(err: BaseException) -> str:
    """The last clause of a (tensorstore) error chain, without the JSON spec it appends:
    e.g. 'ZSTD_decompressStream() failed: Data corruption detected'."""
    text = str(err).split(" [tensorstore_spec=")[0].splitlines()[0] if str(err) else ""
    parts = [part.strip() for part in text.split(": ") if part.strip()]
    text = ": ".join(parts[-2:]).split(";")[0] if parts else type(err).__name__
    return text[:300]


class _DrainingLoop(asyncio.SelectorEventLoop):
    """An event loop that, when closed, first lets its pending tasks finish.

    orbax runs a restore in a fresh event loop and closes it as soon as one array
    fails to read, while tensorstore's other reads are still in flight; each of
    them then completes into the closed loop and tensorstore prints a
    "RuntimeError: Event loop is closed" traceback (about 280 lines for one
    damaged search checkpoint). Finishing them before the close removes the
    cause; nothing is filtered from the output."""

    def close(self) -> None:
        pending = [task for task in asyncio.all_tasks(self) if not task.done()]
        if pending and not self.is_running() and not self.is_closed():
            done, _ = self.run_until_complete(asyncio.wait(pending,
                                                           timeout=DRAIN_TIMEOUT_S))
            for task in done:  # retrieved, so asyncio logs no "never retrieved" errors
                if not task.cancelled():
                    task.exception()
        super().close()


class _DrainingPolicy(asyncio.DefaultEventLoopPolicy):
    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        return _DrainingLoop()


@contextlib.contextmanager
def _draining_event_loops() -> Iterator[None]:
    """orbax's loops created in this block are `_DrainingLoop`s (orbax makes them with
    `asyncio.new_event_loop()`, which asks the policy)."""
    previous = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(_DrainingPolicy())
    try:
        yield
    finally:
        asyncio.set_event_loop_policy(previous)


class SearchCheckpointer:
    """Save/restore (state, data state) under `<workdir>/checkpoints/<step>`."""

    def __init__(self, workdir: str, keep: int = 2, read_only: bool = False) -> None:
        """`read_only`: only restore (another run's workdir: never create or prune there)."""
        import orbax.checkpoint as ocp  # deferred: orbax is slow to import

        self._ocp = ocp
        self._read_only = read_only
        self.directory = os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=None if read_only else max(1, keep), create=not read_only,
            read_only=read_only, enable_async_checkpointing=False)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: Any, data_state: dict[str, Any],
             extra: dict[str, Any] | None = None) -> None:
        ocp = self._ocp
        leaves = {str(i): np.asarray(leaf) for i, leaf in
                  enumerate(jax.tree_util.tree_leaves(state))}
        self._manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(leaves),
            data=ocp.args.JsonSave({"iterators": data_state, **(extra or {})})), force=True)
        self._manager.wait_until_finished()

    def restore(self, step: int, template: Any) -> tuple[Any, dict[str, Any]]:
        """(state with the template's structure and the saved leaves, the JSON part)."""
        ocp = self._ocp
        leaves, treedef = jax.tree_util.tree_flatten(template)
        abstract = {str(i): jax.ShapeDtypeStruct(np.shape(leaf), getattr(leaf, "dtype", None)
                                                 or np.asarray(leaf).dtype)
                    for i, leaf in enumerate(leaves)}
        mismatch = UsageError(f"checkpoint {self.directory}/{step}: arrays that do not fit "
                              f"the config's {len(leaves)}; use a fresh --workdir")
        try:
            with _draining_event_loops():
                restored = self._manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract), data=ocp.args.JsonRestore()))
        except (ValueError, OSError, KeyError) as err:
            # orbax compares the template with the saved tree before reading any array.
            if "structures do not match" in str(err):
                raise mismatch from None
            raise UnreadableCheckpoint(self.directory, step, _reason(err)) from None
        saved = restored["state"]
        shapes_differ = any(np.shape(saved[str(i)]) != np.shape(leaf)
                            for i, leaf in enumerate(leaves) if str(i) in saved)
        if len(saved) != len(leaves) or shapes_differ:
            raise mismatch
        state = jax.tree_util.tree_unflatten(treedef, [saved[str(i)] for i in
                                                       range(len(leaves))])
        return state, restored["data"]

    def restore_newest_readable(self, template: Any, log: Callable[[str], Any] = print
                                ) -> tuple[int, Any, dict[str, Any] | None]:
        """(step, state, JSON part) of the newest checkpoint that reads back, or
        (0, template, None) when there is none yet.

        Each unreadable checkpoint costs one `log` line naming its step and the
        problem. Once an older one reads, the unreadable ones are moved to
        `UNREADABLE_DIR` beside the checkpoints (unless read-only), so that the
        resumed run can save those steps again. When none reads, nothing is moved
        and UsageError says how to start over."""
        steps = sorted(self._manager.all_steps(), reverse=True)
        unreadable: list[int] = []
        for step in steps:
            try:
                state, data = self.restore(step, template)
            except UnreadableCheckpoint as err:
                unreadable.append(step)
                log(f"{err}; trying the previous checkpoint" if step != steps[-1] else
                    str(err))
                continue
            if unreadable and not self._read_only:
                # One process moves them (every process reached the same verdict).
                for bad in unreadable if distributed.is_primary() else ():
                    log(f"moved the unreadable checkpoint step {bad} to "
                        f"{self._set_aside(bad)}")
                distributed.barrier("checkpoints set aside")
                self._manager.reload()
            return step, state, data
        if steps:
            raise UsageError(
                f"{self.directory}: no checkpoint reads back (steps {', '.join(map(str, steps))}"
                f" are unreadable); to start over, delete {self.directory} or use a new "
                "--workdir")
        return 0, template, None

    def _unreadable_dir(self) -> str:
        return os.path.join(os.path.dirname(self.directory), UNREADABLE_DIR)

    def _set_aside(self, step: int) -> str:
        target = os.path.join(self._unreadable_dir(), str(step))
        os.makedirs(self._unreadable_dir(), exist_ok=True)
        if os.path.exists(target):  # set aside before: keep the newer copy only
            shutil.rmtree(target)
        shutil.move(os.path.join(self.directory, str(step)), target)
        return target

    def close(self) -> None:
        self._manager.close()
