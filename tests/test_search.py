"""The one-shot search loop: config validation, outputs, no retrace, exact resume, devices."""

import json
import os
import subprocess
import sys
import textwrap

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

import cost_models
import search_spaces
import tasks
from search_spaces import FILTERS, BlockSpec, OneOf, SearchSpace, SpecError, StageSpec
from search_spaces import registry as space_registry
from tunas_jax import search
from tunas_jax.errors import UsageError
from tunas_jax.metrics_logging import read_metrics

jax.config.update("jax_disable_most_optimizations", True)

MICRO_CONFIG = "experiments/search/micro_digits.py"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_search_space() -> SearchSpace:
    """Two dw/fused blocks on 8 px with a filter decision: compiles in seconds."""
    def block(stride, skippable):
        return BlockSpec(op=OneOf(("dw_ibn", "fused_ibn", "skip") if skippable
                                  else ("dw_ibn", "fused_ibn")),
                         kernel_size=OneOf((3, 5)), expansion_ratio=OneOf((1, 2), FILTERS),
                         pointwise_expansion=1, group_size=8, stride=stride)
    return SearchSpace(
        name="tiny_search", stem_filters=8, stem_kernel_size=3, stem_stride=2,
        stages=(StageSpec(OneOf((8, 16), FILTERS), (block(2, False), block(1, True))),),
        head_filters=16, default_image_size=8, default_num_classes=10, min_group_size=4)


@pytest.fixture(autouse=True)
def tiny_registered(monkeypatch):
    monkeypatch.setitem(space_registry.SPACES, "tiny_search", tiny_search_space)
    space_registry.get_space.cache_clear()
    yield
    space_registry.get_space.cache_clear()


@pytest.fixture(scope="module")
def cost_model_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cost_model"))


TINY_OVERRIDES = {
    "space": "tiny_search", "steps": "8", "batch_size": "8", "valid_batch_size": "16",
    "dataset.image_size": "8", "log_every": "2", "checkpoint_every": "3",
    "compilation_cache_dir": "none", "target_latency_ms": "0.4", "num_devices": "1",
    "data_threads": "1", "controller.op_warmup_fraction": "0.25",  # exercise op warmup
}


def tiny_config(cost_model_dir, **more):
    overrides = dict(TINY_OVERRIDES, **{"cost_model.workdir": cost_model_dir}, **more)
    config = search.load_search_config(MICRO_CONFIG, overrides)
    # A cost-model config for the tiny space: micro's with the space swapped.
    config.cost_model.overrides = {"space": "tiny_search", "num_architectures": 200,
                                   "num_steps": 200, "workers": 1, "model": "linear"}
    return config


# ---- config validation -------------------------------------------------------------
@pytest.mark.parametrize("overrides, error, words", [
    ({"target_latency_ms": "0"}, SpecError, "target_latency_ms"),
    ({"target_latency_ms": "-1.5"}, SpecError, "target_latency_ms"),
    ({"space": "nope"}, SpecError, "space"),
    ({"targets": "tpu9000"}, SpecError, "targets"),
    ({"targets": "('pixel6_edgetpu', 'coral_edgetpu')"}, UsageError,
     "config.target_latencies_ms: 0 values"),
    ({"reward": "linear"}, SpecError, "reward"),
    ({"latency_metric": "wall_clock"}, SpecError, "latency_metric"),
    ({"steps_total": "3"}, UsageError, "steps_total"),
    ({"controller.delay": "0.1"}, UsageError, "controller.delay"),
    ({"optimizer.name": "lamb"}, UsageError, "optimizer.name"),
    ({"optimizer.weight_decay_scope": "all"}, UsageError,
     r"config\.optimizer\.weight_decay_scope: 'all'; use one of \('sampled_kernels'"),
    ({"max_branches_per_layer": "-1"}, UsageError, "max_branches_per_layer"),
    ({"controller.op_warmup_fraction": "0.5"}, SpecError, "op_warmup_fraction"),
    ({"architectures_per_device": "3"}, UsageError, "architectures_per_device"),
    ({"architectures_per_device": "0"}, UsageError, "architectures_per_device"),
])
def test_config_errors_name_the_field(overrides, error, words):
    with pytest.raises(error, match=words) as info:
        search.load_search_config(MICRO_CONFIG, overrides)
    assert "\n" not in str(info.value)


MULTI_CONFIG = "experiments/search/multi_hw_micro_digits.py"


@pytest.mark.parametrize("config_file, overrides, words", [
    (MULTI_CONFIG, {"multi_hardware_metric": "median"},
     r"config.multi_hardware_metric: 'median' is unknown.*average.*geomean.*worst"),
    (MULTI_CONFIG, {"target_latencies_ms": "(0.02, 0.1)"},
     r"config.target_latencies_ms: 2 values .* for the 3 targets"),
    (MULTI_CONFIG, {"target_latencies_ms": "(0.02, 0.1, 0.0)"},
     r"config.target_latencies_ms: 0.0 for pixel3_gpu must be a positive"),
    (MULTI_CONFIG, {"cost_model.configs": "('experiments/cost_models/micro_pixel6.py',)"},
     r"config.cost_model.configs: 1 files for the 3 targets"),
    (MULTI_CONFIG, {"targets": "('pixel4_dsp', 'pixel4_dsp', 'pixel3_gpu')"},
     r"config.targets: .* names a target twice"),
    (MULTI_CONFIG, {"cost_model.overrides.target": "pixel1_cpu"},
     r"config.cost_model.overrides.target: set in a multi-hardware search"),
    (MICRO_CONFIG, {"target_latencies_ms": "(0.02,)"},
     r"config.target_latencies_ms: .* single target pixel6_edgetpu; use "
     r"config.target_latency_ms"),
    (MICRO_CONFIG, {"cost_model.configs": "('experiments/cost_models/micro_pixel6.py',)"},
     r"config.cost_model.configs: .* single target"),
])
def test_multi_hardware_config_errors(config_file, overrides, words):
    with pytest.raises(UsageError, match=words) as info:
        search.load_search_config(config_file, overrides)
    assert "\n" not in str(info.value)


