"""Name -> search space lookup: the shipped spaces, and any a user registers."""

from __future__ import annotations

import functools
from collections.abc import Callable

from search_spaces.definitions.autoseg import autoseg, autoseg_micro
from search_spaces.definitions.micro import micro
from search_spaces.definitions.mobilenet_edgetpu_v2 import mobilenet_edgetpu_v2
from search_spaces.definitions.mobilenet_multi import mobilenet_multi
from search_spaces.definitions.proxylessnas import proxylessnas
from search_spaces.errors import SpecError
from search_spaces.space import SearchSpace

SPACES: dict[str, Callable[[], SearchSpace]] = {
    "autoseg": autoseg,
    "autoseg_micro": autoseg_micro,
    "micro": micro,
    "mobilenet_edgetpu_v2": mobilenet_edgetpu_v2,
    "mobilenet_multi": mobilenet_multi,
    "proxylessnas": proxylessnas,
}
DEFAULT_SPACE = "micro"


@functools.cache
def get_space(name: str) -> SearchSpace:
    if name not in SPACES:
        raise SpecError(f"space {name!r} is unknown; choose one of {sorted(SPACES)}")
    return SPACES[name]()


def register_space(name: str, factory: Callable[[], SearchSpace], *,
                   replace: bool = False) -> None:
    """Make `get_space(name)` return `factory()` (a new space is a new module and this call)."""
    if name in SPACES and not replace and SPACES[name] is not factory:
        raise SpecError(f"space {name!r} is already registered; pick another name or pass "
                        "replace=True")
    SPACES[name] = factory
    get_space.cache_clear()
