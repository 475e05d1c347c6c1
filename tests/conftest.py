"""Shared test fixtures: damaging a real checkpoint on disk."""

import os

import pytest


def _flip_checkpoint_bytes(checkpoint_dir: str, step: int) -> int:
    """Flip 16 bytes in the middle of every tensorstore data file (OCDBT `d/` folders)
    of `checkpoint_dir/<step>`, as bit rot or a bad copy would; returns the file count."""
    flipped = 0
    for folder, _, files in os.walk(os.path.join(checkpoint_dir, str(step))):
        if os.path.basename(folder) != "d":
            continue
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "r+b") as f:
                data = bytearray(f.read())
                middle = len(data) // 2
                data[middle:middle + 16] = bytes(b ^ 0xFF for b in data[middle:middle + 16])
                f.seek(0)
                f.write(data)
            flipped += 1
    assert flipped, f"no tensorstore data files under {checkpoint_dir}/{step}"
    return flipped


@pytest.fixture
def corrupt_checkpoint():
    """`corrupt_checkpoint(checkpoint_dir, step)`: flip bytes in that checkpoint's files."""
    return _flip_checkpoint_bytes
