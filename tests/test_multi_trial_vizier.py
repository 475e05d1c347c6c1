"""The `vizier` multi-trial strategy against real OSS Vizier servers (child processes on
loopback over SQLite files): a trained study with NSGA-II's Pareto front and a restart, a
server the test starts, every algorithm listed as running here, the regularized-evolution
designer, resuming without losing or repeating a trial (after SIGKILL too), the server
never outliving its study, and bad config.vizier values."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import controllers
import search_spaces
from controllers import vizier_space
from controllers.vizier_server import VizierServerProcess
from controllers.vizier_strategy import ALGORITHMS
from tunas_jax import multi_trial
from tunas_jax.config_files import load_config
from tunas_jax.errors import UsageError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "experiments/multi_trial/micro_digits_vizier.py")
TINY = {"num_trials": 2, "population_size": 2, "tournament_size": 1,
        "proxy.dataset.image_size": 8, "proxy.num_epochs": 0, "proxy.num_steps": 2,
        "proxy.batch_size": 32, "proxy.eval_batch_size": 256, "proxy.num_threads": 1,
        "proxy.log_every_steps": 1, "proxy.ema_decay": 0.0, "latency_band": 0.0}
SPACE = search_spaces.get_space("micro")


def synthetic(trial) -> dict[str, float]:
    """A deterministic stand-in for training: larger choices = better and slower."""
    total = float(sum(trial.indices))
    return {"reward": total, "quality": total / 100.0, "latency_ms": 1.0 + total}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One Vizier server the tests start (server mode), its study in a SQLite file."""
    folder = tmp_path_factory.mktemp("vizier_server")
    proc = VizierServerProcess(f"sqlite:///{folder}/vizier.db", str(folder / "server.log"))
    yield proc
    proc.stop()


def test_cli_nsga2_study_killed_with_sigkill_resumes_without_loss_or_repeat(tmp_path):
    nsga2 = {**TINY, "vizier.algorithm": "NSGA2", "vizier.objectives": ("quality", "latency_ms")}
    args = [sys.executable, "-m", "tunas_jax.cli", "multi-trial", "--config", CONFIG,
            "--workdir", str(tmp_path)] + [f"--config.{k}={v}" for k, v in nsga2.items()]
    database = tmp_path / "study.sqlite"

    def completed() -> int:
        try:
            with sqlite3.connect(database) as db:
                return db.execute("SELECT COUNT(*) FROM trials WHERE state = 'completed'"
                                  ).fetchone()[0]
        except sqlite3.OperationalError:  # not created yet
            return 0

    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while completed() < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert completed() >= 1
    result = tmp_path / "trials" / "trial_0000" / "result.json"
    stamp = result.stat().st_mtime_ns
    rerun = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert result.stat().st_mtime_ns == stamp  # finished before the kill: not retrained

    trials = [json.loads(line) for line in (tmp_path / "trials.jsonl").read_text().splitlines()]
    assert [(t["id"], t["state"]) for t in trials] == [(0, "completed"), (1, "completed")]
    for t in trials:  # inactive decisions canonicalised to choice 0
        assert tuple(t["indices"]) == vizier_space.canonical(SPACE, t["indices"])
    front = json.loads((tmp_path / "pareto.json").read_text())["trials"]
    for t in trials:
        assert any(f["id"] == t["id"] or (f["quality"] >= t["quality"]
                                          and f["latency_ms"] <= t["latency_ms"])
                   for f in front)
    # The study itself lives in Vizier's datastore under W: exactly these two trials,
    # completed there with the objectives the study measured.
    proc = VizierServerProcess(f"sqlite:///{tmp_path}/vizier.db")
    try:
        strategy = multi_trial.make_strategy(
            load_config(CONFIG, {**nsga2, "vizier.server": proc.endpoint}), str(tmp_path))
        stored = list(strategy.study.trials().get())
    finally:
        proc.stop()
    assert [t.id for t in stored] == [1, 2]
    for t, ours in zip(stored, trials, strict=True):
        assert t.status.name == "COMPLETED"
        assert t.final_measurement.metrics["quality"].value == pytest.approx(ours["quality"])
        assert t.final_measurement.metrics["latency_ms"].value == pytest.approx(
            ours["latency_ms"])


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_listed_algorithm_runs_against_a_started_server(server, algorithm):
    objectives = ("quality", "latency_ms") if algorithm == "NSGA2" else ("reward",)
    strategy = controllers.get_strategy("vizier", SPACE, algorithm=algorithm,
                                        objectives=objectives, server=server.endpoint,
                                        study_id=f"algorithms-{algorithm}")
    handed = []
    for _ in range(3):
        for trial in strategy.propose(2):
            handed.append(trial)
            strategy.observe(trial, synthetic(trial))
    strategy.close()  # a client of someone else's server: leaves it running
    assert len(handed) == 6 and len({t.id for t in handed}) == 6
    assert len({t.indices for t in handed}) == 6  # no network trained twice
    stored = list(strategy.study.trials().get())
    assert all(t.status.name == "COMPLETED" for t in stored)
    # Suggestions of a network already measured (inactive decisions differing) were not
    # handed out: Vizier got the measured objectives for them.
    for t in stored:
        network = vizier_space.canonical(SPACE, vizier_space.indices_of(SPACE, t.parameters))
        assert t.final_measurement.metrics[objectives[0]].value == pytest.approx(
            synthetic(controllers.Trial(0, network))[objectives[0]])


