"""`run_study(config, workdir)`: multi-trial NAS, resumable, with a Pareto front.

    tunas-jax multi-trial --config experiments/multi_trial/micro_digits.py --workdir W

A strategy (`controllers.get_strategy`: random search, regularized evolution,
or `vizier`, an OSS Vizier study set up by `config.vizier`) proposes
architectures of the config's space; each candidate is trained by the
proxy trainer (`tunas_jax.train.run_training` with `config.proxy`, scored on a
split held out of its training split), costed through the cost interface on
the config's targets (the training's cost report), and scored with TuNAS's
`abs` reward; the strategy observes the objectives and proposes the next.
With `config.latency_band` every strategy trains only candidates whose
simulated latency is in the band around the target (`latency_filter`:
costed before training, as the trial will report it; the `vizier` strategy
completes the others in Vizier as infeasible).

The study lives in `W/study.sqlite` (SQLite, standard library):
- a trial row is written in the same transaction as the strategy state that
  proposed it, and its result in the same transaction as the state that
  observed it, so a study killed at any point and restarted with the same
  command continues with no trial lost and none evaluated twice: a trial
  proposed but not finished is finished (its training resumes from its own
  checkpoints), never proposed again;
- a failed trial is recorded with its error and the study goes on.
With the `vizier` strategy the Vizier study lives in Vizier's SQL datastore
(`W/vizier.db` unless `config.vizier.database_url` or `config.vizier.server`
says otherwise) and `W/study.sqlite` is the loop's ledger of what it handed
out; the strategy keeps the two consistent across a kill
(`controllers.vizier_strategy`).

Trials run in this process, in `config.workers` local worker processes, or
as Ray tasks (`config.executor = 'ray'`, `cost_models.ray_executor.RayTaskPool`).

Outputs: `W/config.json`, `W/trials.jsonl` (every finished trial), `W/pareto.json` (the
non-dominated trials: max quality, min latency; and under `energy_front`, max
quality, min energy) and `W/architecture.json`
(the best trial by reward, in the architecture format with
`search_method: multi_trial`). Trials train in `W/trials/trial_NNNN/`.
"""

from __future__ import annotations

import concurrent.futures as futures
import contextlib
import hashlib
import importlib.util
import json
import multiprocessing
import os
import socket
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import ml_collections
import numpy as np

import controllers
from controllers.strategy import Trial, strategy_names
from cost_models.interface import check_targets
from search_spaces import (
    Architecture,
    SpecError,
    atomic_write,
    get_space,
    write_json_atomic,
)
from search_spaces.declared import register_declared
from tunas_jax import search_targets, train
from tunas_jax.checkpointing import make_workdir
from tunas_jax.config_defaults import multi_trial_defaults
from tunas_jax.errors import UsageError
from tunas_jax.pareto import pareto_front
from tunas_jax.progress import progress

DATABASE_FILE = "study.sqlite"
VIZIER_DB = "vizier.db"  # the `vizier` strategy's study (Vizier's SQL datastore)
VIZIER_LOG = "vizier_server.log"
CONFIG_FILE = "config.json"
TRIALS_FILE = "trials.jsonl"
PARETO_FILE = "pareto.json"
ARCHITECTURE_FILE = "architecture.json"
FIELDS = sorted(multi_trial_defaults())


# ---- config -----------------------------------------------------------------------------
def validate_config(config: ml_collections.ConfigDict) -> None:
    """One clear error naming the field and the fix for the first problem found."""
    unknown = sorted(set(config) - set(FIELDS))
    if unknown:
        raise UsageError(f"config.{unknown[0]}: unknown field; known: {FIELDS}")
    get_space(config.space)
    check_targets(config.targets, "config.targets")
    if config.strategy not in strategy_names():
        raise UsageError(f"config.strategy: {config.strategy!r} is unknown; use one of "
                         f"{strategy_names()}")
    if config.strategy == "vizier":
        validate_vizier(config.vizier)
    if config.executor not in ("local", "ray"):
        raise UsageError(f"config.executor: {config.executor!r} is unknown; use 'local' "
                         "(worker processes here) or 'ray' (Ray tasks)")
    if float(config.latency_band) < 0:
        raise UsageError(f"config.latency_band: {config.latency_band} must be >= 0 "
                         "(0 = no band, 0.05 = within 5% of the target)")
    for name in ("num_trials", "workers", "population_size", "tournament_size"):
        if int(config[name]) < 1:
            raise UsageError(f"config.{name}: {config[name]} must be at least 1")
    if float(config.target_latency_ms) <= 0:
        raise UsageError(f"config.target_latency_ms: {config.target_latency_ms} must be > 0 "
                         "(ms of config.latency_metric on the first target)")
    search_targets.target_latencies_ms(config)
    search_targets.multi_hardware_metric(config)
    train.check_train_config(proxy_config(config, "unused"))


