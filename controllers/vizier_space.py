"""The model generator for OSS Vizier: a search space as a Vizier problem, and back.

Every decision of a `SearchSpace` (shipped, or declared in the config's
`topology`: its declaration travels in the problem's metadata, so the
server's designers rebuild the same space) becomes one categorical parameter
named by its path (`stages.2.blocks.1.op`), its feasible values the choices
as strings (`"3"`, `"ibn"`); objectives become metrics with their goals.

Inactive decisions (a kernel size under a `skip` op, a decision nested in a
branch not taken) are *canonicalised*, not conditional parameters: Vizier's
NSGA-II and Eagle strategy refuse conditional search spaces, and a space's
activity can depend on a combination of choices, which Vizier's one-parent
conditions cannot state. So a suggestion's inactive decisions are replaced by
choice 0 before the network is built (`canonical`): two suggestions that
differ only there are the same network, and the trial handed to the study
says so. Vizier's own algorithms still draw values for them (they do not
know they are inert); the in-tree `regularized_evolution` designer
(`controllers.vizier_designers`) reads the space from the problem's metadata
and mutates active decisions only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np
from vizier import pyvizier as vz

from controllers.vizier_strategy import GOALS
from search_spaces import SearchSpace, SpecError, get_space
from search_spaces.declared import declaration_of, register_declared

NAMESPACE = "tunas"  # problem metadata: the space's name and the study's seed


def _labels(choices: Sequence[object]) -> list[str]:
    labels = [str(c) for c in choices]
    return labels if len(set(labels)) == len(labels) else [str(i) for i in range(len(choices))]


def problem(space: SearchSpace, objectives: Sequence[str], seed: int = 0
            ) -> vz.ProblemStatement:
    """The Vizier problem of `space` optimizing `objectives` (names of GOALS)."""
    out = vz.ProblemStatement()
    root = out.search_space.root
    for d in space.decisions:
        root.add_categorical_param(d.name, _labels(d.choices))
    for name in objectives:
        if name not in GOALS:
            raise SpecError(f"objective {name!r} is unknown; use some of {sorted(GOALS)}")
        goal = vz.ObjectiveMetricGoal[GOALS[name]]
        out.metric_information.append(vz.MetricInformation(name, goal=goal))
    out.metadata.ns(NAMESPACE)["space"] = space.name
    declaration = declaration_of(space)
    if declaration is not None:  # a declared topology: the server's designers rebuild it
        out.metadata.ns(NAMESPACE)["declaration"] = json.dumps(declaration, sort_keys=True)
    out.metadata.ns(NAMESPACE)["seed"] = str(int(seed))
    return out


def space_of(problem_statement: vz.ProblemStatement) -> SearchSpace | None:
    """The space a problem was generated from (None for a problem not made by `problem`)."""
    meta = problem_statement.metadata.ns(NAMESPACE)
    if meta.get("declaration") is not None:  # declared in the study's config, not shipped
        return register_declared(json.loads(meta["declaration"]), "config.topology")
    name = meta.get("space")
    return None if name is None else get_space(name)


def canonical(space: SearchSpace, indices: Sequence[int]) -> tuple[int, ...]:
    """`indices` with every inactive decision set to choice 0 (the same network)."""
    row = np.asarray(indices, np.int64)
    return tuple(int(v) for v in np.where(space.active_mask(row[None])[0], row, 0))


def indices_of(space: SearchSpace, parameters: Mapping[str, object]) -> tuple[int, ...]:
    """Index vector of a Vizier trial's parameters (values as `problem` labels them)."""
    out = []
    for d in space.decisions:
        if d.name not in parameters:
            raise SpecError(f"vizier trial: no parameter {d.name!r}; was the study made "
                            f"for space {space.name!r}?")
        value = parameters[d.name]
        out.append(_labels(d.choices).index(str(getattr(value, "value", value))))
    return tuple(out)


def parameters_of(space: SearchSpace, indices: Sequence[int]) -> dict[str, str]:
    """Vizier parameter values of an index vector."""
    return {d.name: _labels(d.choices)[int(i)]
            for d, i in zip(space.decisions, indices, strict=True)}
