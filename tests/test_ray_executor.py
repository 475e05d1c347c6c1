"""Simulator dataset builds on a real local Ray cluster (2 CPUs, started and shut down here)."""

import os
import signal

import pytest

ray = pytest.importorskip("ray")

from cost_models import dataset as dataset_lib  # noqa: E402
from cost_models.ray_executor import RayCostExecutor  # noqa: E402
from search_spaces import get_space  # noqa: E402
from tunas_jax import cli  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def cluster():
    # Ray's memory monitor kills workers when the *node* nears its memory limit; on a
    # shared CI machine that is other jobs' memory (seen: OutOfMemoryError at 23.5 of
    # 23.5 GB used by others). These tests use a few hundred MB: turn the monitor off.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_memory_monitor_refresh_ms", "0")  # read by ray.init's raylet
        # Ray waits 30 s for its GCS server to start; a loaded 2-core machine took longer
        # (seen: "Timed out waiting for file .../gcs_server_port_..." with 4 jobs running).
        patch.setenv("RAY_gcs_server_port_wait_time_s", "180")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        yield
        ray.shutdown()


def test_killed_worker_loses_and_duplicates_nothing(cluster):
    """20,000 architectures; one worker process is SIGKILLed mid-build."""
    space = get_space("mobilenet_edgetpu_v2")  # cold per-segment caches: chunks take a while
    indices, _ = dataset_lib.sample_architectures(space, 20_000, seed=3)
    want = dataset_lib.simulate_architectures(space, "pixel6_edgetpu", indices, workers=1)
    with RayCostExecutor(space, "pixel6_edgetpu", workers=2) as pool:
        before = pool.pids()
        done = []

        def on_progress(n):
            if not done:  # after the first chunk: the other chunks are in flight or queued
                os.kill(before[0], signal.SIGKILL)
            done.append(n)

        got = pool.cost(indices, chunk_size=500, on_progress=on_progress)
        after = pool.pids()
    assert after[0] != before[0] and after[1] == before[1]  # worker 0 was restarted
    assert len(done) == 40 and sum(done) == 20_000  # each chunk delivered once
    assert set(got) == set(want)
    for column, values in want.items():
        assert got[column].shape == values.shape
        assert (got[column] == values).all(), column


def test_simulate_cli_ray_executor_writes_the_local_dataset(cluster, tmp_path):
    args = ["simulate", "--space", "micro", "--target", "coral_edgetpu", "--num", "700",
            "--seed", "5"]
    assert cli.main([*args, "--out", str(tmp_path / "local.npz"), "--workers", "1"]) == 0
    assert cli.main([*args, "--out", str(tmp_path / "ray.npz"), "--executor", "ray",
                     "--workers", "2"]) == 0
    local = dataset_lib.read_dataset(tmp_path / "local.npz")
    remote = dataset_lib.read_dataset(tmp_path / "ray.npz")
    assert (local.indices == remote.indices).all()
    for column in (*dataset_lib.COLUMNS, "segment_weight_bytes"):
        assert (getattr(local, column) == getattr(remote, column)).all(), column
    assert local.metadata == remote.metadata
    with pytest.raises(SystemExit):
        cli.main([*args, "--out", str(tmp_path / "x.npz"), "--executor", "spark"])


def test_train_cost_model_refuses_an_unknown_executor(tmp_path, capsys):
    config = os.path.join(ROOT, "experiments", "cost_models", "micro_pixel6.py")
    assert cli.main(["train-cost-model", "--config", config, "--workdir", str(tmp_path / "w"),
                     "--config.executor=spark"]) == 2
    err = capsys.readouterr().err
    assert "config.executor: 'spark'" in err and "'ray'" in err
