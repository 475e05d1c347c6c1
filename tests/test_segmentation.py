"""Semantic segmentation: the loss's ignore label, mIoU from confusion sums, the output
stage, the DeepLabv3+ head in both forms, the seg_digits dataset, and a tiny search and
training run end to end."""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from test_search import TINY_OVERRIDES, tiny_search_space

import cost_models
import search_spaces
import supernet
from cost_models.regressor import read_metadata
from search_spaces import get_space
from search_spaces import registry as space_registry
from tasks import Segmentation, describe, get_task
from tasks.segmentation import first_argmax, predict
from tunas_jax import cli, search, train
from tunas_jax.data import ade20k, seg_digits, sources
from tunas_jax.data.sources import default_dataset_config, load_source

jax.config.update("jax_disable_most_optimizations", True)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEARCH_CONFIG = os.path.join(REPO, "experiments", "search", "autoseg_digits.py")
TRAIN_CONFIG = os.path.join(REPO, "experiments", "train", "seg_digits.py")


@pytest.fixture
def tiny_space(monkeypatch):
    monkeypatch.setitem(space_registry.SPACES, "tiny_search", tiny_search_space)
    space_registry.get_space.cache_clear()
    yield
    space_registry.get_space.cache_clear()


# ---- objective ------------------------------------------------------------------------
def test_loss_ignores_the_ignore_label():
    task = Segmentation(3, ignore_label=255)
    logits = jax.random.normal(jax.random.key(0), (2, 4, 4, 3))
    labels = jax.random.randint(jax.random.key(1), (2, 4, 4), 0, 3)
    ignored = labels.at[:, :2].set(255)
    # With the top half ignored the loss is the bottom half's alone, whatever its labels.
    loss_ignored, _ = task.loss(logits, {"label": ignored})
    loss_bottom, _ = task.loss(logits[:, 2:], {"label": labels[:, 2:]})
    np.testing.assert_allclose(loss_ignored, loss_bottom, rtol=1e-6)
    other = ignored.at[:, :2].set(0)  # the same pixels labelled: a different loss
    assert abs(float(task.loss(logits, {"label": other})[0]) - float(loss_ignored)) > 1e-3
    with pytest.raises(ValueError, match="ignore_label"):
        Segmentation(3, ignore_label=2)


def test_miou_from_a_hand_computed_confusion_matrix_over_batches():
    task = Segmentation(3, ignore_label=9)
    # Labels / predictions of 8 pixels in two batches of one 1x4 image each.
    labels = [np.array([[[0, 0, 1, 2]]]), np.array([[[1, 1, 9, 0]]])]
    preds = [np.array([[[0, 1, 1, 2]]]), np.array([[[1, 0, 2, 0]]])]
    sums = {}
    for lab, pred in zip(labels, preds, strict=True):
        logits = jax.nn.one_hot(pred, 3) * 5.0  # argmax = pred, already at full size
        out = task.eval_sums(logits, {"label": jnp.asarray(lab)}, jnp.ones(1, bool))
        for key, value in out.items():
            sums[key] = sums.get(key, 0.0) + np.asarray(value, np.float64)
    # Valid pixels (label, pred): (0,0) (0,1) (1,1) (2,2) (1,1) (1,0) (0,0); 9 ignored.
    want = np.array([[2, 1, 0], [1, 2, 0], [0, 0, 1]])
    np.testing.assert_array_equal(sums["confusion"], want)
    metrics = task.finish_eval(sums)
    # IoU: class 0: 2 / (3 + 3 - 2) = 0.5; class 1: 2 / (3 + 3 - 2) = 0.5; class 2: 1.
    assert metrics["miou"] == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    per_class = {k: v for k, v in metrics.items() if k.startswith("iou_class_")}
    assert per_class == pytest.approx({"iou_class_0": 0.5, "iou_class_1": 0.5,
                                       "iou_class_2": 1.0})
    assert metrics["pixel_accuracy"] == pytest.approx(5 / 7)
    # Not the mean of the two batches' mIoUs (2/3 and 1/2: classes 0 and 1 only).
    per_batch = [float(task.quality(jax.nn.one_hot(p, 3) * 5.0, {"label": jnp.asarray(lab)}))
                 for lab, p in zip(labels, preds, strict=True)]
    assert abs(np.mean(per_batch) - metrics["miou"]) > 0.05


