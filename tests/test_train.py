"""Standalone training: end-to-end on digits, bit-exact resume, evaluate, imagenet mock, errors."""

from __future__ import annotations

import json
import os
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorflow_datasets as tfds
from flax import nnx

import cost_models
import supernet
from search_spaces import Architecture, SpecError, get_space
from tasks import Classification, describe
from tunas_jax import config_files, train, train_step
from tunas_jax.checkpointing import SearchCheckpointer
from tunas_jax.errors import UsageError

jax.config.update("jax_disable_most_optimizations", True)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MICRO_DIGITS = os.path.join(REPO, "experiments", "train", "micro_digits.py")
IMAGENET = os.path.join(REPO, "experiments", "train", "imagenet.py")
RESULT_KEYS = {"top1", "params", "macs", "simulated_latency_ms", "energy_mj",
               "predicted_latency_ms", "architecture"}


@pytest.fixture(scope="module")
def arch_path(tmp_path_factory) -> str:
    """The micro space's smallest architecture as an architecture JSON file."""
    space = get_space("micro")
    path = str(tmp_path_factory.mktemp("arch") / "micro0.json")
    Architecture.from_indices(space, [0] * len(space.decisions), name="micro0").save(path)
    return path


def tiny_config(arch_path: str, **overrides: str):
    """16 px digits, batch 32, 4 steps, dropout + EMA on (both must resume exactly)."""
    values = {"architecture": arch_path, "dataset.image_size": "16", "batch_size": "32",
              "eval_batch_size": "128", "num_steps": "4", "eval_every_epochs": "100",
              "log_every_steps": "2", "dropout_rate": "0.2", "ema_decay": "0.9",
              "num_threads": "1"}
    values.update(overrides)
    return train.load_train_config(MICRO_DIGITS, values)


def checkpoint_arrays(workdir: str, step: int) -> dict[str, np.ndarray]:
    path = os.path.join(workdir, "checkpoints", str(step), "state")
    with ocp.StandardCheckpointer() as checkpointer:
        return {k: np.asarray(v) for k, v in checkpointer.restore(path).items()}


@pytest.fixture(scope="module")
def finished_run(arch_path, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("uninterrupted"))
    return workdir, train.run_training(tiny_config(arch_path), workdir, log=lambda _: None)


def test_end_to_end_writes_result(finished_run, arch_path):
    workdir, result = finished_run
    with open(os.path.join(workdir, "result.json")) as f:
        written = json.load(f)
    assert written == result
    assert set(result) >= RESULT_KEYS
    assert 0.0 <= result["top1"] <= 1.0 and result["num_eval_examples"] == 355
    arch = Architecture.from_indices(get_space("micro"), [0] * 23)
    network = describe(arch.spec, 16, 10)
    assert result["params"] == network.params == result["trainable_params"]
    assert result["macs"] == network.macs
    assert result["simulated_latency_ms"] > 0 and result["energy_mj"] > 0
    # micro_digits reports the 'layers' metric: end to end minus the fixed part.
    assert result["latency_metric"] == "layers"
    end_to_end = cost_models.simulate(network, "pixel6_edgetpu").latency_ms
    assert result["simulated_end_to_end_latency_ms"] == pytest.approx(end_to_end, abs=1e-12)
    assert result["simulated_latency_ms"] == pytest.approx(
        end_to_end - cost_models.fixed_latency_ms("pixel6_edgetpu", 16, 10), abs=1e-12)
    assert result["predicted_latency_ms"] is None
    assert "cost_model_workdir" in result["predicted_latency_reason"]
    assert result["architecture"]["indices"] == [0] * 23 and result["steps"] == 4
    assert result["weights"] == "ema"
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    assert [r["step"] for r in rows if "train/loss" in r] == [2, 4]
    assert [r["eval/top1"] for r in rows if "eval/top1" in r] == [result["top1"]]
    assert os.listdir(os.path.join(workdir, "tensorboard"))


def test_evaluate_matches_result(finished_run):
    workdir, result = finished_run
    metrics = train.evaluate_workdir(workdir)
    assert metrics["step"] == 4
    assert metrics["top1"] == result["top1"]
    assert metrics["eval_loss"] == pytest.approx(result["eval_loss"], rel=1e-6)


