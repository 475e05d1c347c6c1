"""Atomic file writes and JSON reads with one clear error line.

Every result file of tunas-jax is written to a temp file beside its path and
renamed into place, so a crash never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from typing import IO, Any

from search_spaces.errors import SpecError


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", suffix: str = "") -> Iterator[IO]:
    """Yield a file open on a temp file beside `path`; on success rename it to `path`."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=suffix)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would surprise readers of results
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json_atomic(path: str | os.PathLike, doc: Any, indent: int = 2) -> None:
    """Write JSON to a temp file beside `path`, then rename: never half-written."""
    with atomic_write(path, "w", ".json") as f:
        json.dump(doc, f, indent=indent)
        f.write("\n")


def read_json(path: str | os.PathLike, what: str) -> Any:
    """Parse a JSON file; SpecError naming `what` and the path on any failure."""
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as err:
        raise SpecError(f"{what} {path}: cannot read ({err.strerror})") from None
    except json.JSONDecodeError as err:
        raise SpecError(f"{what} {path}: malformed JSON ({err})") from None
