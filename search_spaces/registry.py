"""Name -> search space lookup for the shipped spaces."""

from __future__ import annotations

import functools
from collections.abc import Callable

from search_spaces.definitions.micro import micro
from search_spaces.definitions.mobilenet_edgetpu_v2 import mobilenet_edgetpu_v2
from search_spaces.definitions.proxylessnas import proxylessnas
from search_spaces.errors import SpecError
from search_spaces.space import SearchSpace

SPACES: dict[str, Callable[[], SearchSpace]] = {
    "micro": micro,
    "mobilenet_edgetpu_v2": mobilenet_edgetpu_v2,
    "proxylessnas": proxylessnas,
}
DEFAULT_SPACE = "micro"


@functools.cache
def get_space(name: str) -> SearchSpace:
    if name not in SPACES:
        raise SpecError(f"space {name!r} is unknown; choose one of {sorted(SPACES)}")
    return SPACES[name]()
