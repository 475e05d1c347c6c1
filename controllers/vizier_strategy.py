"""The `vizier` strategy: an OSS Vizier study behind the propose/observe interface.

    get_strategy("vizier", space, seed=0, algorithm="NSGA2", objectives=("quality",
                 "latency_ms"), database_url="sqlite:////W/vizier.db")

The study (its trials, parameters, measurements) lives in Vizier's SQL
datastore. With `server=''` a Vizier server is started in a child process on
loopback (`controllers.vizier_server`) over `database_url` and stopped by
`close()`; with `server='HOST:PORT'` the strategy is a client of a running
one. Only Vizier's client runs in this process (it imports no jax); its
servicer, which turns on `jax_enable_x64`, never does.

Resume: `propose` asks Vizier for `count` more trials than those handed out
and not yet observed, as one client id; Vizier returns the client's ACTIVE
trials first, so a trial suggested before a kill and never recorded is handed
out after the restart (not lost), and one already handed out is not handed
out again. `observe` of a trial Vizier already has completed (the kill came
between Vizier's write and the study's) does not complete it twice. A failed
trial is completed as infeasible with its error.

With `feasible` (the study's latency band, `controllers.strategy`), a suggestion it
rejects is completed in Vizier as infeasible at once, never trained: Vizier's
designers learn where the band is, and the study's trial budget counts trained
candidates only. Suggestions are then asked for `FEASIBLE_BATCH` at a time (one
round trip per suggestion would dominate when 1 in 100 is in the band); the ones
not needed stay ACTIVE in Vizier and are handed out by a later `propose`.

A trial's id is Vizier's minus one (Vizier counts from 1); its indices are the
suggestion with inactive decisions canonicalised (`controllers.vizier_space`).
A suggestion of a network already measured (Vizier's own algorithms draw
inactive decisions too) is not trained again: Vizier gets the measured
objectives for it at once and it is not handed out (so trial ids can skip).
The algorithm is `algorithm` (`ALGORITHMS`); Vizier seeds its own, the
in-tree designers take `seed`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from controllers.strategy import Feasible, Trial, register_strategy
from search_spaces import SearchSpace, SpecError

# Vizier's algorithms that run on the `vizier` extra (google-vizier 0.1.24, no jax extra),
# and the designers of controllers.vizier_designers (served by our server). Not here:
# GP_UCB_PE and GAUSSIAN_PROCESS_BANDIT (tensorflow-probability: the jax extra), CMA_ES
# (evojax), BOCS (cvxpy), HARMONICA (boolean spaces only), SHUFFLED_GRID_SEARCH (its
# factory passes an argument the grid designer does not take in 0.1.24).
VIZIER_ALGORITHMS = ("RANDOM_SEARCH", "QUASI_RANDOM_SEARCH", "GRID_SEARCH", "NSGA2",
                     "EAGLE_STRATEGY")
OWN_DESIGNERS = ("REGULARIZED_EVOLUTION",)
ALGORITHMS = VIZIER_ALGORITHMS + OWN_DESIGNERS
# Algorithms that optimize one objective only (NSGA2 is the one for a Pareto front).
SINGLE_OBJECTIVE = ("EAGLE_STRATEGY", "REGULARIZED_EVOLUTION")
# Objectives a study can hand to Vizier, with their goals (Vizier's ObjectiveMetricGoal).
# `latency_ratio`: a multi-hardware study's combined ratio (ms on several devices do not add).
GOALS = {"reward": "MAXIMIZE", "quality": "MAXIMIZE", "latency_ms": "MINIMIZE",
         "latency_ratio": "MINIMIZE", "energy_mj": "MINIMIZE", "params": "MINIMIZE"}
OWNER = "tunas-jax"
CLIENT_ID = "tunas-jax-study"
MAX_SUGGEST_ROUNDS = 100  # suggestion rounds per propose() that may yield only repeats
# With a feasibility check: suggestions asked per round beyond the ones needed, and the
# rounds one propose() may take (FEASIBLE_BATCH x FEASIBLE_ROUNDS suggestions checked
# before it gives up on the band).
FEASIBLE_BATCH = 32
FEASIBLE_ROUNDS = 500


def _key(indices: Sequence[int]) -> str:
    return ",".join(str(int(i)) for i in indices)


def check_settings(algorithm: str, objectives: Sequence[str], server: str, where: str,
                   designer_modules: Sequence[str] = ()) -> None:
    """One clear error naming the field for a bad setting (no Vizier import needed).
    An algorithm of `designer_modules` is checked once the server has imported them."""
    if algorithm not in ALGORITHMS and not designer_modules:
        raise SpecError(f"{where}.algorithm: {algorithm!r} is not one that runs here; use one "
                        f"of {list(ALGORITHMS)} (or a designer of {where}.designer_modules)")
    if designer_modules and server:
        raise SpecError(f"{where}.designer_modules: only for a server the study starts; "
                        f"start {server}'s with `python -m controllers.vizier_server "
                        "--designer_module=...` instead")
    if not objectives or any(o not in GOALS for o in objectives):
        raise SpecError(f"{where}.objectives: {tuple(objectives)} must be a non-empty tuple of "
                        f"{sorted(GOALS)}")
    if algorithm in SINGLE_OBJECTIVE and len(objectives) != 1:
        raise SpecError(f"{where}.objectives: {algorithm} optimizes one objective, got "
                        f"{tuple(objectives)}; use NSGA2 for several")
    if server:
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit():
            raise SpecError(f"{where}.server: {server!r} is not HOST:PORT (leave it '' to "
                            "start a server under the workdir)")


class VizierStrategy:
    """propose/observe as a client of a Vizier study (see the module docstring)."""

    name = "vizier"

    def __init__(self, space: SearchSpace, seed: int = 0, *, algorithm: str = "NSGA2",
                 objectives: Sequence[str] = ("reward",), database_url: str = "",
                 server: str = "", study_id: str = "tunas", population_size: int = 10,
                 tournament_size: int = 3, server_log: str | None = None,
                 designer_modules: Sequence[str] = (), feasible: Feasible | None = None
                 ) -> None:
        check_settings(algorithm, objectives, server, "vizier", designer_modules)
        if algorithm == "REGULARIZED_EVOLUTION" and not 1 <= tournament_size <= population_size:
            raise SpecError(f"tournament_size: {tournament_size} must be in [1, population_size "
                            f"= {population_size}]")
        from vizier.service import clients
        from vizier.service import pyvizier as vz

        from controllers import vizier_server, vizier_space

        self.space, self.objectives = space, tuple(objectives)
        self.feasible = feasible
        self.rejected = 0  # suggestions `feasible` turned down (completed as infeasible)
        self._vz, self._space_lib = vz, vizier_space
        self._handed: set[int] = set()
        self._observed: set[int] = set()
        self._results: dict[str, dict[str, float]] = {}  # network -> what Vizier was told
        self._server = None
        if not server:
            if not database_url:
                raise SpecError("vizier.database_url: needed when no vizier.server is given")
            self._server = vizier_server.VizierServerProcess(database_url, server_log,
                                                             tuple(designer_modules))
            server = self._server.endpoint
            served = self._server.algorithms
            if algorithm not in served:
                self.close()
                raise SpecError(f"vizier.algorithm: {algorithm!r} is not served by the Vizier "
                                f"server (with designer_modules {tuple(designer_modules)}); "
                                f"it serves {list(served)}")
        self.endpoint = server
        clients.environment_variables.server_endpoint = server
        problem = vizier_space.problem(space, objectives, seed)
        meta = problem.metadata.ns(vizier_space.NAMESPACE)
        meta["population_size"], meta["tournament_size"] = str(population_size), str(
            tournament_size)
        study_config = vz.StudyConfig.from_problem(problem)
        study_config.algorithm = algorithm
        try:
            self.study = clients.Study.from_study_config(study_config, owner=OWNER,
                                                         study_id=study_id)
            stored = self.study.materialize_study_config()
        except Exception:
            self.close()
            raise
        if stored.algorithm != algorithm or sorted(m.name for m in stored.metric_information) \
                != sorted(objectives):
            self.close()
            raise SpecError(f"vizier.study_id: study {study_id!r} on {server} was made with "
                            f"{stored.algorithm} on {[m.name for m in stored.metric_information]}"
                            "; use another study_id (or workdir) for another setting")

    def propose(self, count: int) -> list[Trial]:
        if count <= 0:
            raise SpecError(f"propose: count {count} must be positive")
        out: list[Trial] = []
        extra, rounds = (0, MAX_SUGGEST_ROUNDS) if self.feasible is None else (
            FEASIBLE_BATCH, FEASIBLE_ROUNDS)
        for _ in range(rounds):
            outstanding = len(self._handed - self._observed)
            for vizier_trial in self.study.suggest(count=count - len(out) + outstanding + extra,
                                                   client_id=CLIENT_ID):
                if len(out) == count:
                    break  # the rest stay ACTIVE: Vizier hands them out again next time
                if vizier_trial.id in self._handed:
                    continue
                indices = self._space_lib.canonical(
                    self.space, self._space_lib.indices_of(self.space, vizier_trial.parameters))
                self._handed.add(vizier_trial.id)
                known = self._results.get(_key(indices))
                if known is not None:  # a network already measured: Vizier gets its result
                    self._observed.add(vizier_trial.id)
                    vizier_trial.complete(self._vz.Measurement(known))
                    continue
                if self.feasible is not None and not self.feasible(np.asarray(indices)):
                    self.rejected += 1
                    self._observed.add(vizier_trial.id)
                    vizier_trial.complete(infeasible_reason="rejected before training by "
                                          "the study's feasibility check (latency band)")
                    continue
                out.append(Trial(vizier_trial.id - 1, indices))
            if len(out) >= count:
                break
        if self.feasible is not None and len(out) < count:
            raise SpecError(f"propose: {len(out)} of {count} candidates after {rounds} rounds "
                            f"of suggestions ({self.rejected} rejected as infeasible so far); "
                            "the constraint (e.g. config.latency_band) is too narrow for "
                            "this algorithm: widen it or use the in-tree strategies")
        return out[:count]

    def observe(self, trial: Trial, objectives: Mapping[str, float] | None,
                error: str | None = None) -> None:
        vizier_trial = self.study.get_trial(trial.id + 1)
        self._observed.add(trial.id + 1)
        if vizier_trial.materialize().status == self._vz.TrialStatus.COMPLETED:
            return  # completed before an interruption: never twice
        if objectives is None or error is not None:
            vizier_trial.complete(infeasible_reason=(error or "failed")[:1000])
            return
        missing = [o for o in self.objectives if o not in objectives]
        if missing:
            raise SpecError(f"vizier.objectives: {missing} are not among the trial's "
                            f"objectives {sorted(objectives)}")
        measured = {o: float(objectives[o]) for o in self.objectives}
        self._results[_key(trial.indices)] = measured
        vizier_trial.complete(self._vz.Measurement(measured))

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "study": self.study.resource_name,
                "handed": sorted(self._handed), "observed": sorted(self._observed),
                "results": self._results, "rejected": self.rejected}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("name") != self.name:
            raise SpecError(f"strategy state: of {state.get('name')!r}, not {self.name!r}")
        if state["study"] != self.study.resource_name:
            raise SpecError(f"strategy state: of Vizier study {state['study']!r}, not "
                            f"{self.study.resource_name!r}")
        self._handed, self._observed = set(state["handed"]), set(state["observed"])
        self._results = {k: dict(v) for k, v in state["results"].items()}
        self.rejected = int(state.get("rejected", 0))

    def close(self) -> None:
        """Stop the server this strategy started (a no-op for a remote one)."""
        if self._server is not None:
            self._server.stop()
            self._server = None


register_strategy("vizier", VizierStrategy)