def test_regularized_evolution_designer_mutates_one_active_decision_of_the_winner(server):
    strategy = controllers.get_strategy("vizier", SPACE, seed=1,
                                        algorithm="REGULARIZED_EVOLUTION", objectives=("reward",),
                                        server=server.endpoint, study_id="designer",
                                        population_size=3, tournament_size=3)
    first = strategy.propose(3)  # population not full yet: uniform (canonical) samples
    for trial in first:
        strategy.observe(trial, synthetic(trial))
    best = np.asarray(max(first, key=lambda t: synthetic(t)["reward"]).indices)
    children = strategy.propose(1)  # tournament of the whole population: the best wins
    child = np.asarray(children[0].indices)
    changed = np.flatnonzero(child != best)
    # One active decision of the winner changed; any other change is a decision that
    # change switched off, reset to choice 0 (canonical).
    mutated = [p for p in changed if SPACE.active_mask(child[None])[0, p]]
    assert len(mutated) == 1 and SPACE.active_mask(best[None])[0, mutated[0]]
    assert all(child[p] == 0 for p in changed if p != mutated[0])
    seen = {t.indices for t in first}
    assert children[0].indices not in seen  # no network proposed twice


def test_restart_loses_no_trial_and_hands_none_out_twice(server):
    def fresh():
        return controllers.get_strategy("vizier", SPACE, algorithm="RANDOM_SEARCH",
                                        objectives=("reward",), server=server.endpoint,
                                        study_id="restart")

    a = fresh()
    done = a.propose(1)[0]
    a.observe(done, synthetic(done))
    running = a.propose(1)[0]
    saved = json.loads(json.dumps(a.state_dict()))  # what the study database committed
    lost = a.propose(1)[0]  # suggested by Vizier, then killed before the study recorded it
    b = fresh()
    b.load_state_dict(saved)
    again = b.propose(2)  # the running trial is not handed out again; the lost one is
    assert lost in again and running not in again and done not in again
    b.observe(running, synthetic(running))
    b.observe(running, synthetic(running))  # after a kill between the two writes: no error
    stored = {t.id: t for t in b.study.trials().get()}
    assert stored[running.id + 1].final_measurement.metrics["reward"].value == \
        synthetic(running)["reward"]
    b.observe(lost, None, "ValueError: training diverged")  # failed: infeasible, kept
    assert b.study.get_trial(lost.id + 1).materialize().infeasibility_reason.startswith(
        "ValueError")
    assert not jax.config.jax_enable_x64  # Vizier's servicer (it turns x64 on) ran elsewhere


def test_a_latency_band_completes_suggestions_outside_it_as_infeasible(server, tmp_path):
    """With `feasible` (the study's band) Vizier's suggestions outside it are completed as
    infeasible and never handed out; the study's config wires its band in."""
    def feasible(indices):
        return int(np.sum(indices)) % 3 == 0  # about a third of the networks

    strategy = controllers.get_strategy("vizier", SPACE, algorithm="RANDOM_SEARCH",
                                        objectives=("reward",), server=server.endpoint,
                                        study_id="band", feasible=feasible)
    handed = strategy.propose(2) + strategy.propose(2)
    assert len({t.id for t in handed}) == 4 and all(feasible(t.indices) for t in handed)
    assert strategy.rejected > 0
    stored = {t.id: t for t in strategy.study.trials().get()}
    infeasible = [t for t in stored.values() if t.infeasible]
    assert len(infeasible) == strategy.rejected
    assert all("latency band" in t.infeasibility_reason for t in infeasible)
    assert all(stored[t.id + 1].status.name == "ACTIVE" for t in handed)  # not completed
    assert json.loads(json.dumps(strategy.state_dict()))["rejected"] == strategy.rejected
    config = load_config(CONFIG, {**TINY, "latency_band": 0.05,
                                  "vizier.server": server.endpoint})
    wired = multi_trial.make_strategy(config, str(tmp_path))
    assert wired.feasible is not None