def test_multi_hardware_config_loads_and_pairs_targets():
    from tunas_jax import search_targets as st

    config = search.load_search_config(MULTI_CONFIG)
    assert st.target_latencies_ms(config) == (0.0176, 0.134, 0.986)
    assert st.multi_hardware_metric(config) == "worst"
    files = {t: f for t, (f, _) in st.cost_model_configs(config).items()}
    assert files["pixel4_dsp"].endswith("micro_pixel4_dsp.py")
    assert st.cost_model_workdirs(config, "/w")["pixel3_gpu"] == "/w/cost_model/pixel3_gpu"
    # Without per-target files: the one cost-model config, retargeted per target.
    config.cost_model.configs = ()
    pairs = st.cost_model_configs(config)
    assert {t: o["target"] for t, (_, o) in pairs.items()} == {t: t for t in config.targets}


def test_unknown_key_in_a_variant_is_refused():
    config = search.load_search_config(MICRO_CONFIG)
    config.target_latncy_ms = 1.0
    with pytest.raises(UsageError, match="target_latncy_ms"):
        search.validate_config(config)


def test_every_shipped_config_loads():
    for name in ("micro_digits", "cifar10_micro", "imagenet_mobilenet_edgetpu_v2",
                 "imagenet_proxylessnas", "multi_hw_micro_digits", "host_cpu_micro_digits",
                 "single_hw_pixel6_edgetpu", "single_hw_pixel4_dsp", "single_hw_pixel3_gpu"):
        config = search.load_search_config(f"experiments/search/{name}.py")
        assert config.target_latency_ms > 0
    # The single-device baselines share the multi-hardware config's budgets.
    multi = search.load_search_config(MULTI_CONFIG)
    for target, t0 in zip(multi.targets, multi.target_latencies_ms, strict=True):
        single = search.load_search_config(f"experiments/search/single_hw_{target}.py")
        assert single.targets == (target,) and single.target_latency_ms == t0


def test_cost_model_for_another_space_is_refused(cost_model_dir, tmp_path):
    config = tiny_config(cost_model_dir)
    search.ensure_cost_models(config, str(tmp_path), log=lambda _: None)
    config.space = "micro"
    config.cost_model.overrides = {}
    with pytest.raises(SpecError, match="trained for space"):
        search.run_search(config, str(tmp_path / "w"))


# ---- the loop ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def straight_run(cost_model_dir, tmp_path_factory):
    """An uninterrupted 8-step tiny search (shared: each search compiles for ~20 s)."""
    space_registry.SPACES["tiny_search"] = tiny_search_space
    space_registry.get_space.cache_clear()
    try:
        workdir = tmp_path_factory.mktemp("straight")
        traces = []
        summary = search.run_search(tiny_config(cost_model_dir), str(workdir),
                                    trace_counter=traces)
    finally:
        del space_registry.SPACES["tiny_search"]
        space_registry.get_space.cache_clear()
    return summary, workdir, traces


def test_search_writes_outputs_without_retracing(straight_run):
    summary, tmp_path, traces = straight_run
    # 8 steps, 8 different samples: one trace of the warm program (steps 0-1, op
    # warmup), one of the plain program (steps 2-7; traced beside the first warm step).
    assert sorted(traces) == ["plain", "warm"]
    arch = search_spaces.load(tmp_path / "architecture.json")
    doc = json.loads((tmp_path / "architecture.json").read_text())
    assert arch.space.name == "tiny_search"
    for key in ("target_latency_ms", "predicted_latency_ms", "simulated_latency_ms",
                "simulated_end_to_end_latency_ms", "energy_mj", "params", "macs"):
        assert doc[key] > 0, key
    # micro_digits searches on the 'layers' metric: end to end minus the fixed part.
    assert doc["latency_metric"] == "layers"
    fixed = cost_models.fixed_latency_ms("pixel6_edgetpu", 8, 10)
    assert doc["simulated_latency_ms"] == pytest.approx(
        doc["simulated_end_to_end_latency_ms"] - fixed, abs=1e-9)
    assert doc["simulated_end_to_end_latency_ms"] == pytest.approx(cost_models.simulate(
        tasks.describe(arch.spec, 8, 10), "pixel6_edgetpu").latency_ms, abs=1e-9)
    assert list(arch.indices) == summary["argmax"]["indices"]
    assert json.loads((tmp_path / "config.json").read_text())["space"] == "tiny_search"
    top = json.loads((tmp_path / "search_summary.json").read_text())["top_architectures"]
    assert len(top) == 5
    probs = [t["probability"] for t in top]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    rows = read_metrics(str(tmp_path))
    assert [r["step"] for r in rows] == [2, 4, 6, 8]
    for key in ("loss", "train_accuracy", "valid_quality", "reward", "predicted_latency_ms",
                "entropy", "learning_rate", "controller_learning_rate"):
        assert np.isfinite(rows[-1][key]), key
    assert os.listdir(tmp_path / "tensorboard")


