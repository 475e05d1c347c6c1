"""Progress bars with rate and ETA for long work (tqdm, quiet when not a terminal
unless asked)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(iterable: Iterable[T] | None = None, *, total: int | None = None, desc: str = "",
             unit: str = "it", disable: bool | None = None, **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr showing count, rate and ETA.

    `disable=None` shows the bar only when stderr is a terminal, so logs and
    CI output stay readable.
    """
    if disable is None:
        disable = not sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable,
                dynamic_ncols=True, file=sys.stderr, **kwargs)
