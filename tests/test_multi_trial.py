"""Multi-trial NAS: regularized evolution, a real study (proxy training and costing), its
outputs, failed trials, and resuming after SIGKILL with no trial lost or run twice."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

import controllers
import search_spaces
from controllers.strategy import Trial
from tunas_jax import multi_trial
from tunas_jax.config_files import load_config
from tunas_jax.errors import UsageError

CONFIG = "experiments/multi_trial/micro_digits.py"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A proxy of a few steps at 8 px: each trial compiles its own model, so keep it small.
TINY = {"num_trials": 3, "population_size": 2, "tournament_size": 1,
        "proxy.dataset.image_size": 8, "proxy.num_epochs": 0, "proxy.num_steps": 2,
        "proxy.batch_size": 32, "proxy.eval_batch_size": 256, "proxy.num_threads": 1,
        "proxy.log_every_steps": 1, "proxy.ema_decay": 0.0, "latency_band": 0.0}


def tiny_config(**more):
    return load_config(os.path.join(REPO, CONFIG), {**TINY, **more})


def test_evolution_mutates_one_active_decision_of_the_tournament_winner():
    space = search_spaces.get_space("micro")
    strategy = controllers.get_strategy("evolution", space, seed=0, population_size=4,
                                        tournament_size=4)
    first = strategy.propose(4)  # population not full yet: uniform samples
    for i, trial in enumerate(first):
        strategy.observe(trial, {"reward": float(i)})
    best = np.asarray(first[3].indices)
    for child in strategy.propose(6):  # tournament of the whole population: the best wins
        changed = np.flatnonzero(np.asarray(child.indices) != best)
        assert len(changed) == 1
        assert space.active_mask(best[None])[0, changed[0]]


def test_strategy_state_round_trips_through_json():
    space = search_spaces.get_space("micro")
    a = controllers.get_strategy("evolution", space, seed=3, population_size=2,
                                 tournament_size=1)
    for trial in a.propose(2):
        a.observe(trial, {"reward": sum(trial.indices)})
    b = controllers.get_strategy("evolution", space, seed=99, population_size=2,
                                 tournament_size=1)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert a.propose(3) == b.propose(3)


def test_feasible_predicate_filters_children_and_samples():
    space = search_spaces.get_space("micro")

    def feasible(row):  # about 1 network in 4
        return int(row[0]) == 0 and int(np.asarray(row).sum()) % 2 == 0

    strategy = controllers.get_strategy("evolution", space, seed=1, population_size=3,
                                        tournament_size=2, feasible=feasible)
    first = strategy.propose(3)
    for i, trial in enumerate(first):
        strategy.observe(trial, {"reward": float(i)})
    children = strategy.propose(5)
    assert all(feasible(np.asarray(t.indices)) for t in first + children)
    assert strategy.rejected > 0
    restored = controllers.get_strategy("evolution", space, seed=1, population_size=3,
                                        tournament_size=2, feasible=feasible)
    restored.load_state_dict(json.loads(json.dumps(strategy.state_dict())))
    assert restored.rejected == strategy.rejected
    hopeless = controllers.get_strategy("random", space, feasible=lambda row: False,
                                        max_draws=50)
    with pytest.raises(search_spaces.SpecError, match="widen"):
        hopeless.propose(1)


def test_observed_objective_must_exist():
    space = search_spaces.get_space("micro")
    strategy = controllers.get_strategy("evolution", space, population_size=1,
                                        tournament_size=1)
    with pytest.raises(search_spaces.SpecError, match="objective"):
        strategy.observe(Trial(0, tuple(space.sample(np.random.default_rng(0)))), {"q": 1.0})


def test_study_outputs_and_resume_without_rerunning(tmp_path):
    config = tiny_config()
    first = multi_trial.run_study(config, tmp_path, log=lambda _: None, stop_after_trials=2)
    assert first["stopped"] and first["completed"] == 2
    results = {i: tmp_path / "trials" / f"trial_{i:04d}" / "result.json" for i in range(2)}
    stamps = {i: p.stat().st_mtime_ns for i, p in results.items()}
    summary = multi_trial.run_study(config, tmp_path, log=lambda _: None)
    assert not summary["stopped"] and summary["completed"] == 3
    assert {i: p.stat().st_mtime_ns for i, p in results.items()} == stamps  # not retrained

    trials = [json.loads(line) for line in (tmp_path / "trials.jsonl").read_text().splitlines()]
    assert [t["id"] for t in trials] == [0, 1, 2]
    for t in trials:
        assert t["state"] == "completed" and 0.0 <= t["quality"] <= 1.0
        assert t["latency_ms"] > 0 and t["quality_metric"] == "top1"
        assert t["reward"] == pytest.approx(
            t["quality"] - abs(t["latency_ms"] / config.target_latency_ms - 1.0))
    pareto = json.loads((tmp_path / "pareto.json").read_text())
    assert pareto["energy_front"]["objectives"] == {"quality": "max", "energy_mj": "min"}
    for front, cost in ((pareto["trials"], "latency_ms"),
                        (pareto["energy_front"]["trials"], "energy_mj")):
        for t in trials:  # every completed trial is on the front or dominated by one on it
            on_front = any(f["id"] == t["id"] for f in front)
            dominated = any(f["quality"] >= t["quality"] and f[cost] <= t[cost]
                            for f in front if f["id"] != t["id"])
            assert on_front or dominated
        for f in front:  # and no trial on it is dominated
            assert not any(t["quality"] >= f["quality"] and t[cost] <= f[cost]
                           and (t["quality"], t[cost]) != (f["quality"], f[cost])
                           for t in trials)
    assert all(t["energy_mj"] > 0 for t in trials)
    arch_doc = json.loads((tmp_path / "architecture.json").read_text())
    assert arch_doc["search_method"] == "multi_trial"
    assert arch_doc["trial"] == max(trials, key=lambda t: t["reward"])["id"]
    assert search_spaces.load(tmp_path / "architecture.json").space.name == "micro"

    from tunas_jax import cli  # the study drawn by `tunas-jax report`

    assert cli.main(["report", str(tmp_path), "--out", str(tmp_path / "report")]) == 0
    png = tmp_path / "report" / f"{tmp_path.name}_study.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (tmp_path / "report" / "report.html").read_text()
    assert "Multi-trial study" in page and "min energy" in page

    with pytest.raises(UsageError, match="num_trials"):  # another study's workdir
        multi_trial.run_study(tiny_config(num_trials=5), tmp_path, log=lambda _: None)


def test_failed_trials_are_recorded_and_the_study_goes_on(tmp_path):
    # A batch larger than the proxy's training split: every training refuses to start.
    summary = multi_trial.run_study(tiny_config(**{"proxy.batch_size": 100_000}), tmp_path,
                                    log=lambda _: None)
    assert summary["failed"] == 3 and summary["completed"] == 0
    trials = [json.loads(line) for line in (tmp_path / "trials.jsonl").read_text().splitlines()]
    assert all(t["state"] == "failed" and "batch_size" in t["error"] for t in trials)
    assert not (tmp_path / "architecture.json").exists()


def test_sigkill_then_rerun_loses_no_trial_and_runs_none_twice(tmp_path):
    args = [sys.executable, "-m", "tunas_jax.cli", "multi-trial", "--config", CONFIG,
            "--workdir", str(tmp_path)] + [f"--config.{k}={v}" for k, v in TINY.items()]
    database = tmp_path / "study.sqlite"

    def completed() -> int:
        if not database.exists():
            return 0
        with sqlite3.connect(database) as db:
            try:
                return db.execute("SELECT COUNT(*) FROM trials WHERE state = 'completed'"
                                  ).fetchone()[0]
            except sqlite3.OperationalError:
                return 0

    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while completed() < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = completed()
    assert before >= 1
    first_result = tmp_path / "trials" / "trial_0000" / "result.json"
    stamp = first_result.stat().st_mtime_ns
    rerun = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT id, state FROM trials ORDER BY id").fetchall()
    assert rows == [(0, "completed"), (1, "completed"), (2, "completed")]
    assert first_result.stat().st_mtime_ns == stamp  # finished before the kill: not rerun


def band_target_ms(config) -> float:
    """The median simulated latency of 40 uniform `micro` networks under the tiny proxy
    (digits: 10 classes, 3 channels): a target with networks around it."""
    from tunas_jax import train

    space = search_spaces.get_space("micro")
    proxy = multi_trial.proxy_config(config, "")
    return float(np.median([
        train.cost_report(proxy, search_spaces.Architecture.from_indices(space, row), 10, 3,
                          log=lambda _: None)["simulated_latency_ms"]
        for row in space.sample(np.random.default_rng(0), 40)]))


def test_parallel_workers_train_every_trial_within_the_latency_band(tmp_path):
    target_ms = band_target_ms(tiny_config())
    config = tiny_config(num_trials=2, workers=2, target_latency_ms=target_ms,
                         latency_band=0.05)
    summary = multi_trial.run_study(config, tmp_path, log=lambda _: None)
    assert summary["completed"] == 2 and summary["rejected_by_latency_band"] > 0
    trials = [json.loads(line) for line in (tmp_path / "trials.jsonl").read_text()
              .splitlines()]
    assert [t["id"] for t in trials] == [0, 1]
    for t in trials:  # the trained candidate's own latency, not just the filter's
        assert abs(t["latency_ms"] / target_ms - 1.0) <= 0.05


@pytest.mark.parametrize("overrides, words", [
    ({"strategy": "annealing"}, "config.strategy"),
    ({"num_trials": 0}, "config.num_trials"),
    ({"target_latency_ms": 0.0}, "config.target_latency_ms"),
    ({"targets": ("tpu9000",)}, "config.targets"),
    ({"tournament_size": 5}, "tournament_size"),
    ({"latency_band": -0.1}, "config.latency_band"),
])
def test_config_errors_name_the_field(overrides, words, tmp_path):
    with pytest.raises((UsageError, search_spaces.SpecError), match=words) as info:
        multi_trial.run_study(tiny_config(**overrides), tmp_path, log=lambda _: None)
    assert "\n" not in str(info.value)


def test_multi_hardware_study_scores_the_combined_ratio(tmp_path):
    targets, t0 = ("pixel6_edgetpu", "pixel4_dsp"), (0.0176, 0.134)
    config = tiny_config(targets=targets, target_latencies_ms=t0,
                         multi_hardware_metric="worst", num_trials=2)
    multi_trial.run_study(config, tmp_path, log=lambda _: None)
    trials = [json.loads(line) for line in (tmp_path / "trials.jsonl").read_text().splitlines()]
    for t in trials:
        trained = json.loads((tmp_path / "trials" / f"trial_{t['id']:04d}" / "result.json"
                              ).read_text())
        assert t["latency_ms_by_target"] == {k: trained["latency_ms_by_target"][k]
                                             for k in targets}
        worst = max(t["latency_ms_by_target"][k] / ms for k, ms in zip(targets, t0, strict=True))
        assert t["latency_ratio"] == pytest.approx(worst, rel=1e-6)
        assert t["reward"] == pytest.approx(t["quality"] - abs(worst - 1.0), rel=1e-6)
    assert json.loads((tmp_path / "pareto.json").read_text())["objectives"] == {
        "quality": "max", "latency_ratio": "min"}
    doc = json.loads((tmp_path / "architecture.json").read_text())
    best = max(trials, key=lambda t: t["reward"])
    assert doc["multi_hardware_metric"] == "worst"
    assert doc["combined_latency_ratio"] == best["latency_ratio"]
    assert doc["latency_ms_by_target"] == best["latency_ms_by_target"]
    with pytest.raises(UsageError, match=r"config\.target_latencies_ms"):
        multi_trial.validate_config(tiny_config(targets=targets, target_latencies_ms=(0.0176,)))
