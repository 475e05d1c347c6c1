"""Progress for long work: a tqdm bar with rate and ETA on a terminal, and off a terminal
(logs, CI, `nohup`) the same line written as a plain log line now and then."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import Any, TextIO, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
# Off a terminal: at most one line per this many seconds (plus the first and the last).
LOG_EVERY_S = 30.0


class _LogLines:
    """A stream for tqdm off a terminal: a refresh becomes one whole line (a log has no
    carriage returns to redraw a bar with), at most one per `LOG_EVERY_S` (callers'
    `set_postfix` refreshes at once) but for the first and, once `final`, the last."""

    def __init__(self, stream: TextIO) -> None:
        self.stream, self.final, self._last_s = stream, False, -float("inf")

    def write(self, text: str) -> None:
        text = text.replace("\r", "").strip()
        now = time.monotonic()
        if text and (self.final or now - self._last_s >= LOG_EVERY_S):
            self.stream.write(text + "\n")
            self._last_s = now

    def flush(self) -> None:
        self.stream.flush()


class _LoggedBar(tqdm):
    """tqdm whose closing line is always logged (the final count, rate and time)."""

    def __init__(self, *args: Any, lines: _LogLines, **kwargs: Any) -> None:
        self._lines = lines
        super().__init__(*args, file=lines, **kwargs)

    def close(self) -> None:
        self._lines.final = True
        super().close()


def progress(iterable: Iterable[T] | None = None, *, total: int | None = None, desc: str = "",
             unit: str = "it", disable: bool | None = None, **kwargs: Any) -> tqdm:
    """Count, rate and ETA of long work, on stderr.

    `disable=None`: a redrawn bar when stderr is a terminal, else a log line every
    `LOG_EVERY_S` seconds (so a search under `nohup` or CI says how far it is).
    `disable=True`: nothing.
    """
    if disable is None and not sys.stderr.isatty():
        return _LoggedBar(iterable, total=total, desc=desc, unit=unit,
                          lines=_LogLines(sys.stderr), mininterval=LOG_EVERY_S, ncols=100,
                          **kwargs)
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=bool(disable),
                dynamic_ncols=True, file=sys.stderr, **kwargs)