def validate_vizier(vizier: ml_collections.ConfigDict) -> None:
    """config.vizier: known fields, the extra installed, settings Vizier can run."""
    known = sorted(multi_trial_defaults().vizier)
    unknown = sorted(set(vizier) - set(known))
    if unknown:
        raise UsageError(f"config.vizier.{unknown[0]}: unknown field; known: {known}")
    if importlib.util.find_spec("vizier") is None:
        raise UsageError("config.strategy: 'vizier' needs OSS Vizier; pip install "
                         "'tunas-jax[vizier]' (or pick 'random' or 'evolution')")
    from controllers.vizier_strategy import check_settings

    try:
        check_settings(vizier.algorithm, tuple(vizier.objectives), vizier.server,
                       "config.vizier", tuple(vizier.designer_modules))
    except SpecError as err:
        raise UsageError(str(err)) from None


def proxy_config(config: ml_collections.ConfigDict, architecture: str
                 ) -> ml_collections.ConfigDict:
    """The proxy training recipe for one candidate (the study's targets and metric)."""
    proxy = ml_collections.ConfigDict(config.proxy.to_dict())
    proxy.architecture = architecture
    proxy.targets = tuple(config.targets)
    proxy.latency_metric = config.latency_metric
    return proxy


def make_strategy(config: ml_collections.ConfigDict, workdir: str) -> controllers.Strategy:
    space = get_space(config.space)
    feasible = latency_filter(config)
    if config.strategy == "vizier":
        # The Vizier study: a server of our own over W/vizier.db unless one is named.
        v = config.vizier
        study_id = v.study_id or "w" + hashlib.sha1(os.path.abspath(workdir).encode()
                                                     ).hexdigest()[:16]
        return controllers.get_strategy(
            "vizier", space, seed=int(config.seed), algorithm=v.algorithm,
            objectives=tuple(v.objectives), server=v.server, study_id=study_id,
            database_url=v.database_url or "sqlite:///" + os.path.join(workdir, VIZIER_DB),
            population_size=int(config.population_size),
            tournament_size=int(config.tournament_size),
            server_log=os.path.join(workdir, VIZIER_LOG),
            designer_modules=tuple(v.designer_modules), feasible=feasible)
    if config.strategy == "evolution":
        return controllers.get_strategy("evolution", space, seed=int(config.seed),
                                        population_size=int(config.population_size),
                                        tournament_size=int(config.tournament_size),
                                        feasible=feasible)
    return controllers.get_strategy(config.strategy, space, seed=int(config.seed),
                                    feasible=feasible)


def latency_filter(config: ml_collections.ConfigDict
                   ) -> Callable[[np.ndarray], bool] | None:
    """None without `config.latency_band`; else `feasible(indices)`: the candidate's
    latency ratio (the proxy training's own cost report, so exactly what its trial will
    report) is within 1 +/- latency_band. Costing takes under a millisecond."""
    band = float(config.latency_band)
    if band <= 0:
        return None
    from tunas_jax.data import sources

    proxy = proxy_config(config, "")
    source = sources.load_source(proxy.dataset, proxy.dataset.train_split,
                                 "config.proxy.dataset.train_split")
    num_classes = sources.num_classes(source)
    channels = int(source.dataset_info.features["image"].shape[-1])
    space = get_space(config.space)

    def feasible(indices: np.ndarray) -> bool:
        report = train.cost_report(proxy, Architecture.from_indices(space, indices),
                                   num_classes, channels, log=lambda _: None)
        return abs(latency_ratio(config, report["latency_ms_by_target"]) - 1.0) <= band

    return feasible


