"""The host-side strategy interface for multi-trial search: propose, then observe.

A multi-trial strategy never sees a model or a gradient: it proposes
architectures (index vectors of a space), something outside it builds, costs
and scores them, and it observes the objectives (or the error of a failed
trial). That is the whole protocol, so the same loop drives an in-tree random
search, an evolution, or a client of an external service (e.g. Vizier):

    strategy = get_strategy("random", space, seed=0)
    for trial in strategy.propose(8):
        strategy.observe(trial, {"latency_ms": ..., "quality": ...})

Strategies are looked up by name (`register_strategy`, `get_strategy`) and
save and restore their state as JSON-able dicts (`state_dict`,
`load_state_dict`), so a study can resume. The in-tree strategies take a
`feasible(indices) -> bool` predicate: a candidate it rejects is never
proposed (a study passes one that costs the candidate, e.g. "its simulated
latency is within 5% of the target": the cost interface answers in under a
millisecond, the proxy training takes minutes). One that holds a resource (the
`vizier` strategy's server process) also has `close()`, which the study
calls when it ends. The one-shot search's
REINFORCE controller (`controllers.reinforce`) is the in-jit counterpart: it
updates inside the jitted step, where a host round trip per step would cost
more than the step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np

from search_spaces import SearchSpace, SpecError


@dataclasses.dataclass(frozen=True)
class Trial:
    """One proposed architecture: a study-wide id and its index vector."""

    id: int
    indices: tuple[int, ...]


class Strategy(Protocol):
    name: str

    def propose(self, count: int) -> list[Trial]: ...

    def observe(self, trial: Trial, objectives: Mapping[str, float] | None,
                error: str | None = None) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


Feasible = Callable[[np.ndarray], bool]


class RandomStrategy:
    """Uniform index vectors (every decision independently, inactive ones included, as
    the space counts them); deterministic per seed. With `unique`, a network already
    proposed (same active decisions) is not proposed again; with `feasible`, one it
    rejects is not proposed (uniform over the feasible ones); `max_draws` bounds the
    draws of one `propose` call."""

    name = "random"

    def __init__(self, space: SearchSpace, seed: int = 0, unique: bool = True,
                 feasible: Feasible | None = None, max_draws: int = 100_000) -> None:
        self.space = space
        self.seed = seed
        self.unique = unique
        self.feasible = feasible
        self.max_draws = max_draws
        self.rejected = 0  # candidates `feasible` turned down (kept in the state)
        self._rng = np.random.default_rng(seed)
        self._next_id = 0
        self._seen: set[bytes] = set()
        self.observed: list[tuple[Trial, dict[str, float] | None, str | None]] = []

    def _key(self, row: np.ndarray) -> bytes:
        mask = self.space.active_mask(row[None])[0]
        return np.where(mask, row, -1).astype(np.int64).tobytes()

    def _trial(self, row: np.ndarray) -> Trial | None:
        """A new trial of `row`, or None when `unique` and its network was proposed, or
        when `feasible` rejects it."""
        key = self._key(row) if self.unique else b""
        if self.unique and key in self._seen:
            return None
        if self.feasible is not None and not self.feasible(row):
            self.rejected += 1
            return None
        if self.unique:
            self._seen.add(key)
        self._next_id += 1
        return Trial(self._next_id - 1, tuple(int(v) for v in row))

    def propose(self, count: int) -> list[Trial]:
        if count <= 0:
            raise SpecError(f"propose: count {count} must be positive")
        out: list[Trial] = []
        draws = 0
        while len(out) < count:
            if draws >= self.max_draws:
                raise SpecError(
                    f"propose: {len(out)} of {count} new candidates after {draws} uniform "
                    f"draws ({self.rejected} rejected as infeasible so far, the rest repeats); "
                    "the space is exhausted or the constraint (e.g. a latency band) too "
                    "narrow: widen it or lower the trial budget")
            for row in self.space.sample(self._rng, count - len(out)):
                draws += 1
                trial = self._trial(row)
                if trial is not None:
                    out.append(trial)
        return out

    def observe(self, trial: Trial, objectives: Mapping[str, float] | None,
                error: str | None = None) -> None:
        # Random search ignores what it sees; it keeps it for the caller's report.
        self.observed.append((trial, None if objectives is None else dict(objectives), error))

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "seed": self.seed, "next_id": self._next_id,
                "rng": self._rng.bit_generator.state, "rejected": self.rejected,
                "seen": sorted(k.hex() for k in self._seen)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("name") != self.name:
            raise SpecError(f"strategy state: of {state.get('name')!r}, not {self.name!r}")
        self.seed, self._next_id = int(state["seed"]), int(state["next_id"])
        self._rng.bit_generator.state = state["rng"]
        self._seen = {bytes.fromhex(k) for k in state["seen"]}
        self.rejected = int(state.get("rejected", 0))  # absent in states from before it


_STRATEGIES: dict[str, Callable[..., Strategy]] = {"random": RandomStrategy}


def strategy_names() -> list[str]:
    import controllers.evolution
    import controllers.vizier_strategy  # noqa: F401  (registers `vizier`; imports no Vizier)

    return sorted(_STRATEGIES)


def register_strategy(name: str, factory: Callable[..., Strategy], *,
                      replace: bool = False) -> None:
    """Make `get_strategy(name, space, **settings)` build `factory(space, **settings)`."""
    if name in _STRATEGIES and not replace and _STRATEGIES[name] is not factory:
        raise SpecError(f"strategy {name!r} is already registered; pick another name or "
                        "pass replace=True")
    _STRATEGIES[name] = factory


def get_strategy(name: str, space: SearchSpace, **settings: Any) -> Strategy:
    import controllers.evolution
    import controllers.vizier_strategy  # noqa: F401  (registers `vizier`; imports no Vizier)

    if name not in _STRATEGIES:
        raise SpecError(f"strategy {name!r} is unknown; choose one of {sorted(_STRATEGIES)}")
    return _STRATEGIES[name](space, **settings)
