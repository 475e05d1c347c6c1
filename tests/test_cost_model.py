"""Simulator datasets, the learned latency regressor and `train-cost-model` / `simulate`."""

from __future__ import annotations

import argparse
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cost_models import dataset as dataset_lib
from cost_models.arch_cost import ArchitectureCoster
from cost_models.features import FeatureEncoder
from cost_models.hardware import get_target
from cost_models.regressor import load_cost_model
from search_spaces import SpecError, get_preset, get_space
from tasks import describe
from tunas_jax import config_files, cost_model_training
from tunas_jax.cli import parse_command_line
from tunas_jax.commands import simulate as simulate_command
from tunas_jax.commands import train_cost_model as train_command
from tunas_jax.errors import UsageError

CONFIG = "experiments/cost_models/micro_pixel6.py"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _fast_compile():
    # Compile time dominates these tiny models.
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", False)


def _run_cli(*argv: str) -> int:
    """Parse and run like `tunas_jax.cli` does once the commands are registered."""
    parser = argparse.ArgumentParser(prog="tunas-jax")
    subparsers = parser.add_subparsers(dest="command", required=True)
    simulate_command.add_parser(subparsers)
    train_command.add_parser(subparsers)
    args = parse_command_line(parser, argv)
    return args.func(args)


def test_features_ignore_inactive_decisions():
    space = get_space("micro")
    encoder = FeatureEncoder(space, kronecker=True)
    indices = space.sample(np.random.default_rng(0), 64)
    active = space.active_mask(indices)
    assert (~active).any()
    # Change every inactive decision: the features must not move.
    changed = np.where(active, indices, (indices + 1) % np.asarray(space.num_choices))
    np.testing.assert_array_equal(encoder.field_ids(indices), encoder.field_ids(changed))
    # ...while changing an active one does.
    other = indices.copy()
    other[:, 0] = 1 - other[:, 0]  # stages.0.filters: always active
    assert (encoder.field_ids(other) != encoder.field_ids(indices)).any(axis=1).all()
    one_hot = encoder.one_hot(indices)
    assert one_hot.shape == (64, encoder.vocab_size)
    np.testing.assert_array_equal(one_hot.sum(axis=1), encoder.num_fields)
    np.testing.assert_array_equal(
        np.asarray(encoder.field_ids(jnp.asarray(indices), xp=jnp)), encoder.field_ids(indices))


def test_dataset_is_deterministic_and_has_in_space_presets(tmp_path):
    space = get_space("mobilenet_edgetpu_v2")
    a = dataset_lib.simulate_dataset(space, "pixel6_edgetpu", 24, seed=5, workers=1)
    b = dataset_lib.simulate_dataset(space, "pixel6_edgetpu", 24, seed=5, workers=1)
    c = dataset_lib.simulate_dataset(space, "pixel6_edgetpu", 24, seed=6, workers=1)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.latency_ms, b.latency_ms)
    assert not np.array_equal(a.indices, c.indices)
    row = a.metadata["presets"]["mobilenet_edgetpu_v2_s"]
    assert tuple(a.indices[row]) == space.encode(get_preset("mobilenet_edgetpu_v2_s"))
    expected = ArchitectureCoster(space, "pixel6_edgetpu").cost(a.indices[row])
    assert a.latency_ms[row] == pytest.approx(expected["latency_ms"])
    assert a.params[row] == expected["params"]
    # Round trip through the file, and refusal of another space or target.
    path = tmp_path / "d.npz"
    dataset_lib.write_dataset(path, a)
    back = dataset_lib.read_dataset(path, space, "pixel6_edgetpu")
    for column in ("indices", *dataset_lib.COLUMNS):
        np.testing.assert_array_equal(getattr(back, column), getattr(a, column))
    assert back.metadata["space_fingerprint"] == space.fingerprint
    assert back.metadata["seed"] == 5
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp")]
    with pytest.raises(SpecError, match="fingerprint"):
        dataset_lib.read_dataset(path, get_space("proxylessnas"))
    with pytest.raises(SpecError, match="coral_edgetpu"):
        dataset_lib.read_dataset(path, space, "coral_edgetpu")
    recalibrated = get_target("pixel6_edgetpu").replace(compute_efficiency=0.123)
    with pytest.raises(SpecError, match="compute_efficiency"):
        dataset_lib.read_dataset(path, space, recalibrated)
    dataset_lib.read_dataset(path, space, get_target("pixel6_edgetpu"))


def test_parallel_simulation_matches_serial():
    space = get_space("micro")
    indices, _ = dataset_lib.sample_architectures(space, dataset_lib.MIN_PARALLEL, seed=1)
    serial = dataset_lib.simulate_architectures(space, "coral_edgetpu", indices, workers=1)
    parallel = dataset_lib.simulate_architectures(space, "coral_edgetpu", indices, workers=2,
                                                  chunk_size=128)
    for column in dataset_lib.COLUMNS:
        np.testing.assert_array_equal(serial[column], parallel[column])


def test_simulate_command_writes_a_dataset_and_costs_a_network(tmp_path, capsys):
    out = tmp_path / "micro.npz"
    _run_cli("simulate", "--space", "micro", "--target", "coral_edgetpu", "--num", "16",
             "--out", str(out), "--seed", "2")
    data = dataset_lib.read_dataset(out, get_space("micro"), "coral_edgetpu")
    assert len(data) == 16 and data.metadata["presets"] == {}
    assert (data.latency_ms > 0).all() and (data.macs > 0).all()

    space = get_space("micro")
    network = describe(space.decode(data.indices[0]), 32, 10, name="micro0")
    path = tmp_path / "net.json"
    path.write_text(json.dumps(network.to_json()))
    capsys.readouterr()
    _run_cli("simulate", "--network", str(path), "--target", "coral_edgetpu")
    text = capsys.readouterr().out
    assert "stem" in text and "logits" in text and "bound" in text
    assert f"latency {data.latency_ms[0]:.4f} ms" in text
    with pytest.raises(UsageError):
        _run_cli("simulate", "--space", "micro", "--target", "coral_edgetpu")