def latency_ratio(config: ml_collections.ConfigDict, by_target: dict[str, float]) -> float:
    """The reward's latency ratio: T / T0 for one target; for several, the search's
    combination of the T_i / T0_i (float32, as in its step)."""
    targets = search_targets.search_targets(config)
    ratios = [by_target[t] / t0 for t, t0 in
              zip(targets, search_targets.target_latencies_ms(config), strict=True)]
    return ratios[0] if len(ratios) == 1 else float(
        controllers.combine_latency_ratios(ratios, config.multi_hardware_metric))


# ---- the study database ---------------------------------------------------------------------
class Study:
    """Trials and the strategy's state in SQLite; each change one transaction."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)  # explicit transactions
        self.db.execute("CREATE TABLE IF NOT EXISTS trials (id INTEGER PRIMARY KEY, "
                        "indices TEXT NOT NULL, state TEXT NOT NULL, result TEXT, "
                        "error TEXT, started REAL, finished REAL)")
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, "
                        "value TEXT NOT NULL)")

    def meta(self, key: str) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def _set(self, key: str, value: Any) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def start(self, config: dict[str, Any]) -> None:
        """Record the config of a new study; refuse another study's workdir."""
        config = json.loads(json.dumps(config))  # as stored: tuples come back as lists
        previous = self.meta("config")
        if previous is None:
            self.db.execute("BEGIN")
            self._set("config", config)
            self.db.execute("COMMIT")
        elif previous != config:
            changed = sorted(k for k in set(config) | set(previous)
                             if config.get(k) != previous.get(k))
            raise UsageError(f"--workdir: holds a study with other {changed}; rerun it with "
                             "its own config or use a new workdir")

    def add(self, trials: list[Trial], strategy_state: dict[str, Any]) -> None:
        self.db.execute("BEGIN")
        for trial in trials:
            self.db.execute("INSERT INTO trials (id, indices, state, started) VALUES "
                            "(?, ?, 'running', ?)", (trial.id, json.dumps(trial.indices),
                                                     time.time()))
        self._set("strategy", strategy_state)
        self.db.execute("COMMIT")

    def finish(self, trial: Trial, result: dict[str, Any] | None, error: str | None,
               strategy_state: dict[str, Any]) -> None:
        self.db.execute("BEGIN")
        self.db.execute("UPDATE trials SET state = ?, result = ?, error = ?, finished = ? "
                        "WHERE id = ?", ("failed" if error else "completed",
                                         json.dumps(result), error, time.time(), trial.id))
        self._set("strategy", strategy_state)
        self.db.execute("COMMIT")

    def running(self) -> list[Trial]:
        return [Trial(i, tuple(json.loads(ix))) for i, ix in self.db.execute(
            "SELECT id, indices FROM trials WHERE state = 'running' ORDER BY id")]

    def finished(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT id, indices, state, result, error FROM trials "
                               "WHERE state != 'running' ORDER BY id")
        return [{"id": i, "indices": json.loads(ix), "state": st,
                 **(json.loads(res) or {}), **({"error": err} if err else {})}
                for i, ix, st, res, err in rows]

    def close(self) -> None:
        self.db.close()


# ---- one trial --------------------------------------------------------------------------------
def evaluate_trial(config_dict: dict[str, Any], workdir: str, trial_id: int,
                   indices: list[int]) -> dict[str, Any]:
    """Train and cost one candidate (in a worker process or this one): its objectives."""
    config = ml_collections.ConfigDict(config_dict)
    if config.get("topology"):  # a spawned worker has not read the config file
        register_declared(config.topology.to_dict(), "config.topology")
    space = get_space(config.space)
    name = f"trial_{trial_id:04d}"
    arch_path = os.path.join(workdir, "architectures", f"{name}.json")
    os.makedirs(os.path.dirname(arch_path), exist_ok=True)
    Architecture.from_indices(space, indices, name=name).save(arch_path)
    result = train.run_training(proxy_config(config, arch_path),
                                os.path.join(workdir, "trials", name), log=lambda _: None)
    targets = search_targets.search_targets(config)
    by_target = {t: float(result["latency_ms_by_target"][t]) for t in targets}
    ratio = latency_ratio(config, by_target)
    return {"quality": float(result["quality"]), "quality_metric": result["quality_metric"],
            "latency_ms": by_target[targets[0]], "latency_metric": result["latency_metric"],
            "latency_ms_by_target": by_target, "latency_ratio": ratio,
            "target": result["target"], "energy_mj": float(result["energy_mj"]),
            "params": int(result["params"]),
            # Which machine and process trained it (Ray spreads trials over machines).
            "worker": f"{socket.gethostname()}:{os.getpid()}",
            "reward": float(result["quality"]) + float(config.reward_beta) * abs(ratio - 1.0)}


