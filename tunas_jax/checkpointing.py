"""Search checkpoints with orbax: the whole `SearchState` plus the data-iterator state.

A checkpoint holds the state's array leaves (supernet weights and optimizer,
controller logits/Adam/baseline/step, raw RNG key, step) and, as JSON, the
grain iterators' positions (`SearchData.get_state`). Restoring needs a
freshly initialised state of the same config as the template: its tree
structure (including the controller's static spec) is reused, only the
leaves come from disk. Saves are orbax's (written to a temp folder, then
renamed), so a search killed mid-save resumes from the previous checkpoint.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np

CHECKPOINT_DIR = "checkpoints"


class SearchCheckpointer:
    """Save/restore (state, data state) under `<workdir>/checkpoints/<step>`."""

    def __init__(self, workdir: str, keep: int = 2, read_only: bool = False) -> None:
        """`read_only`: only restore (another run's workdir: never create or prune there)."""
        import orbax.checkpoint as ocp  # deferred: orbax is slow to import

        self._ocp = ocp
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
        restored = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), data=ocp.args.JsonRestore()))
        saved = restored["state"]
        shapes_differ = any(np.shape(saved[str(i)]) != np.shape(leaf)
                            for i, leaf in enumerate(leaves) if str(i) in saved)
        if len(saved) != len(leaves) or shapes_differ:
            raise ValueError(f"checkpoint {self.directory}/{step}: {len(saved)} arrays that do "
                             f"not fit the config's {len(leaves)}; use a fresh --workdir")
        state = jax.tree_util.tree_unflatten(treedef, [saved[str(i)] for i in
                                                       range(len(leaves))])
        return state, restored["data"]

    def close(self) -> None:
        self._manager.close()