def test_output_stages_agree_and_argmax_takes_the_first_maximum():
    tied = jnp.array([[[[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0]]]])
    np.testing.assert_array_equal(first_argmax(tied), [[[1, 0]]])
    # Piecewise-constant logits (each 2x2 block one vector): bilinear then argmax equals
    # argmax then nearest on the interior, and both upsample to the full size.
    logits = jax.random.normal(jax.random.key(3), (2, 4, 4, 5))
    exact = predict(logits, 8, 8, "exact")
    approx = predict(logits, 8, 8, "approximate")
    assert exact.shape == approx.shape == (2, 8, 8)
    np.testing.assert_array_equal(approx[:, ::2, ::2], first_argmax(logits))
    # Same resolution: the stages are the same function.
    np.testing.assert_array_equal(predict(logits, 4, 4, "exact"),
                                  predict(logits, 4, 4, "approximate"))
    agree = float(jnp.mean(exact == approx))
    assert 0.5 < agree < 1.0  # they agree on most pixels, not all (bilinear mixes)


def test_both_output_stages_are_costed_and_approximate_is_faster():
    spec = get_space("micro").decode([0] * 23)
    latency = {}
    for stage in ("exact", "approximate"):
        network = describe(spec, 64, Segmentation(11, output_stage=stage))
        names = [layer.name for layer in network.layers]
        assert {"output.resize", "output.argmax"} <= set(names)
        assert network.layers[-1].output_shape == (64, 64, 1)
        latency[stage] = cost_models.simulate(network, "pixel6_edgetpu").latency_ms
    assert latency["approximate"] < latency["exact"]


# ---- head -----------------------------------------------------------------------------
def test_head_shapes_and_supernet_equals_standalone(tiny_space):
    space = get_space("tiny_search")  # 8 px: endpoints stride_2 (4 px), features (2 px)
    task = Segmentation(11, num_decoder_convs=2, low_level_endpoint="stride_2",
                        aspp_channels=8, low_level_channels=4, decoder_channels=8)
    plan = supernet.make_plan(space)
    params = supernet.init_params(plan, task, jax.random.key(0))
    images = jax.random.normal(jax.random.key(1), (4, 8, 8, 3))
    apply = jax.jit(lambda p, i, x: supernet.apply(plan, task, p, i, x)[0])  # one compile
    for indices in space.sample(np.random.default_rng(0), 3):
        spec = space.decode(indices)
        model = supernet.build_model(spec, task, rngs=nnx.Rngs(1))
        supernet.inherit(model, space, plan, params, indices)
        want, _ = model(images)
        got = apply(params, jnp.asarray(indices), images)
        assert got.shape == want.shape == (4, 4, 4, 11)  # the stride-2 endpoint's size
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        assert supernet.count_params(model) == describe(spec, 8, task).params
    assert get_task(**task.to_json()) == task


# ---- data -----------------------------------------------------------------------------
def test_seg_digits_are_deterministic_and_labelled_by_stroke():
    from sklearn.datasets import load_digits

    source = load_digits()
    images, labels = seg_digits.make_examples(source.images[:50], source.target[:50], 20, 7)
    again, labels_again = seg_digits.make_examples(source.images[:50], source.target[:50],
                                                   20, 7)
    np.testing.assert_array_equal(images, again)
    np.testing.assert_array_equal(labels, labels_again)
    other, _ = seg_digits.make_examples(source.images[:50], source.target[:50], 20, 8)
    assert not np.array_equal(images, other)
    # Background (0) exactly where the canvas is black; classes 1..10 are digits + 1.
    np.testing.assert_array_equal(labels == 0, images[..., 0] == 0)
    assert labels.max() <= 10 and len(np.unique(labels)) > 5
    # One digit alone: its labelled pixels are its class + 1.
    _, one_label = seg_digits.make_examples(source.images[3:4], source.target[3:4], 1, 0)
    assert set(np.unique(one_label)) == {0, int(source.target[3]) + 1}