def test_corrupted_newest_checkpoint_resumes_from_the_previous_one(
        straight_run, cost_model_dir, tmp_path, capfd, monkeypatch, corrupt_checkpoint):
    unraisable: list = []  # where tensorstore's "Event loop is closed" errors went
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    import shutil

    summary, straight_dir, _ = straight_run
    workdir = tmp_path / "w"
    shutil.copytree(straight_dir, workdir)
    checkpoints = str(workdir / "checkpoints")
    assert sorted(os.listdir(checkpoints), key=int) == ["6", "8"]
    corrupt_checkpoint(checkpoints, 8)
    capfd.readouterr()
    logs: list[str] = []
    resumed = search.run_search(tiny_config(cost_model_dir), str(workdir), log=logs.append)
    bad = [line for line in logs if line.startswith("checkpoint step")]
    assert len(bad) == 1 and "step 8 in" in bad[0] and "unreadable (" in bad[0], logs
    assert any(line.startswith("resuming from step 6") for line in logs), logs
    # orbax's reads still in flight after the failure used to print ~280 lines.
    out = capfd.readouterr()
    assert "Event loop is closed" not in out.err + out.out
    assert "Traceback" not in out.err + out.out
    assert unraisable == []
    # Steps 7-8 rerun from step 6: the same controller and architecture as without damage.
    assert resumed["final_logits"] == summary["final_logits"]
    assert resumed["argmax"]["indices"] == summary["argmax"]["indices"]
    assert sorted(os.listdir(checkpoints), key=int) == ["6", "8"]  # step 8 saved anew
    assert os.listdir(workdir / "checkpoints_unreadable") == ["8"]
    assert any(line.startswith("moved the unreadable checkpoint step 8") for line in logs)


def test_no_readable_checkpoint_says_how_to_start_over(
        straight_run, cost_model_dir, tmp_path, capsys, corrupt_checkpoint):
    import shutil

    from tunas_jax import cli

    _, straight_dir, _ = straight_run
    workdir = tmp_path / "w"
    shutil.copytree(straight_dir, workdir)
    for step in (6, 8):
        corrupt_checkpoint(str(workdir / "checkpoints"), step)
    overrides = dict(TINY_OVERRIDES, **{"cost_model.workdir": cost_model_dir,
                                        "cost_model.overrides.space": "tiny_search"})
    capsys.readouterr()
    assert cli.main(["search", "--config", MICRO_CONFIG, "--workdir", str(workdir),
                     *[f"--config.{k}={v}" for k, v in overrides.items()]]) == 2
    out = capsys.readouterr()
    bad = [line for line in out.out.splitlines() if "unreadable" in line]
    assert [line.split(" in ")[0] for line in bad] == ["checkpoint step 8", "checkpoint step 6"]
    assert out.err.count("\n") == 1 and "no checkpoint reads back" in out.err
    assert "delete" in out.err and "--workdir" in out.err
    # Nothing was moved: the same command fails the same way until the user decides.
    assert sorted(os.listdir(workdir / "checkpoints"), key=int) == ["6", "8"]
    assert not (workdir / "checkpoints_unreadable").exists()


def test_top_networks_match_brute_force_on_a_small_space():
    space = tiny_search_space()  # 192 index vectors: every network's probability exactly
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(space.num_decisions, max(space.num_choices))) * 2
    p = [np.exp(logits[d, :n]) / np.exp(logits[d, :n]).sum()
         for d, n in enumerate(space.num_choices)]
    network_p: dict = {}
    for idx in np.ndindex(*space.num_choices):  # inactive decisions sum out to 1
        spec = space.decode(idx)
        network_p[spec] = network_p.get(spec, 0.0) + np.prod([p[d][i] for d, i in enumerate(idx)])
    expected = sorted(network_p.values(), reverse=True)[:5]
    top = search.top_networks(logits, space, k=5)
    np.testing.assert_allclose([prob for _, prob in top], expected, rtol=1e-9)
    for idx, prob in top:
        assert network_p[space.decode(idx)] == pytest.approx(prob, rel=1e-9)


def test_top_networks_are_distinct_networks():
    space = search_spaces.get_space("micro")
    logits = np.zeros((space.num_decisions, max(space.num_choices)), np.float32)
    skip = {d.name: d for d in space.decisions}["stages.1.blocks.1.op"]
    logits[skip.position, skip.choices.index("skip")] = 5.0  # its kernel etc. go inactive
    top = search.top_networks(logits, space, k=5)
    specs = [space.decode(idx) for idx, _ in top]
    assert len(set(specs)) == 5
    probs = [p for _, p in top]
    assert probs == sorted(probs, reverse=True)
    # All but the first are ties; the first's probability counts active decisions only.
    p_skip = np.exp(5.0) / (np.exp(5.0) + 4)
    active = space.active_mask(np.asarray(top[0][0]))
    expected = np.prod([p_skip if d.position == skip.position else 1 / len(d.choices)
                        for d in space.decisions if active[d.position]])
    assert top[0][1] == pytest.approx(expected, rel=1e-6)


def test_top_networks_of_a_converged_controller_by_enumeration():
    # Converged active decisions, flat never-trained inactive ones: the case where a
    # ranking of full index vectors fills its list with copies of the argmax network.
    space = search_spaces.get_space("micro")
    logits = np.zeros((space.num_decisions, max(space.num_choices)), np.float32)
    logits[:, 0] = 3.0
    rng = np.random.default_rng(0)
    for d in space.decisions:
        if d.name.endswith("group_size"):
            logits[d.position] = 0.0
    top = search.top_networks(logits, space, k=5)
    # Every index vector of micro (4e8) is too many: draw 50k from the controller's own
    # distribution (any network above ~1e-4 shows up) and sum exact path probabilities.
    p = np.zeros_like(logits, dtype=np.float64)
    for d, n in enumerate(space.num_choices):  # softmax over the decision's own choices
        row = np.exp(logits[d, :n].astype(np.float64))
        p[d, :n] = row / row.sum()
    samples = np.stack([rng.choice(n, size=50_000, p=p[d, :n])
                        for d, n in enumerate(space.num_choices)], axis=1)
    masks = space.active_mask(samples)
    path_p = {}
    for row, mask in zip(samples, masks, strict=True):
        key = space.decode(row)
        path = tuple(np.where(mask, row, -1))
        prob = float(np.prod([p[d, i] for d, (i, a) in enumerate(zip(row, mask, strict=True))
                              if a]))
        path_p.setdefault(key, {})[path] = prob
    network_p = sorted((sum(v.values()) for v in path_p.values()), reverse=True)
    got = [prob for _, prob in top]
    assert got == sorted(got, reverse=True) and len({space.decode(i) for i, _ in top}) == 5
    # Every sampled network ranks at or below the 5th found (none more probable missed).
    assert network_p[0] == pytest.approx(got[0], rel=1e-6)
    assert all(q <= got[-1] * (1 + 1e-6) for q in network_p[5:])


