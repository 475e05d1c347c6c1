"""Checkpoint restore past damage on disk, and workdirs blocked by files (no JAX compile)."""

import gc
import logging
import sys
import time

import numpy as np
import pytest

from tunas_jax.checkpointing import SearchCheckpointer, UnreadableCheckpoint, make_workdir
from tunas_jax.errors import UsageError

# Many arrays: orbax reads them concurrently, so one failed read leaves others in flight.
STATE = {f"w{i}": np.arange(4096, dtype=np.float32) + i for i in range(200)}


def _save_two(workdir: str) -> str:
    checkpointer = SearchCheckpointer(workdir)
    for step in (3, 6):
        checkpointer.save(step, {k: v + step for k, v in STATE.items()}, {"at": step})
    checkpointer.close()
    return checkpointer.directory


def test_damaged_newest_checkpoint_falls_back_quietly(tmp_path, capfd, caplog, monkeypatch,
                                                     corrupt_checkpoint):
    # tensorstore reports an error in its completion callbacks as "unraisable".
    unraisable: list[str] = []
    monkeypatch.setattr(sys, "unraisablehook",
                        lambda info: unraisable.append(repr(info.exc_value)))
    directory = _save_two(str(tmp_path))
    corrupt_checkpoint(directory, 6)
    capfd.readouterr()
    logs: list[str] = []
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        checkpointer = SearchCheckpointer(str(tmp_path))
        step, state, data = checkpointer.restore_newest_readable(STATE, logs.append)
        checkpointer.close()
        # The reads that were in flight when the restore failed finish meanwhile: before
        # the fix each printed "RuntimeError: Event loop is closed" into a closed loop.
        time.sleep(1.0)
        gc.collect()
    assert step == 3 and data == {"iterators": {"at": 3}}
    np.testing.assert_array_equal(state["w7"], STATE["w7"] + 3)
    assert len(logs) == 2, logs
    assert logs[0].startswith(f"checkpoint step 6 in {directory} is unreadable (")
    assert logs[1] == (f"moved the unreadable checkpoint step 6 to "
                       f"{tmp_path}/checkpoints_unreadable/6")
    out = capfd.readouterr()
    assert "Event loop is closed" not in out.err + out.out and "Traceback" not in out.err
    assert unraisable == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


def test_a_single_restore_of_a_damaged_checkpoint_is_one_usage_error(tmp_path,
                                                                    corrupt_checkpoint):
    directory = _save_two(str(tmp_path))
    corrupt_checkpoint(directory, 3)
    checkpointer = SearchCheckpointer(str(tmp_path), read_only=True)
    with pytest.raises(UnreadableCheckpoint, match=r"checkpoint step 3 .* unreadable") as info:
        checkpointer.restore(3, STATE)
    assert isinstance(info.value, UsageError) and "\n" not in str(info.value)
    # A template of another config is a mismatch, not damage: no fallback, no "unreadable".
    with pytest.raises(UsageError, match="do not fit the config") as info:
        checkpointer.restore(6, {"other": np.zeros(3, np.float32)})
    assert not isinstance(info.value, UnreadableCheckpoint)
    # Read-only: the newest reads, nothing is moved.
    step, _, _ = checkpointer.restore_newest_readable(STATE, lambda line: None)
    checkpointer.close()
    assert step == 6 and not (tmp_path / "checkpoints_unreadable").exists()


def test_make_workdir(tmp_path):
    assert make_workdir(tmp_path / "a" / "b") == str(tmp_path / "a" / "b")
    (tmp_path / "f").write_text("")
    with pytest.raises(UsageError, match=r"--out .*/f/x: a file is in the way"):
        make_workdir(tmp_path / "f" / "x", "--out")