# ---- end to end -----------------------------------------------------------------------
def test_tiny_segmentation_search_and_training(tiny_space, tmp_path, capsys):
    overrides = dict(TINY_OVERRIDES, **{
        "cost_model.workdir": str(tmp_path / "cost_model"), "steps": "4",
        "controller.op_warmup_fraction": "0.0", "segmentation.head": "deeplab",
        "segmentation.low_level_endpoint": "stride_2",
        "segmentation.aspp_channels": "8", "segmentation.low_level_channels": "8",
        "segmentation.decoder_channels": "8", "segmentation.output_stage": "approximate",
        "target_latency_ms": "0.01"})
    config = search.load_search_config(SEARCH_CONFIG, overrides)
    config.cost_model.overrides = {"space": "tiny_search", "num_architectures": 200,
                                   "num_steps": 200, "workers": 1, "model": "linear"}
    summary = search.run_search(config, str(tmp_path / "search"), log=lambda _: None)
    assert summary["steps"] == 4
    metadata = read_metadata(str(tmp_path / "cost_model"))
    assert metadata["task"]["output_stage"] == "approximate"  # costed with the head
    arch = search_spaces.load(tmp_path / "search" / "architecture.json")
    # The search's simulated latency is the segmentation network's.
    network = describe(arch.spec, 8, get_task(**config_task(config)))
    want = cost_models.simulate(network, "pixel6_edgetpu").latency_ms
    assert summary["argmax"]["simulated_end_to_end_latency_ms"] == pytest.approx(want)

    train_config = train.load_train_config(TRAIN_CONFIG, {
        "architecture": str(tmp_path / "search" / "architecture.json"),
        "dataset.image_size": "8", "batch_size": "16", "eval_batch_size": "250",
        "num_steps": "3", "eval_every_epochs": "100", "num_threads": "1",
        "segmentation.head": "deeplab", "segmentation.low_level_endpoint": "stride_2",
        "segmentation.aspp_channels": "8",
        "segmentation.low_level_channels": "8", "segmentation.decoder_channels": "8"})
    result = train.run_training(train_config, str(tmp_path / "train"), log=lambda _: None)
    assert result["quality_metric"] == "miou" and 0.0 <= result["miou"] <= 1.0
    assert 0.0 <= result["eval_pixel_accuracy"] <= 1.0 and result["num_eval_examples"] == 500
    # `tunas-jax evaluate` re-evaluates the checkpoint: the same mIoU, printed as such.
    capsys.readouterr()
    assert cli.main(["evaluate", "--workdir", str(tmp_path / "train")]) == 0
    assert capsys.readouterr().out.startswith(f"miou {result['miou']:.4f} on test")
    # The same weights through either output stage (`--output-stage`): the run's own
    # gives the run's mIoU, the other is the one the evaluation's task applies.
    exact = train.evaluate_workdir(tmp_path / "train", output_stage="exact")
    assert exact["miou"] == pytest.approx(result["miou"])
    approx = train.evaluate_workdir(tmp_path / "train", output_stage="approximate")
    assert approx["output_stage"] == "approximate" and 0.0 <= approx["miou"] <= 1.0
    fns = train._restore_workdir(tmp_path / "train", "approximate")[3]
    assert fns.task.output_stage == "approximate"
    assert cli.main(["evaluate", "--workdir", str(tmp_path / "train"),
                     "--output-stage", "approximate"]) == 0
    assert "approximate output stage" in capsys.readouterr().out
    # Per-class IoU beside mIoU: their mean is the mIoU (over the classes present).
    per_class = [v for k, v in result.items() if k.startswith("eval_iou_class_")]
    assert per_class and np.mean(per_class) == pytest.approx(result["miou"])


def config_task(config) -> dict:
    return {"name": "segmentation", "num_classes": seg_digits.NUM_CLASSES,
            **config.segmentation.to_dict()}



# ---- ADE20K -----------------------------------------------------------------------------
ADE_SEARCH_CONFIG = os.path.join(REPO, "experiments", "search", "autoseg_ade20k.py")
ADE_TRAIN_CONFIG = os.path.join(REPO, "experiments", "train", "autoseg_ade20k.py")
# The paper's BiFPN head shrunk to the tiny space at 8 px: levels 1..3 (the stride-2 and
# stride-4 endpoints, one level made by downsampling), 8 filters, one repeat.
TINY_ADE_HEAD = {"segmentation.bifpn_min_level": "1", "segmentation.bifpn_max_level": "3",
                 "segmentation.bifpn_num_filters": "8", "segmentation.bifpn_num_repeats": "1"}