def test_decision_groups_factor_the_active_mask():
    # top_networks relies on it: a group's activity depends on that group only.
    rng = np.random.default_rng(1)
    for name in ("micro", "mobilenet_edgetpu_v2", "proxylessnas"):
        space = search_spaces.get_space(name)
        groups = space.decision_groups
        assert sorted(p for g in groups for p in g) == list(range(space.num_decisions))
        a, b = space.sample(rng, 64), space.sample(rng, 64)
        for group in groups:
            mixed = b.copy()
            mixed[:, group] = a[:, group]  # the rest from other architectures
            np.testing.assert_array_equal(space.active_mask(mixed)[:, group],
                                          space.active_mask(a)[:, group])


def test_resume_ends_like_an_uninterrupted_run(straight_run, cost_model_dir, tmp_path):
    config = tiny_config(cost_model_dir)
    straight = straight_run[0]
    # "Killed" after step 5: the last checkpoint is step 3, steps 4-5 are redone.
    stopped = search.run_search(config, str(tmp_path / "resumed"), stop_at_step=5)
    assert stopped == {"stopped_at": 5}
    resumed = search.run_search(config, str(tmp_path / "resumed"))
    assert resumed["argmax"]["indices"] == straight["argmax"]["indices"]
    np.testing.assert_array_equal(resumed["final_logits"], straight["final_logits"])
    steps = [r["step"] for r in read_metrics(str(tmp_path / "resumed"))]
    assert steps == [2, 4, 6, 8]


# ---- ImageNet configs -------------------------------------------------------------------
IMAGENET_CONFIGS = [("imagenet_mobilenet_edgetpu_v2", "mobilenet_edgetpu_v2"),
                    ("imagenet_proxylessnas", "proxylessnas")]


