"""Designers of our own for the OSS Vizier server, registered through its policy factory.

`TunasPolicyFactory` is Vizier's `DefaultPolicyFactory` plus the designers in
`DESIGNERS` (name -> factory of a `vza.Designer` from the problem): the
server child (`controllers.vizier_server`) serves it, so a study selects one
by name like any of Vizier's algorithms (`config.vizier.algorithm`). A new
designer is a class in any module that calls `register_designer`; the server
imports that module when the study names it (`config.vizier.designer_modules`).
Our designers are served without Vizier's seeding (which would make the
first trial the centre of the space).

`RegularizedEvolutionDesigner` is Real et al.'s regularized evolution (AAAI
2019) as a Vizier designer: the population is the `population_size` most
recently completed feasible trials (aging), a child mutates one *active*
decision of the best of `tournament_size` uniformly drawn members, and until
the population is full children are uniform. It is stateless between calls
(Vizier hands it every completed trial each time, `DesignerPolicy`), its
random stream seeded by the study's seed and trial count, so a restarted
server continues the same study. It needs a single objective.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence

import numpy as np
from vizier import algorithms as vza
from vizier import pythia
from vizier import pyvizier as vz
from vizier._src.algorithms.policies import designer_policy
from vizier._src.service import policy_factory

from controllers.vizier_space import NAMESPACE, canonical, indices_of, parameters_of, space_of
from search_spaces import SpecError

DesignerFactory = Callable[[vz.ProblemStatement], vza.Designer]


class RegularizedEvolutionDesigner(vza.Designer):
    """Regularized evolution over a problem made by `controllers.vizier_space.problem`."""

    def __init__(self, problem: vz.ProblemStatement, population_size: int = 10,
                 tournament_size: int = 3) -> None:
        self.space = space_of(problem)
        if self.space is None:
            raise SpecError("regularized_evolution: the problem names no search space "
                            "(make it with controllers.vizier_space.problem)")
        if not problem.is_single_objective:
            raise SpecError("regularized_evolution: needs one objective; for a Pareto front "
                            "use NSGA2")
        meta = problem.metadata.ns(NAMESPACE)
        self.population_size = int(meta.get("population_size", population_size))
        self.tournament_size = int(meta.get("tournament_size", tournament_size))
        self.seed = int(meta.get("seed", "0"))
        self.metric = problem.metric_information.item()
        self.completed: list[vz.Trial] = []
        self.seen: set[tuple[int, ...]] = set()

    def update(self, completed: vza.CompletedTrials, all_active: vza.ActiveTrials) -> None:
        for trial in list(completed.trials) + list(all_active.trials):
            self.seen.add(canonical(self.space, indices_of(self.space, trial.parameters)))
        self.completed += list(completed.trials)

    def _score(self, trial: vz.Trial) -> float:
        value = trial.final_measurement.metrics[self.metric.name].value
        return value if self.metric.goal.is_maximize else -value

    def _mutate(self, rng: np.random.Generator, parent: tuple[int, ...]) -> tuple[int, ...]:
        child = np.asarray(parent, np.int64)
        active = np.flatnonzero(self.space.active_mask(child[None])[0]
                                & (np.asarray(self.space.num_choices) > 1))
        position = int(rng.choice(active))
        child[position] = int(rng.choice([c for c in range(self.space.num_choices[position])
                                          if c != child[position]]))
        return canonical(self.space, child)

    def suggest(self, count: int | None = None) -> Sequence[vz.TrialSuggestion]:
        count = count or 1
        feasible = sorted((t for t in self.completed if not t.infeasible),
                          key=lambda t: (t.completion_time, t.id))
        population = [(canonical(self.space, indices_of(self.space, t.parameters)),
                       self._score(t)) for t in feasible[-self.population_size:]]
        rng = np.random.default_rng(zlib.crc32(f"{self.seed}/{len(self.seen)}".encode()))
        out: list[tuple[int, ...]] = []
        for _ in range(1000 * count):
            if len(out) == count:
                break
            if len(population) < self.population_size:
                child = canonical(self.space, self.space.sample(rng))
            else:
                members = rng.choice(len(population), self.tournament_size, replace=False)
                parent = max((population[i] for i in members), key=lambda m: m[1])[0]
                child = self._mutate(rng, parent)
            if child not in self.seen:  # a network already proposed is not proposed again
                self.seen.add(child)
                out.append(child)
        while len(out) < count:  # the space is exhausted: repeats rather than nothing
            out.append(canonical(self.space, self.space.sample(rng)))
        return [vz.TrialSuggestion(parameters_of(self.space, c)) for c in out]


DESIGNERS: dict[str, DesignerFactory] = {"REGULARIZED_EVOLUTION": RegularizedEvolutionDesigner}


def register_designer(name: str, factory: DesignerFactory) -> None:
    """Serve `factory(problem)` as Vizier algorithm `name` (upper case, as Vizier's)."""
    if name in DESIGNERS and DESIGNERS[name] is not factory:
        raise SpecError(f"vizier designer {name!r} is already registered; pick another name")
    DESIGNERS[name] = factory


class TunasPolicyFactory(policy_factory.DefaultPolicyFactory):
    """Vizier's algorithms, plus the designers registered here by name."""

    def __call__(self, problem_statement: vz.ProblemStatement, algorithm: str,
                 policy_supporter: pythia.PolicySupporter, study_name: str) -> pythia.Policy:
        if algorithm in DESIGNERS:
            # No seeding: Vizier would make the first trial the space's centre instead.
            return designer_policy.DesignerPolicy(policy_supporter, DESIGNERS[algorithm],
                                                  use_seeding=False)
        return super().__call__(problem_statement, algorithm, policy_supporter, study_name)