@pytest.mark.parametrize("overrides, words", [
    ({"vizier.algorithm": "GP_UCB_PE"}, "config.vizier.algorithm"),
    ({"vizier.objectives": ("accuracy",)}, "config.vizier.objectives"),
    ({"vizier.objectives": ("quality", "latency_ms")}, "NSGA2"),  # regularized evolution
    ({"vizier.server": "localhost"}, "config.vizier.server"),
    ({"vizier.database_url": "nodb://x"}, "database_url 'nodb://x'"),  # the server's error
    ({"tournament_size": 3}, "tournament_size"),  # population_size 2
])
def test_bad_vizier_settings_name_the_field(overrides, words, tmp_path):
    with pytest.raises((UsageError, search_spaces.SpecError), match=words) as info:
        multi_trial.run_study(load_config(CONFIG, {**TINY, **overrides}), tmp_path,
                              log=lambda _: None)
    assert "\n" not in str(info.value)


def test_model_generator_has_one_categorical_parameter_per_decision():
    problem = vizier_space.problem(SPACE, ("reward",))
    params = problem.search_space.parameters
    assert [p.name for p in params] == [d.name for d in SPACE.decisions]
    assert [len(p.feasible_values) for p in params] == list(SPACE.num_choices)
    row = tuple(int(v) for v in SPACE.sample(np.random.default_rng(0)))
    values = vizier_space.parameters_of(SPACE, row)
    assert vizier_space.indices_of(SPACE, values) == row
    assert vizier_space.space_of(problem).name == "micro"


def test_server_child_exits_when_the_study_is_sigkilled(tmp_path):
    # A study killed with SIGKILL must not leave its server holding W/vizier.db.
    script = ("import sys, time; from controllers.vizier_server import VizierServerProcess; "
              f"p = VizierServerProcess('sqlite:///{tmp_path}/vizier.db', '{tmp_path}/log'); "
              "print(p.proc.pid, flush=True); time.sleep(600)")
    study = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE,
                             text=True)
    server_pid = int(study.stdout.readline())
    study.send_signal(signal.SIGKILL)
    study.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(server_pid, 0)  # still there (or a zombie awaiting its reaper)
        except ProcessLookupError:
            break
        try:
            with open(f"/proc/{server_pid}/stat") as f:
                if f.read().split(") ")[1].startswith("Z"):
                    break
        except FileNotFoundError:
            break
        time.sleep(0.2)
    else:
        os.kill(server_pid, signal.SIGKILL)
        pytest.fail("the Vizier server outlived the study killed with SIGKILL")


DESIGNER_MODULE = '''
"""A designer from outside the package: every decision at its first choice."""
from vizier import algorithms as vza
from vizier import pyvizier as vz

from controllers.vizier_designers import register_designer
from controllers.vizier_space import parameters_of, space_of


class FirstChoices(vza.Designer):
    def __init__(self, problem):
        self.space = space_of(problem)

    def update(self, completed, all_active):
        pass

    def suggest(self, count=None):
        row = [0] * self.space.num_decisions
        return [vz.TrialSuggestion(parameters_of(self.space, row))] * (count or 1)


register_designer("FIRST_CHOICES", FirstChoices)
'''


def test_a_designer_module_from_outside_is_served_by_name(tmp_path, monkeypatch):
    (tmp_path / "outside_designers.py").write_text(DESIGNER_MODULE)
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    settings = {"objectives": ("reward",), "designer_modules": ("outside_designers",),
                "database_url": f"sqlite:///{tmp_path}/vizier.db"}
    strategy = controllers.get_strategy("vizier", SPACE, algorithm="FIRST_CHOICES", **settings)
    try:
        assert [t.indices for t in strategy.propose(1)] == [(0,) * SPACE.num_decisions]
    finally:
        strategy.close()
    with pytest.raises(search_spaces.SpecError, match=r"FIRST_CHOICE.*it serves.*FIRST_CHOICES"):
        controllers.get_strategy("vizier", SPACE, algorithm="FIRST_CHOICE", **settings)


def test_a_declared_topology_reaches_the_servers_designer(server):
    # The server process never read the config: the declaration travels in the problem.
    from experiments.multi_trial.declared_topology import TOPOLOGY
    from search_spaces.declared import register_declared

    space = register_declared(TOPOLOGY)
    strategy = controllers.get_strategy("vizier", space, algorithm="REGULARIZED_EVOLUTION",
                                        objectives=("reward",), server=server.endpoint,
                                        study_id="declared", population_size=2,
                                        tournament_size=2)
    handed = []
    for _ in range(4):  # two uniform, then two children of the tournament's winner
        for trial in strategy.propose(1):
            space.check_indices(trial.indices)
            handed.append(trial.indices)
            strategy.observe(trial, synthetic(trial))
    assert len(set(handed)) == 4