@pytest.mark.parametrize("name, space", IMAGENET_CONFIGS)
def test_imagenet_configs_have_tunas_hyperparameters_and_read_mock_data(name, space):
    # The hyperparameters and the data path; search steps run in the test below.
    import tensorflow_datasets as tfds

    from tunas_jax.data import create_search_data

    config = search.load_search_config(f"experiments/search/{name}.py",
                                       {"dataset.image_size": "32", "batch_size": "4",
                                        "architectures_per_device": "1"})
    assert config.space == space
    opt = config.optimizer
    assert (opt.name, opt.decay, opt.momentum, opt.epsilon) == ("rmsprop", 0.9, 0.9, 1.0)
    assert (opt.base_learning_rate, opt.warmup_fraction) == (0.165, 0.025)
    assert (opt.label_smoothing, opt.weight_decay) == (0.1, 4e-5)
    full = search.load_search_config(f"experiments/search/{name}.py")
    assert full.valid_batch_size == 4 * 4096
    # TuNAS's 32 architectures per step (one per v2-32 core, 128 images each), one device.
    assert (full.architectures_per_device, full.batch_size // 32) == (32, 128)
    with tfds.testing.mock_data(num_examples=24):
        data = create_search_data(config.dataset, batch_size=4, valid_batch_size=16,
                                  num_threads=1)
        assert next(data.train)["image"].shape == (4, 32, 32, 3)
        assert next(data.valid)["image"].shape == (16, 32, 32, 3)
        assert data.num_classes == 1000


@pytest.mark.parametrize("name, space", IMAGENET_CONFIGS)
def test_imagenet_search_runs_steps_on_mock_data(name, space, tmp_path):
    """Real search steps of the ImageNet configs (32 px, 2 images, mock data).

    MobileNetEdgeTPUv2's supernet (0.61 billion shared weights) runs masked, as its
    config says, and stops after two of three steps, before the end-of-search
    checkpoint: orbax stages a copy of the 7.3 GB state to write it (21 GB peak
    measured), too close to a 23 GB CI machine's memory."""
    import tensorflow_datasets as tfds

    big = space == "mobilenet_edgetpu_v2"
    config = search.load_search_config(f"experiments/search/{name}.py", {
        "steps": "3" if big else "2", "batch_size": "2", "valid_batch_size": "2",
        "dataset.image_size": "32", "log_every": "1",
        "checkpoint_every": "1000" if big else "2",
        "compilation_cache_dir": "none", "num_devices": "1", "data_threads": "1",
        # Two architectures of one image each on proxylessnas (the K > 1 path of a real
        # config); one on mobilenet_edgetpu_v2, whose compile dominates the test.
        "architectures_per_device": "1" if big else "2",
        "cost_model.workdir": str(tmp_path / "cm")})
    config.cost_model.overrides = {"num_architectures": 200, "num_steps": 200, "workers": 1,
                                   "model": "linear"}
    if big:
        # Unoptimized XLA runs threefry (weight init) and the RMSProp update over
        # 0.61 billion weights so slowly that it outweighs the compile time it saves.
        jax.config.update("jax_disable_most_optimizations", False)
    try:
        with tfds.testing.mock_data(num_examples=16):
            summary = search.run_search(config, str(tmp_path / "w"),
                                        stop_at_step=2 if big else None)
    finally:
        jax.config.update("jax_disable_most_optimizations", True)
    metrics = read_metrics(str(tmp_path / "w"))
    assert [r["step"] for r in metrics] == [1, 2]
    assert all(np.isfinite(r["loss"]) for r in metrics)
    if big:
        assert summary == {"stopped_at": 2}
        return
    architecture = search_spaces.load(tmp_path / "w" / "architecture.json")
    assert architecture.space.name == space


# ---- several architectures per device ----------------------------------------------------
@flax.struct.dataclass
class _SumPredictor:
    """A stand-in latency model (a pytree, as the step takes it): scale * (1 + sum)."""

    scale: jax.Array

    def __call__(self, indices):
        return self.scale * (1.0 + jnp.sum(indices, axis=-1))


def _tiny_step(schedule: dict, traces: list, num_devices: int = 1, **step_options):
    """The tiny space's search step (momentum, a stand-in predictor, the abs reward) and
    its initial state (seed 1), under the controller `schedule` overrides."""
    import controllers
    import supernet
    from tunas_jax import search_step

    space = tiny_search_space()
    plan, task = supernet.make_plan(space), tasks.get_task("classification", num_classes=10)
    opt = type("Opt", (), {"name": "momentum", "momentum": 0.9, "base_learning_rate": 2.0,
                           "warmup_fraction": 0.0})()
    optimizer, lr_schedule = search_step.make_optimizer(opt, 10, 8)
    config = controllers.ReinforceConfig.from_mapping({
        "total_steps": 10, "delay_fraction": 0.0, "op_warmup_fraction": 0.0,
        "filter_warmup_fraction": 0.0, "base_lr": 0.5, "batch_size": 8, **schedule})
    state = search_step.init_state(space, plan, task, optimizer, config, seed=1)
    predictor, rp = _SumPredictor(jnp.float32(0.01)), search_step.RewardParams.create(0.05,
                                                                                      -0.1)
    step = search_step.make_step(space, plan, task, optimizer, lr_schedule, predictor, "abs",
                                 rp, 0.0, search_step.make_mesh(num_devices), traces,
                                 **step_options)
    return space, plan, task, optimizer, state, predictor, rp, step


def _tiny_batches() -> tuple[dict, dict]:
    keys = jax.random.split(jax.random.key(5), 4)
    return ({"image": jax.random.normal(keys[0], (8, 8, 8, 3)),
             "label": jax.random.randint(keys[1], (8,), 0, 10)},
            {"image": jax.random.normal(keys[2], (8, 8, 8, 3)),
             "label": jax.random.randint(keys[3], (8,), 0, 10)})


def test_after_the_op_warmup_the_step_runs_the_plain_program():
    """A search with op warmup runs the warm program only while the warmup probability is
    above 0: its first step mixes the warm op decisions (the loss of the mixture the step
    drew), its step after the warmup is the no-warmup search's step, bit for bit, from
    the same state and batches (the warm program's per-unit mixtures are not in it).
    The plain program was compiled ahead, beside the first warm step: traced once, the
    executable the step past the warmup runs."""
    import controllers
    import supernet
    from tunas_jax import search_step

    warm_schedule = {"delay_fraction": 0.3, "op_warmup_fraction": 0.2,
                     "filter_warmup_fraction": 0.2}  # warmups over steps 0 and 1 of 10
    warm_traces, plain_traces = [], []
    space, plan, task, _, warm_state, *_, warm_step = _tiny_step(
        warm_schedule, warm_traces, weight_decay=1e-2)
    *_, plain_state, _, _, plain_step = _tiny_step(
        dict(warm_schedule, op_warmup_fraction=0.0), plain_traces, weight_decay=1e-2)
    mesh = search_step.make_mesh(1)
    train, valid = _tiny_batches()
    warm_step.compile_plain_ahead(warm_state, train, valid)  # as run_search does

    def run(step, state, at):
        state = search_step.replicate(jax.tree.map(jnp.copy, state.replace(
            step=jnp.int32(at))), mesh)
        return jax.device_get(step(state, train, valid))

    # Step 0: warmup probability 1, every op decision of the sample mixed.
    (_, warm_metrics), (_, plain_metrics) = run(warm_step, warm_state, 0), run(
        plain_step, plain_state, 0)
    rng, _ = jax.random.split(warm_state.rng)
    sample_rng, warm_rng = jax.random.split(jax.random.fold_in(rng, 0))
    schedule = warm_state.controller.spec.config.schedule
    masks = controllers.warmup_masks(warm_rng, 0, space, schedule, 1)
    indices = controllers.apply_filter_warmup(
        controllers.sample(warm_state.controller, sample_rng, num=1), masks, space)[0]
    assert bool(masks.all_ops.any())

    def loss(op_warm):
        output, _ = supernet.apply(plan, task, warm_state.params, indices, train["image"],
                                   op_warm=op_warm)
        return float(task.loss(output, train)[0])

    assert float(warm_metrics["loss"]) == pytest.approx(loss(masks.all_ops[0]), rel=1e-5)
    assert float(plain_metrics["loss"]) == pytest.approx(loss(None), rel=1e-5)
    assert abs(loss(masks.all_ops[0]) - loss(None)) > 1e-4  # the mixture is another net
    assert plain_traces == ["plain"] and warm_step.wait_for_plain_program()
    assert sorted(warm_traces) == ["plain", "warm"]  # the plain one traced in the thread

    # Step 2: past both warmups; the warm search's step is the plain program's.
    warm_after, plain_after = run(warm_step, warm_state, 2), run(plain_step, plain_state, 2)
    assert sorted(warm_traces) == ["plain", "warm"] and plain_traces == ["plain"]
    for got, want in zip(jax.tree.leaves(warm_after), jax.tree.leaves(plain_after),
                         strict=True):
        np.testing.assert_array_equal(got, want)


def test_k_architectures_per_device_each_train_and_score_on_their_share():
    """K = 2 on one device: the shared-weight gradient is the mean of each architecture's
    gradient on its half of the training batch (its own weight decay included), each is
    scored on its half of the validation batch, and the controller gets both rewards."""
    import controllers
    import supernet
    from tunas_jax import search_step

    wd, traces = 1e-2, []
    _, plan, task, optimizer, state, predictor, _, step = _tiny_step(
        {}, traces, weight_decay=wd, architectures_per_device=2)
    mesh = search_step.make_mesh(1)
    train, valid = _tiny_batches()
    new, metrics = step(search_step.replicate(jax.tree.map(jnp.copy, state), mesh), train,
                        valid)

    # The same samples as the step draws (its rng derivation, device 0).
    rng, _ = jax.random.split(state.rng)
    sample_rng, _ = jax.random.split(jax.random.fold_in(rng, 0))
    indices = controllers.sample(state.controller, sample_rng, num=2)
    assert not np.array_equal(indices[0], indices[1])
    half = [jax.tree.map(lambda a, k=k: a[4 * k:4 * (k + 1)], b) for b in (train, valid)
            for k in range(2)]

    def loss(p, k):
        output, _ = supernet.apply(plan, task, p, indices[k], half[k]["image"])
        return search_step.shared_weight_loss(plan, p, indices[k],
                                              task.loss(output, half[k])[0], wd)

    grads = jax.tree.map(lambda a, b: (a + b) / 2, jax.grad(loss)(state.params, 0),
                         jax.grad(loss)(state.params, 1))
    updates, _ = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    for got, want in zip(jax.tree.leaves(new.params), jax.tree.leaves(params), strict=True):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-6)
    quality = jnp.stack([task.quality(supernet.apply(
        plan, task, params, indices[k], half[2 + k]["image"], train=False)[0], half[2 + k])
        for k in range(2)])
    assert float(metrics["valid_quality"]) == pytest.approx(float(quality.mean()), abs=1e-6)
    rewards = controllers.abs_reward(quality, predictor(indices), 0.05, -0.1)
    want, _ = controllers.update(state.controller, indices, rewards)
    np.testing.assert_allclose(new.controller.logits, want.logits, rtol=1e-5, atol=1e-7)
    step(new, train, valid)
    assert len(traces) == 1