# ---- outputs ---------------------------------------------------------------------------------
def latency_objective(config: ml_collections.ConfigDict) -> str:
    """The trial field the Pareto front minimizes: the first (only) target's latency, or
    for several targets the combined ratio (ms on different devices do not compare)."""
    return "latency_ms" if len(config.targets) == 1 else "latency_ratio"


def pareto_trials(trials: list[dict[str, Any]], latency_key: str = "latency_ms"
                  ) -> list[dict[str, Any]]:
    """Completed trials no other completed trial beats on both quality (max) and
    `latency_key` (min: a latency, or any cost such as `energy_mj`), cheapest first."""
    done = [t for t in trials if t["state"] == "completed"]
    front = pareto_front([t[latency_key] for t in done], [t["quality"] for t in done])
    return [done[i] for i in front]


def write_outputs(config: ml_collections.ConfigDict, workdir: str,
                  trials: list[dict[str, Any]]) -> dict[str, Any]:
    with atomic_write(os.path.join(workdir, TRIALS_FILE)) as f:
        f.writelines(json.dumps(t, sort_keys=True) + "\n" for t in trials)
    latency_key = latency_objective(config)
    front = pareto_trials(trials, latency_key)
    energy_front = pareto_trials(trials, "energy_mj")
    write_json_atomic(os.path.join(workdir, PARETO_FILE), {
        "objectives": {"quality": "max", latency_key: "min"}, "trials": front,
        # The same trials' front on energy (the first target's, from the cost interface).
        "energy_front": {"objectives": {"quality": "max", "energy_mj": "min"},
                         "trials": energy_front}})
    done = [t for t in trials if t["state"] == "completed"]
    summary: dict[str, Any] = {"trials": len(trials), "completed": len(done),
                               "failed": len(trials) - len(done), "pareto": len(front),
                               "energy_pareto": len(energy_front)}
    if done:
        best = max(done, key=lambda t: t["reward"])
        space = get_space(config.space)
        Architecture.from_indices(space, best["indices"], name=f"multi_trial_{space.name}").save(
            os.path.join(workdir, ARCHITECTURE_FILE), extra={
                "search_method": "multi_trial", "strategy": config.strategy,
                "trial": best["id"], "target": best["target"],
                "latency_metric": best["latency_metric"],
                "target_latency_ms": float(config.target_latency_ms),
                "simulated_latency_ms": best["latency_ms"], "quality": best["quality"],
                "quality_metric": best["quality_metric"], "reward": best["reward"],
                **multi_target_fields(config, best)})
        summary["best"] = best
    return summary


def multi_target_fields(config: ml_collections.ConfigDict, trial: dict[str, Any]
                        ) -> dict[str, Any]:
    """A multi-hardware study's per-device fields of architecture.json (the search's names)."""
    if len(config.targets) == 1:
        return {}
    targets = search_targets.search_targets(config)
    t0 = dict(zip(targets, search_targets.target_latencies_ms(config), strict=True))
    return {"targets": list(targets), "latency_ms_by_target": trial["latency_ms_by_target"],
            "target_latency_ms_by_target": t0,
            "latency_ratio_by_target": {t: trial["latency_ms_by_target"][t] / t0[t]
                                        for t in targets},
            "multi_hardware_metric": config.multi_hardware_metric,
            "combined_latency_ratio": trial["latency_ratio"]}


