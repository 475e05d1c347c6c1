"""Multi-trial trials as Ray tasks on a real local cluster (2 CPUs, started and shut down
here): every trial runs in a Ray worker, and a failed one is recorded with its error while
the study goes on."""

import json
import os

import pytest

ray = pytest.importorskip("ray")

from tunas_jax import multi_trial  # noqa: E402
from tunas_jax.config_files import load_config  # noqa: E402
from tunas_jax.errors import UsageError  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {"num_trials": 2, "population_size": 2, "tournament_size": 1, "latency_band": 0.0,
        "executor": "ray", "proxy.dataset.image_size": 8, "proxy.num_epochs": 0,
        "proxy.num_steps": 2, "proxy.batch_size": 32, "proxy.eval_batch_size": 256,
        "proxy.num_threads": 1, "proxy.log_every_steps": 1, "proxy.ema_decay": 0.0}


def test_ray_trials_run_on_workers_and_a_failed_one_is_recorded(tmp_path, monkeypatch):
    config = load_config(os.path.join(REPO, "experiments/multi_trial/micro_digits.py"), TINY)
    # Trial 1 cannot make its training folder (a file is in the way): it fails in its
    # worker; trial 0 trains.
    (tmp_path / "trials").mkdir()
    (tmp_path / "trials" / "trial_0001").write_text("in the way")
    monkeypatch.setenv("RAY_memory_monitor_refresh_ms", "0")  # see test_ray_executor.py
    monkeypatch.setenv("RAY_gcs_server_port_wait_time_s", "180")  # likewise
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        summary = multi_trial.run_study(config, tmp_path, log=lambda _: None)
        assert ray.is_initialized()  # a joined cluster is left running
    finally:
        ray.shutdown()
    assert summary["completed"] == 1 and summary["failed"] == 1
    trials = [json.loads(line) for line in (tmp_path / "trials.jsonl").read_text()
              .splitlines()]
    assert [(t["id"], t["state"]) for t in trials] == [(0, "completed"), (1, "failed")]
    assert int(trials[0]["worker"].rsplit(":", 1)[1]) != os.getpid()  # not this process
    assert trials[0]["latency_ms"] > 0 and 0.0 <= trials[0]["quality"] <= 1.0
    # The task's own error (make_workdir's), not Ray's wrapper around it.
    assert trials[1]["error"].startswith("UsageError: ") and "trial_0001" in trials[1]["error"]
    with pytest.raises(UsageError, match=r"config\.executor"):
        multi_trial.validate_config(load_config(
            os.path.join(REPO, "experiments/multi_trial/micro_digits.py"),
            {**TINY, "executor": "slurm"}))