def test_ablation_switches_restore_the_pre_fix_credit_and_decay():
    """`controller.credit_warmed_decisions` and `optimizer.weight_decay_scope` switch two
    issue-18 fixes off (the "before" of benchmarks/supernet_ranking.py): with every filter
    decision forced by the warmup (inside the controller's LR delay, so the logits stay),
    only the ablation feeds the filter decisions' gradients into the controller's Adam
    moments; the 'all_weights' optimizer decays every weight without a gradient, TuNAS's
    none."""
    import controllers
    from tunas_jax import search_step

    mesh = search_step.make_mesh(1)
    train, valid = _tiny_batches()
    filters = np.asarray(controllers.decision_tag_masks(tiny_search_space())[1])
    assert filters.any()
    second_moment = {}  # two architectures: their rewards differ from the first baseline
    for credit in (False, True):
        _, _, _, _, state, *_, step = _tiny_step(
            {"delay_fraction": 1.0, "filter_warmup_fraction": 1.0,
             "credit_warmed_decisions": credit}, [], architectures_per_device=2)
        new, _ = step(search_step.replicate(jax.tree.map(jnp.copy, state), mesh), train,
                      valid)
        second_moment[credit] = np.asarray(new.controller.opt_state.nu)
        np.testing.assert_array_equal(new.controller.logits, state.controller.logits)
    assert not second_moment[False][filters].any()  # TuNAS: no credit
    assert second_moment[True][filters].any()  # the ablation: credited
    assert second_moment[False][~filters].any()  # the others are credited either way

    params = {"w": jnp.ones((3,)), "b": jnp.full((2,), 2.0)}
    zeros = jax.tree.map(jnp.zeros_like, params)
    for scope, decayed in (("sampled_kernels", False), ("all_weights", True)):
        opt = ml_collections.ConfigDict({
            "name": "momentum", "momentum": 0.9, "base_learning_rate": 2.0,
            "warmup_fraction": 0.0, "weight_decay": 0.1, "weight_decay_scope": scope})
        optimizer, _ = search_step.make_optimizer(opt, 10, 256)
        updates, _ = optimizer.update(zeros, optimizer.init(params), params)
        assert all(bool(jnp.any(u != 0)) == decayed for u in jax.tree.leaves(updates))
        assert search_step.masked_weight_decay(opt) == (0.0 if decayed else 0.1)


# ---- several devices ---------------------------------------------------------------------
MULTI_DEVICE_SCRIPT = textwrap.dedent("""
    import json, sys
    import jax
    jax.config.update("jax_disable_most_optimizations", True)
    sys.path.insert(0, {tests!r})
    import test_search as T
    from search_spaces import registry
    registry.SPACES["tiny_search"] = T.tiny_search_space
    from tunas_jax import search
    config = T.tiny_config({cost_model!r}, num_devices="4", steps="4",
                           **{{"controller.op_warmup_fraction": "0"}})  # one program
    traces = []
    summary = search.run_search(config, {workdir!r}, trace_counter=traces)
    print(json.dumps({{"devices": jax.device_count(), "traces": len(traces),
                      "indices": summary["argmax"]["indices"]}}))
""")


def test_one_architecture_per_device_on_four_cpu_devices(cost_model_dir, tmp_path):
    script = MULTI_DEVICE_SCRIPT.format(tests=os.path.join(REPO, "tests"),
                                        cost_model=cost_model_dir, workdir=str(tmp_path))
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["devices"] == 4 and result["traces"] == 1
    assert search_spaces.load(tmp_path / "architecture.json").indices == tuple(
        result["indices"])
    rows = read_metrics(str(tmp_path))
    assert rows[-1]["step"] == 4 and np.isfinite(rows[-1]["loss"])