def test_train_cost_model_end_to_end(tmp_path, capsys):
    workdir = tmp_path / "wd"
    _run_cli("train-cost-model", "--config", os.path.join(ROOT, CONFIG), "--workdir",
             str(workdir), "--config.num_architectures=400", "--config.num_steps=150",
             "--config.batch_size=64", "--config.workers=1")
    assert "Spearman" in capsys.readouterr().out
    metadata = json.loads((workdir / "cost_model.json").read_text())
    space = get_space("micro")
    assert metadata["space"] == "micro"
    assert metadata["space_fingerprint"] == space.fingerprint
    assert metadata["target"] == "pixel6_edgetpu"
    assert metadata["model"]["kind"] == "cache_aware"  # the default
    assert metadata["dataset"]["size"] == 400
    assert metadata["dataset"]["num_heldout"] == 40
    heldout = metadata["heldout"]
    assert set(heldout) >= {"spearman", "kendall_tau", "mape_percent", "within_5_percent",
                            "within_10_percent"}
    assert 0 <= heldout["within_5_percent"] <= heldout["within_10_percent"] <= 100
    assert heldout["spearman"] > 0.5  # even 150 steps rank micro networks far above chance
    for name in ("scatter.png", "dataset.npz", "checkpoint"):
        assert (workdir / name).exists()

    predictor = load_cost_model(workdir, space, "pixel6_edgetpu")
    indices = jnp.asarray(space.sample(np.random.default_rng(0), 7), jnp.int32)
    latency_ms = jax.jit(lambda p, x: p(x))(predictor, indices)
    assert latency_ms.shape == (7,) and bool((latency_ms > 0).all())
    np.testing.assert_allclose(jax.jit(predictor.__call__)(indices), latency_ms, rtol=1e-5)
    # The reloaded predictor reproduces the trained one's held-out error.
    data = dataset_lib.read_dataset(workdir / "dataset.npz")
    predicted = cost_model_training.predict_in_batches(predictor, data.indices)
    assert np.abs(predicted / data.latency_ms - 1).mean() * 100 == pytest.approx(
        (heldout["mape_percent"] * 40 + metadata["train"]["mape_percent"] * 360) / 400, rel=1e-3)

    with pytest.raises(SpecError, match="space"):
        load_cost_model(workdir, get_space("proxylessnas"), "pixel6_edgetpu")
    with pytest.raises(SpecError, match="target"):
        load_cost_model(workdir, space, "coral_edgetpu")
    with pytest.raises(SpecError, match="missing"):
        load_cost_model(tmp_path / "nothing", space, "pixel6_edgetpu")

    # A second run reuses the dataset, and refuses one made for another target.
    with pytest.raises(SpecError, match="target"):
        _run_cli("train-cost-model", "--config", os.path.join(ROOT, CONFIG), "--workdir",
                 str(workdir), "--config.target=coral_edgetpu", "--config.num_steps=1")


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_other_model_kinds_train(tmp_path, kind):
    config = config_files.load_config(
        os.path.join(ROOT, CONFIG),
        {"model": kind, "num_architectures": "300", "num_steps": "200", "workers": "1",
         "hidden_sizes": "(16,)"})
    metadata = cost_model_training.train_cost_model(config, tmp_path, log=lambda _: None)
    assert metadata["model"]["kind"] == kind
    # micro on pixel6 is close to additive: the linear model already ranks well.
    assert metadata["heldout"]["spearman"] > 0.9
    predictor = load_cost_model(tmp_path, get_space("micro"), "pixel6_edgetpu")
    assert predictor(jnp.zeros((3, get_space("micro").num_decisions), jnp.int32)).shape == (3,)


def test_config_overrides_are_checked():
    path = os.path.join(ROOT, CONFIG)
    config = config_files.load_config(path, {"hidden_sizes": "(8, 4)",
                                                    "kronecker_features": "false",
                                                    "dataset_path": "/x.npz"})
    assert config.hidden_sizes == (8, 4) and config.kronecker_features is False
    assert config.dataset_path == "/x.npz"
    with pytest.raises(UsageError, match="unknown field"):
        config_files.load_config(path, {"num_stepz": "3"})
    with pytest.raises(UsageError, match="num_steps"):
        config_files.load_config(path, {"num_steps": "many"})


def test_latency_metrics():
    simulated = np.array([1.0, 2.0, 3.0, 4.0])
    m = cost_model_training.latency_metrics(np.array([1.0, 2.16, 2.9, 4.5]), simulated)
    assert m["spearman"] == pytest.approx(1.0) and m["kendall_tau"] == pytest.approx(1.0)
    assert m["mape_percent"] == pytest.approx(100 * (0 + 0.08 + 0.1 / 3 + 0.125) / 4)
    assert m["within_5_percent"] == 50.0 and m["within_10_percent"] == 75.0
    reversed_ = cost_model_training.latency_metrics(simulated[::-1].copy(), simulated)
    assert reversed_["kendall_tau"] == pytest.approx(-1.0)