def test_ade20k_32_classes_keep_ids_1_to_31_and_ignore_the_rest():
    ids = np.array([[0, 1, 2, 31], [32, 33, 150, 255]], np.uint8)
    want = np.array([[255, 1, 2, 31], [255, 255, 255, 255]])
    np.testing.assert_array_equal(ade20k.to_32_classes(ids), want)
    # An RGB annotation: the class id is the red channel, the others are not read.
    rgb = np.stack([ids, np.full_like(ids, 7), np.full_like(ids, 200)], axis=-1)
    np.testing.assert_array_equal(ade20k.to_32_classes(rgb), want)
    with pytest.raises(ValueError, match="annotation"):
        ade20k.to_32_classes(np.zeros(5, np.uint8))


def test_ade20k_configs_read_mock_tfds_and_train(tiny_space, tmp_path):
    import tensorflow_datasets as tfds

    from tunas_jax.data import create_search_data

    dataset = default_dataset_config()
    dataset.name = "ade20k"
    dataset.data_dir = str(tmp_path / "no_data_here")  # mock_data serves every read
    with tfds.testing.mock_data(num_examples=24):
        source = load_source(dataset, "train")
        assert sources.num_classes(source) == ade20k.NUM_CLASSES == 32
        labels, annotation = source[0]["label"], source.source[0]["annotation"]
        assert labels.shape == annotation.shape[:2]
        np.testing.assert_array_equal(labels, ade20k.to_32_classes(annotation))

        # The search config: its data as the search reads it (held-out split, 8 px here),
        # and its head on the real space at 512 px (no compile: the description).
        config = search.load_search_config(ADE_SEARCH_CONFIG, {
            "dataset.image_size": "8", "dataset.data_dir": dataset.data_dir})
        data = create_search_data(config.dataset, batch_size=8, valid_batch_size=4,
                                  num_threads=1)
        assert data.num_classes == 32
        for batch in (next(data.train), next(data.valid)):
            assert batch["image"].shape[1:] == (8, 8, 3) and batch["label"].shape[1:] == (8, 8)
            assert set(np.unique(batch["label"])) <= set(range(1, 32)) | {255}
        # The paper's setting: the autoseg space, its head decisions carried by the
        # architecture (here the smallest head: 1 repeat, minimum level 4 = stride 16).
        assert (config.space, config.segmentation.head) == ("autoseg", "bifpn")
        task = get_task(name="segmentation", num_classes=32, **config.segmentation.to_dict())
        spec = get_space(config.space).decode([0] * len(get_space(config.space).decisions))
        assert dict(spec.task_head) == {"bifpn_min_level": 4, "bifpn_num_repeats": 1}
        network = describe(spec, 512, task)
        assert network.layers[-1].output_shape == (512, 512, 1)
        assert next(x for x in network.layers if x.name == "logits").output_shape == \
            (32, 32, 32)

        # The training config, a few steps on a tiny architecture (8 px).
        arch = search_spaces.Architecture.from_indices(get_space("tiny_search"), [0] * 7)
        (tmp_path / "arch.json").write_text(json.dumps(arch.to_json()))
        train_config = train.load_train_config(ADE_TRAIN_CONFIG, dict(TINY_ADE_HEAD, **{
            "architecture": str(tmp_path / "arch.json"), "dataset.image_size": "8",
            "dataset.data_dir": dataset.data_dir, "batch_size": "8", "eval_batch_size": "16",
            "num_steps": "2", "num_threads": "1"}))
        assert train_config.segmentation.bifpn_num_filters == 8  # overridden, else 96
        result = train.run_training(train_config, str(tmp_path / "train"), log=lambda _: None)
    assert result["quality_metric"] == "miou" and 0.0 <= result["miou"] <= 1.0
    assert result["num_classes"] == 32 and result["num_eval_examples"] == 24