def test_resume_is_bit_exact(finished_run, arch_path, tmp_path):
    workdir, result = finished_run
    interrupted = str(tmp_path)
    stopped = train.run_training(tiny_config(arch_path, stop_after_steps="2"), interrupted,
                                 log=lambda _: None)
    assert stopped == {"stopped_at": 2}
    assert sorted(os.listdir(os.path.join(interrupted, "checkpoints"))) == ["2"]
    # The same command again (the drill field is not part of the run) continues at step 2.
    resumed = train.run_training(tiny_config(arch_path), interrupted, log=lambda _: None)
    assert resumed["steps"] == 4 and resumed["top1"] == result["top1"]
    # Same data order, augmentation, dropout masks, optimizer and EMA state: identical bits.
    expected, got = checkpoint_arrays(workdir, 4), checkpoint_arrays(interrupted, 4)
    assert expected.keys() == got.keys()
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])
    with open(os.path.join(interrupted, "metrics.jsonl")) as f:
        steps = [json.loads(line)["step"] for line in f if "train/loss" in line]
    assert steps == [2, 4]


def test_corrupted_checkpoint_resumes_from_the_previous_one(finished_run, arch_path, tmp_path,
                                                           capfd, monkeypatch,
                                                           corrupt_checkpoint):
    unraisable: list = []  # where tensorstore's "Event loop is closed" errors went
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    _, result = finished_run
    workdir = str(tmp_path / "w")
    config = tiny_config(arch_path, checkpoint_every_steps="2")  # keeps steps 2 and 4
    train.run_training(config, workdir, log=lambda _: None)
    checkpoints = os.path.join(workdir, "checkpoints")
    assert sorted(os.listdir(checkpoints)) == ["2", "4"]
    corrupt_checkpoint(checkpoints, 4)
    capfd.readouterr()
    logs: list[str] = []
    resumed = train.run_training(config, workdir, log=logs.append)
    bad = [line for line in logs if "unreadable" in line and "moved" not in line]
    assert len(bad) == 1 and bad[0].startswith("checkpoint step 4 in "), logs
    assert any(line.startswith("resuming from step 2 of 4") for line in logs), logs
    out = capfd.readouterr()
    assert "Event loop is closed" not in out.err + out.out
    assert "Traceback" not in out.err + out.out
    assert unraisable == []
    # Steps 3-4 retrained from step 2: the same weights as the undamaged run.
    assert resumed["steps"] == 4 and resumed["top1"] == result["top1"]

    for step in (2, 4):  # now nothing reads back: one error, saying how to start over
        corrupt_checkpoint(checkpoints, step)
    with pytest.raises(UsageError, match=r"no checkpoint reads back.*delete") as info:
        train.run_training(config, workdir, log=lambda _: None)
    assert "\n" not in str(info.value)


def test_batch_stats_update_in_training_and_are_used_in_eval(finished_run, arch_path):
    workdir, _ = finished_run
    config = tiny_config(arch_path)
    arch = train.config_architecture(config)
    model = supernet.build_model(arch.spec, 10, rngs=nnx.Rngs(0), dropout_rate=0.2)
    fns, initial = train_step.make_step_functions(model, config, steps_per_epoch=45,
                                                  num_steps=4)
    checkpointer = SearchCheckpointer(workdir)
    state, _ = checkpointer.restore(4, initial)
    checkpointer.close()
    # Training moved the running averages away from their initial 0 / 1.
    for name in ("mean", "var"):
        before = np.asarray(initial["batch_stats"]["stem"]["bn"][name][...])
        after = np.asarray(state["batch_stats"]["stem"]["bn"][name][...])
        assert not np.allclose(before, after)
    # Eval reads the running averages: changing them alone changes the eval loss.
    params, stats = fns.eval_weights(state)
    images = np.random.default_rng(0).normal(0.0, 1.0, (8, 16, 16, 3)).astype(np.float32)
    labels, mask = np.arange(8, dtype=np.int32), np.ones(8, bool)
    shifted = jax.tree.map(lambda x: x + 1.0, stats)
    batch = {"image": images, "label": labels}
    a = fns.eval_step(params, stats, batch, mask)["loss_sum"]
    b = fns.eval_step(params, shifted, batch, mask)["loss_sum"]
    assert float(a) != float(b)


