"""Regularized evolution (Real et al., AAAI 2019) as a host-side multi-trial strategy.

The population is the `population_size` most recently *completed* trials
(aging: the oldest member leaves when a child arrives, whatever its score).
A child is proposed by sampling `tournament_size` members uniformly, taking the
best by `objective`, and mutating one of its *active* decisions to another
choice (an inactive decision cannot change the network, so mutating it would
propose a copy). Until the population is full, children are uniform samples.
Networks already proposed (same active decisions) are not proposed again.
Failed trials never join the population. With `feasible` (see
`controllers.strategy`), children and uniform samples it rejects are not
proposed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from controllers.strategy import Feasible, RandomStrategy, Trial, register_strategy
from search_spaces import SearchSpace, SpecError


class RegularizedEvolution(RandomStrategy):
    """propose/observe over index vectors of `space`, maximizing `objectives[objective]`."""

    name = "evolution"

    def __init__(self, space: SearchSpace, seed: int = 0, population_size: int = 20,
                 tournament_size: int = 5, objective: str = "reward",
                 max_attempts: int = 1000, feasible: Feasible | None = None) -> None:
        if not 1 <= tournament_size <= population_size:
            raise SpecError(f"tournament_size: {tournament_size} must be in [1, population_size "
                            f"= {population_size}]")
        super().__init__(space, seed, unique=True, feasible=feasible)
        self.population_size = population_size
        self.tournament_size = tournament_size
        self.objective = objective
        self.max_attempts = max_attempts
        self.population: list[tuple[list[int], float]] = []  # oldest first

    def _mutate(self, parent: list[int]) -> np.ndarray:
        child = np.asarray(parent, np.int64)
        active = np.flatnonzero(self.space.active_mask(child[None])[0]
                                & (np.asarray(self.space.num_choices) > 1))
        position = int(self._rng.choice(active))
        others = [c for c in range(self.space.num_choices[position]) if c != child[position]]
        child[position] = int(self._rng.choice(others))
        return child

    def propose(self, count: int) -> list[Trial]:
        if len(self.population) < self.population_size:
            return super().propose(count)
        out: list[Trial] = []
        for _ in range(self.max_attempts * count):
            if len(out) == count:
                break
            members = self._rng.choice(len(self.population), self.tournament_size,
                                       replace=False)
            parent = max((self.population[i] for i in members), key=lambda m: m[1])[0]
            trial = self._trial(self._mutate(parent))
            if trial is not None:
                out.append(trial)
        if len(out) < count:  # the neighbourhood is exhausted: explore uniformly
            out += super().propose(count - len(out))
        return out

    def observe(self, trial: Trial, objectives: Mapping[str, float] | None,
                error: str | None = None) -> None:
        super().observe(trial, objectives, error)
        if objectives is None or error is not None:
            return
        if self.objective not in objectives:
            raise SpecError(f"objective: {self.objective!r} is not among the trial's "
                            f"objectives {sorted(objectives)}")
        self.population.append((list(trial.indices), float(objectives[self.objective])))
        if len(self.population) > self.population_size:
            self.population.pop(0)  # aging: the oldest leaves

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "population": self.population}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.population = [(list(p), float(v)) for p, v in state["population"]]


register_strategy("evolution", RegularizedEvolution)