def test_command_parses_nested_overrides_and_formats_help():
    import argparse

    from tunas_jax.cli import parse_command_line
    from tunas_jax.commands import search as command
    from tunas_jax.config_files import config_from_args

    parser = argparse.ArgumentParser(prog="tunas-jax")
    command.add_parser(parser.add_subparsers(dest="command"))
    args = parse_command_line(parser, [
        "search", "--config", MICRO_CONFIG, "--workdir", "/nonexistent",
        "--config.controller.delay_fraction=0.5", "--config.target_latency_ms=-1",
        "--config.cost_model.overrides.model=linear"])
    config = config_from_args(args)
    assert config.controller.delay_fraction == 0.5
    # The cost-model section keeps the config file's values and takes new ones, typed.
    assert config.cost_model.overrides.model == "linear"
    assert config.cost_model.overrides.num_steps == 2000
    with pytest.raises(SpecError, match="target_latency_ms"):
        command.run(args)
    text = parser._subparsers._group_actions[0].choices["search"].format_help()
    assert "--config.dataset.image_size=32" in text
    assert "--config.cost_model.overrides.FIELD=VALUE" in text


# ---- multi-hardware search (end to end, through the CLI) --------------------------------
def test_multi_hardware_search_and_report_through_the_cli(tiny_registered, tmp_path,
                                                         monkeypatch, capsys):
    """Three targets, worst case: a regressor trained per target, the three evaluated in
    one step compiled once, every target's latency and ratio in architecture.json, the
    logged reward equal to abs of the worst logged ratio, and the report's per-device
    table and bar chart."""
    import functools

    from tunas_jax import cli

    traces: list = []
    monkeypatch.setattr(search, "run_search",
                        functools.partial(search.run_search, trace_counter=traces))
    t0 = {"pixel6_edgetpu": 0.0013, "pixel4_dsp": 0.04, "pixel3_gpu": 0.38}  # tiny's medians
    workdir, cost_dir = tmp_path / "multi", tmp_path / "cost_models"
    overrides = dict(TINY_OVERRIDES, **{
        "controller.op_warmup_fraction": "0.0", "cost_model.workdir": str(cost_dir),
        "target_latencies_ms": repr(tuple(t0.values())),
        "cost_model.overrides.space": "tiny_search",
        "cost_model.overrides.num_architectures": "200",
        "cost_model.overrides.num_steps": "200", "cost_model.overrides.model": "linear"})
    del overrides["target_latency_ms"]
    assert cli.main(["search", "--config", MULTI_CONFIG, "--workdir", str(workdir),
                     *[f"--config.{k}={v}" for k, v in overrides.items()]]) == 0
    assert "worst latency ratio" in capsys.readouterr().out
    assert len(traces) == 1  # 8 steps, three regressors in the step: one trace

    for target in t0:  # one regressor per target, each trained for its own
        meta = json.loads((cost_dir / target / "cost_model.json").read_text())
        assert (meta["space"], meta["target"]) == ("tiny_search", target)
    doc = json.loads((workdir / "architecture.json").read_text())
    arch = search_spaces.load(workdir / "architecture.json")
    assert doc["name"] == "tunas_tiny_search_multi_worst"
    assert doc["targets"] == list(t0) and doc["multi_hardware_metric"] == "worst"
    assert doc["target_latency_ms_by_target"] == t0
    net = tasks.describe(arch.spec, 8, 10)
    for target in t0:
        expected = (cost_models.simulate(net, target).latency_ms
                    - cost_models.fixed_latency_ms(target, 8, 10))
        assert doc["latency_ms_by_target"][target] == pytest.approx(expected, abs=1e-9)
        assert doc["latency_ratio_by_target"][target] == pytest.approx(expected / t0[target])
    assert doc["combined_latency_ratio"] == pytest.approx(
        max(doc["latency_ratio_by_target"].values()), rel=1e-6)
    # The single-target fields stay, as the first target's.
    assert doc["simulated_latency_ms"] == doc["latency_ms_by_target"]["pixel6_edgetpu"]

    row = read_metrics(str(workdir))[-1]  # K = 1 on one device: the step's own values
    ratios = [row[f"predicted_latency_ms_{t}"] / t0[t] for t in t0]
    assert row["latency_ratio"] == pytest.approx(max(ratios), rel=1e-5)
    assert row["reward"] == pytest.approx(  # micro_digits' beta = -1
        row["valid_quality"] - abs(row["latency_ratio"] - 1.0), rel=1e-5, abs=1e-6)

    out = tmp_path / "report"
    assert cli.main(["report", str(workdir), "--out", str(out)]) == 0
    assert (out / "multi_devices.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "report.html").read_text()
    assert "multi: latency per device" in page and "worst ratio" in page
    for target in t0:
        assert f"{target} ms (/ {t0[target]:.4g})" in page


# ---- random baseline and report (end to end, through the CLI) ---------------------------
def test_random_baseline_and_report_commands(straight_run, tiny_registered, tmp_path, capsys):
    from tunas_jax import cli, report

    _, search_dir, _ = straight_run
    baseline_dir = tmp_path / "random"
    args = ["random-baseline", "--config", "experiments/train/micro_digits.py",
            "--num", "2", "--latency-band", "0.008,0.010", "--workdir", str(baseline_dir),
            "--config.num_steps=2", "--config.dataset.image_size=16",
            "--config.batch_size=32", "--config.eval_batch_size=128",
            "--config.num_threads=1"]
    assert cli.main(args) == 0
    baseline = json.loads((baseline_dir / "baseline.json").read_text())
    top1 = [a["top1"] for a in baseline["architectures"]]
    assert len(top1) == 2 and baseline["summary"]["median_top1"] == pytest.approx(
        float(np.median(top1)))
    result = baseline_dir / "arch_01" / "result.json"
    stamp = result.stat().st_mtime_ns
    assert cli.main(args) == 0  # a rerun trains nothing again
    assert result.stat().st_mtime_ns == stamp
    capsys.readouterr()

    out = tmp_path / "report"
    assert cli.main(["report", str(search_dir), str(baseline_dir), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    page = (out / "report.html").read_text()
    for name in ("accuracy_vs_latency", f"{search_dir.name}_curves",
                 f"{search_dir.name}_probabilities", f"{search_dir.name}_architecture"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert page.count("data:image/png;base64,") == 4
    assert "arch_00" in page and search_dir.name in page
    collection = report.collect([str(search_dir), str(baseline_dir)])
    assert [p.kind for p in collection.points] == ["random", "random"]
    assert len(collection.searches[0].probabilities) == 4  # logged every 2 of 8 steps
    assert cli.main(["report", str(tmp_path / "nothing"), "--out", str(out)]) == 2
    assert "holds no" in capsys.readouterr().err


def test_pareto_front_and_comparison():
    from tunas_jax import report, report_plots

    latency = np.asarray([1.0, 2.0, 2.0, 3.0, 0.5])
    top1 = np.asarray([0.8, 0.7, 0.9, 0.85, 0.6])
    assert report_plots.pareto_front(latency, top1).tolist() == [4, 0, 2]
    points = [report.TrainedPoint(f"p{i}", kind, acc, "top1", ms, 1.0, "layers", None, "")
              for i, (kind, acc, ms) in enumerate([
                  ("searched", 0.9, 1.0), ("searched", 0.8, 1.02), ("searched", 0.99, 2.0),
                  ("random", 0.7, 0.97), ("random", 0.95, 1.0), ("random", 0.84, 1.04)])]
    assert report.comparison(report.Collection([], points, [])) is None  # no band: no claim
    band = {"latency_metric": "layers", "latency_band_ms": [0.95, 1.05]}
    verdict = report.comparison(report.Collection([], points, [band]))
    assert verdict["searched_n"] == 2 and verdict["excluded_outside_band"] == 1
    assert verdict["quality_metric"] == "top1"
    assert verdict["searched_mean"] == pytest.approx(0.85)
    assert verdict["random_median"] == pytest.approx(0.84)
    assert verdict["searched_mean_above_random_median"]
    other_metric = {"latency_metric": "end_to_end", "latency_band_ms": [0.95, 1.05]}
    assert report.comparison(report.Collection([], points, [other_metric])) is None


# ---- several processes (jax.distributed) ---------------------------------------------------
MULTI_HOST_CONFIG = textwrap.dedent("""
    from experiments.search import micro_digits

    def get_config():
        config = micro_digits.get_config()
        config.space, config.steps, config.batch_size, config.valid_batch_size = (
            "tiny_search", 4, 8, 16)
        config.dataset.image_size, config.target_latency_ms = 8, 0.4
        config.log_every, config.checkpoint_every, config.num_devices = 1, 2, 0
        config.compilation_cache_dir, config.data_threads = "none", 1
        config.controller.op_warmup_fraction = 0.0  # one program: one compile
        config.cost_model.overrides = {{"space": "tiny_search", "num_architectures": 200,
                                       "num_steps": 200, "workers": 1, "model": "linear"}}
        return config
""")
MULTI_HOST_SCRIPT = textwrap.dedent("""
    import sys
    import jax
    jax.config.update("jax_disable_most_optimizations", True)
    sys.path.insert(0, {tests!r})
    import test_search as T
    from search_spaces import registry
    registry.SPACES["tiny_search"] = T.tiny_search_space
    from tunas_jax import cli
    sys.exit(cli.main(["search", "--config", {config!r}, *sys.argv[1:]]))
""")


def test_search_command_over_two_processes_matches_one_process(tmp_path):
    """`tunas-jax search` in 2 processes (loopback coordinator, one CPU device each, each
    reading its half of every global batch, one shared workdir) ends as one process with
    two devices on the same global batches and seed: same metrics at every step, same
    controller, same architecture; process 0 alone writes the files (the cost model it
    builds while process 1 waits at the barrier, metrics once per step)."""
    import socket

    (tmp_path / "tiny_config.py").write_text(MULTI_HOST_CONFIG.format())
    script = tmp_path / "multi_host.py"
    script.write_text(MULTI_HOST_SCRIPT.format(tests=os.path.join(REPO, "tests"),
                                               config=str(tmp_path / "tiny_config.py")))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
    two, one = tmp_path / "two", tmp_path / "one"
    runs = [subprocess.Popen(
        [sys.executable, str(script), "--workdir", str(two), "--coordinator",
         f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i)], env=env,
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    runs.append(subprocess.Popen(
        [sys.executable, str(script), "--workdir", str(one)], cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(env, XLA_FLAGS="--xla_force_host_platform_device_count=2")))
    outputs = []
    for run in runs:
        out, err = run.communicate(timeout=600)
        assert run.returncode == 0, err[-3000:]
        outputs.append(out)
    assert "wrote" in outputs[0] and "wrote" not in outputs[1]
    assert search_spaces.load(two / "architecture.json").indices == search_spaces.load(
        one / "architecture.json").indices
    for name in ("metrics.jsonl", "controller_probabilities.jsonl"):
        rows_two, rows_one = read_metrics(str(two), name), read_metrics(str(one), name)
        assert [r["step"] for r in rows_two] == [r["step"] for r in rows_one] == [1, 2, 3, 4]
        for a, b in zip(rows_two, rows_one, strict=True):
            assert a.keys() == b.keys()
            for key in a:
                if key == "probabilities":  # a list per decision
                    a[key], b[key] = (np.concatenate(r[key]) for r in (a, b))
                if "seconds" not in key and not key.endswith("_s"):
                    np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-5,
                                               err_msg=f"{name} step {a['step']} {key}")
    assert sorted(os.listdir(two / "checkpoints")) == sorted(os.listdir(one / "checkpoints"))
    assert (two / "cost_model").is_dir()