def test_imagenet_config_runs_a_step_on_mock_data(arch_path, tmp_path):
    with tfds.testing.mock_data(num_examples=8):
        config = train.load_train_config(IMAGENET, {
            "architecture": arch_path, "dataset.image_size": "16", "batch_size": "4",
            "eval_batch_size": "4", "num_steps": "1", "num_threads": "1"})
        result = train.run_training(config, str(tmp_path), log=lambda _: None)
    assert result["steps"] == 1 and 0.0 <= result["top1"] <= 1.0
    assert result["num_classes"] == 1000 and result["weights"] == "ema"
    assert result["eval_split"] == "validation"


def test_schedule_warmup_then_exponential_staircase():
    config = train.load_train_config(IMAGENET, {"batch_size": "256"})
    schedule = train_step.make_schedule(config, steps_per_epoch=10, num_steps=1000)
    peak = 0.008 * 256 / 128
    assert float(schedule(0)) == pytest.approx(peak / 50)
    assert float(schedule(49)) == pytest.approx(peak)
    assert float(schedule(50)) == pytest.approx(peak * 0.97 ** 2)  # floor(50 / 24)


@pytest.mark.parametrize("overrides, error, words", [
    ({}, UsageError, r"config\.architecture: missing"),
    ({"architecture": "preset:mobilenet_edgetpu_v9"}, SpecError, r"config\.architecture: preset"),
    ({"architecture": "/nonexistent/arch.json"}, SpecError, "cannot read"),
    ({"optimizer": "lamb"}, UsageError, r"config\.optimizer: 'lamb'"),
    ({"schedule": "step"}, UsageError, r"config\.schedule"),
])
def test_bad_input_names_the_field(overrides, error, words, tmp_path):
    config = train.load_train_config(MICRO_DIGITS, {"num_steps": "1", **overrides})
    if "optimizer" in overrides or "schedule" in overrides:
        config.architecture = "preset:mobilenet_edgetpu_v2_tiny"
    with pytest.raises(error, match=words) as info:
        train.run_training(config, str(tmp_path), log=lambda _: None)
    assert "\n" not in str(info.value)


def test_malformed_architecture_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    config = train.load_train_config(MICRO_DIGITS, {"architecture": str(path)})
    with pytest.raises(SpecError, match=r"config\.architecture: .*malformed JSON"):
        train.run_training(config, str(tmp_path / "w"), log=lambda _: None)


def test_unknown_override_field():
    with pytest.raises(UsageError, match=r"dataset\.nme"):
        train.load_train_config(MICRO_DIGITS, {"dataset.nme": "cifar10"})
    with pytest.raises(UsageError, match=r"--config\.optimiser"):
        train.load_train_config(MICRO_DIGITS, {"optimiser": "sgd"})


def test_init_from_reads_the_search_checkpoint(arch_path, tmp_path):
    """A real search state saved by the search's checkpointer hands over its supernet."""
    from experiments.search import base as search_base
    from tunas_jax import search, search_step

    search_config = search_base.get_config()
    space = get_space("micro")
    plan = supernet.make_plan(space)
    optimizer, _ = search_step.make_optimizer(search_config.optimizer, 10, 8)
    # The real SearchState structure, filled with numpy noise (the eager init compiles
    # for seconds; the values only need to be recognizable).
    abstract = jax.eval_shape(lambda: search_step.init_state(
        space, plan, Classification(10), optimizer, search.controller_config(search_config),
        seed=3))
    rng = np.random.default_rng(0)
    state = jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(s.dtype), abstract)
    checkpointer = SearchCheckpointer(str(tmp_path))
    checkpointer.save(7, state, {"train": {}, "valid": {}})
    checkpointer.close()
    with pytest.raises(UsageError, match=r"config\.json"):  # not (yet) a search workdir
        train.load_search_params(str(tmp_path), None, 10, 3)
    search_config.steps, search_config.batch_size, search_config.seed = 10, 8, 3
    (tmp_path / "config.json").write_text(json.dumps(search_config.to_dict()))
    arch = train.config_architecture(train.load_train_config(
        MICRO_DIGITS, {"architecture": arch_path}))
    params = train.load_search_params(str(tmp_path), arch, 10, 3)
    jax.tree.map(np.testing.assert_array_equal, params, jax.tree.map(np.asarray, state.params))
    model = supernet.build_model(arch.spec, 10, rngs=nnx.Rngs(0))
    supernet.inherit(model, space, plan, params, arch.indices)
    np.testing.assert_array_equal(np.asarray(model.task_head.logits.bias[...]),
                                  np.asarray(state.params["task_head"]["logits"]["bias"]))
    with pytest.raises(UsageError, match=r"config\.init_from"):
        train.load_search_params(str(tmp_path), arch, 100, 3)