def make_pool(config: ml_collections.ConfigDict) -> Any:
    """What runs trials: None (this process), worker processes, or Ray tasks; each has
    `submit(fn, *args) -> Future` and `shutdown(cancel_futures=...)`."""
    workers = int(config.workers)
    if config.executor == "ray":
        from cost_models.ray_executor import RayTaskPool

        try:
            return RayTaskPool(workers, config.ray_address or None)
        except SpecError as err:  # the extra is missing
            raise UsageError(f"config.executor: {err}") from None
    if workers > 1:
        return futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(
            "spawn"))
    return None


# ---- the loop -----------------------------------------------------------------------------------
def run_study(config: ml_collections.ConfigDict, workdir: str | os.PathLike, *,
              log: Callable[[str], Any] = print, stop_after_trials: int | None = None
              ) -> dict[str, Any]:
    """Run (or resume) the study of `config` in `workdir`; returns the summary.

    `stop_after_trials` returns after that many finished trials in this call (a drill
    for resuming); the summary then has `stopped: True`.
    """
    validate_config(config)
    workdir = make_workdir(workdir)
    start = time.monotonic()
    study = Study(os.path.join(workdir, DATABASE_FILE))
    stack = contextlib.ExitStack()
    try:
        study.start(config.to_dict())
        write_json_atomic(os.path.join(workdir, CONFIG_FILE), config.to_dict())
        strategy = make_strategy(config, workdir)
        stack.callback(getattr(strategy, "close", lambda: None))  # e.g. a Vizier server
        saved = study.meta("strategy")
        if saved is not None:
            strategy.load_state_dict(saved)
        pending = study.running()  # proposed before an interruption: finish, don't repropose
        finished = len(study.finished())
        if pending or finished:
            log(f"resuming: {finished} trials finished, {len(pending)} to finish")
        total, done_here = int(config.num_trials), 0
        config_dict = config.to_dict()
        workers = int(config.workers)
        pool = make_pool(config)
        in_flight: dict[futures.Future, Trial] = {}

        def submit(trial: Trial) -> None:
            args = (config_dict, workdir, trial.id, list(trial.indices))
            if pool is None:
                future: futures.Future = futures.Future()
                try:
                    future.set_result(evaluate_trial(*args))
                except Exception as err:  # a failed trial is recorded, the study goes on
                    future.set_exception(err)
            else:
                future = pool.submit(evaluate_trial, *args)
            in_flight[future] = trial

        try:
            with progress(total=total, initial=finished, desc="multi-trial",
                          unit="trial") as bar:
                while True:
                    out_of_time = (float(config.max_wall_seconds) > 0
                                   and time.monotonic() - start > float(config.max_wall_seconds))
                    stopping = stop_after_trials is not None and done_here >= stop_after_trials
                    room = total - finished - len(in_flight) - len(pending)
                    if not (out_of_time or stopping) and room > 0 and \
                            len(in_flight) + len(pending) < workers:
                        proposed = strategy.propose(min(room, workers - len(in_flight)
                                                        - len(pending)))
                        study.add(proposed, strategy.state_dict())
                        pending += proposed
                    while pending and len(in_flight) < workers and not stopping:
                        submit(pending.pop(0))
                    if not in_flight:
                        break
                    done, _ = futures.wait(in_flight, return_when=futures.FIRST_COMPLETED)
                    for future in done:
                        trial = in_flight.pop(future)
                        try:
                            result, error = future.result(), None
                        except Exception as err:  # recorded as failed, with its error
                            result, error = None, f"{type(err).__name__}: {err}"
                            log(f"trial {trial.id} failed: {error}")
                        strategy.observe(trial, result, error)
                        study.finish(trial, result, error, strategy.state_dict())
                        finished += 1
                        done_here += 1
                        bar.update(1)
                        if result:
                            bar.set_postfix(q=f"{result['quality']:.3f}",
                                            lat=f"{result['latency_ms']:.4f}")
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        summary = write_outputs(config, workdir, study.finished())
        summary["rejected_by_latency_band"] = int(getattr(strategy, "rejected", 0))
    finally:
        stack.close()
        study.close()
    summary["stopped"] = finished < total
    summary["wall_time_s"] = round(time.monotonic() - start, 1)
    return summary