def test_predicted_latency_from_a_trained_regressor(arch_path, tmp_path):
    from tunas_jax import cost_model_training

    cm_config = config_files.load_config(
        os.path.join(REPO, "experiments", "cost_models", "micro_pixel6.py"),
        {"num_architectures": "200", "num_steps": "100", "workers": "1"})
    cost_model_training.train_cost_model(cm_config, str(tmp_path), log=lambda _: None)
    config = tiny_config(arch_path, cost_model_workdir=str(tmp_path))
    arch = train.config_architecture(config)
    report = train.cost_report(config, arch, 10, 3, log=lambda _: None)
    assert report["predicted_latency_ms"] > 0 and "predicted_latency_reason" not in report
    config.latency_metric = "end_to_end"  # the regressor's own metric, at its 32 px
    whole = train.cost_report(config, arch, 10, 3, log=lambda _: None)
    assert whole["predicted_latency_ms"] - report["predicted_latency_ms"] == pytest.approx(
        cost_models.fixed_latency_ms("pixel6_edgetpu", 32, 10), rel=1e-5)
    config.targets = ("coral_edgetpu",)  # the regressor was trained for pixel6: refused, with why
    report = train.cost_report(config, arch, 10, 3, log=lambda _: None)
    assert report["predicted_latency_ms"] is None
    assert "trained for target 'pixel6_edgetpu'" in report["predicted_latency_reason"]
    preset = train.config_architecture(tiny_config("preset:mobilenet_edgetpu_v2_tiny"))
    report = train.cost_report(config, preset, 10, 3, log=lambda _: None)
    assert "no search space" in report["predicted_latency_reason"]


def test_result_carries_the_multi_hardware_search_ratios(tmp_path):
    """An architecture from a multi-hardware search (its JSON names each target's target
    latency and the metric): result.json's cost report gives each target's ratio and the
    combined ratio, on the training's own simulated latencies."""
    space = get_space("micro")
    path = str(tmp_path / "multi.json")
    t0 = {"pixel6_edgetpu": 0.01, "pixel4_dsp": 0.1}
    Architecture.from_indices(space, [1] * len(space.decisions), name="tunas_micro_multi").save(
        path, extra={"latency_metric": "layers", "target_latency_ms_by_target": t0,
                     "multi_hardware_metric": "worst"})
    config = tiny_config(path, targets="('pixel6_edgetpu', 'pixel4_dsp', 'pixel3_gpu')")
    report = train.cost_report(config, train.config_architecture(config), 10, 3,
                               log=lambda _: None)
    by_target = report["latency_ms_by_target"]
    assert by_target == report["simulated_latency_ms_by_target"] and len(by_target) == 3
    ratios = {t: by_target[t] / t0[t] for t in t0}
    assert report["latency_ratio_by_target"] == pytest.approx(ratios)
    assert report["multi_hardware_metric"] == "worst"
    assert report["combined_latency_ratio"] == pytest.approx(max(ratios.values()), rel=1e-6)
    config.targets = ("pixel6_edgetpu",)  # a searched target not costed: no ratios
    report = train.cost_report(config, train.config_architecture(config), 10, 3,
                               log=lambda _: None)
    assert "combined_latency_ratio" not in report and "latency_ms_by_target" in report
