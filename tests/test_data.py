"""Tests for tunas_jax.data: digits TFDS build, splits, grain pipelines, resume, mock TFDS data."""

from __future__ import annotations

import io
import json
import socket
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

from tunas_jax.data import digits, image_ops, pipeline, sources
from tunas_jax.errors import UsageError


def _digits_config(data_dir):
    config = sources.default_dataset_config()
    config.data_dir = str(data_dir)
    return config


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    real_connect = socket.socket.connect

    def no_network(self, address):
        raise AssertionError(f"digits preparation tried to connect to {address}")

    socket.socket.connect = no_network
    try:
        digits.prepare_digits(data_dir)
    finally:
        socket.socket.connect = real_connect
    return data_dir


def test_digits_prepares_offline_without_tensorflow(digits_dir):
    assert "tensorflow" not in sys.modules
    train = tfds.data_source("tunas_digits", split="train", data_dir=digits_dir, download=False)
    test = tfds.data_source("tunas_digits", split="test", data_dir=digits_dir, download=False)
    assert (len(train), len(test)) == (1442, 355)
    assert sources.num_classes(train) == 10
    example = train[0]
    assert example["image"].shape == (32, 32, 3) and example["image"].dtype == np.uint8
    labels = np.array([test[i]["label"] for i in range(len(test))])
    assert set(labels.tolist()) == set(range(10))
    # Grayscale replicated to 3 channels; 0..16 scaled to the full 0..255 range.
    images = np.stack([train[i]["image"] for i in range(len(train))])
    assert np.array_equal(images[..., 0], images[..., 2])
    assert images.max() == 255 and images.min() == 0
    # The hard-coded normalisation constants match the prepared data.
    scaled = images.astype(np.float64) / 255.0
    np.testing.assert_allclose(scaled.mean(), digits.DIGITS_MEAN[0], atol=1e-3)
    np.testing.assert_allclose(scaled.std(), digits.DIGITS_STD[0], atol=1e-3)
    # A second prepare is a no-op on the same directory.
    assert digits.prepare_digits(digits_dir) == digits_dir


def test_digits_split_is_stratified_and_deterministic():
    labels = np.repeat(np.arange(10), 7)
    split = digits.split_indices(labels)
    assert np.array_equal(split["test"], digits.split_indices(labels)["test"])
    assert not set(split["train"]) & set(split["test"])
    assert np.array_equal(np.bincount(labels[split["test"]]), np.ones(10))


def test_valid_split_is_held_out_of_train(digits_dir):
    config = _digits_config(digits_dir)
    train, valid = sources.make_search_splits(config)
    full = sources.load_source(config, "train")
    assert len(train) + len(valid) == len(full)
    assert len(valid) == round(0.1 * len(full))
    # Slices are contiguous ranges of the stored order: train ++ valid == train split.
    for i in (0, len(train) - 1):
        assert np.array_equal(train[i]["image"], full[i]["image"])
    for i in (0, len(valid) - 1):
        assert np.array_equal(valid[i]["image"], full[len(train) + i]["image"])


def test_overlapping_or_bad_splits_are_rejected(digits_dir, tmp_path):
    sources.check_held_out("train[:80%]", "train[80%:]")
    with pytest.raises(UsageError, match="overlaps"):
        sources.check_held_out("train[:90%]", "train[85%:]")
    with pytest.raises(UsageError, match="overlaps"):
        sources.check_held_out("train", "train[-5%:]")
    with pytest.raises(UsageError, match="eval_split"):
        sources.load_source(_digits_config(digits_dir), "validation", "eval_split")
    config = sources.default_dataset_config()
    config.name = "no_such_dataset_xyz"
    with pytest.raises(UsageError, match="not a TFDS dataset"):
        sources.load_source(config, "train")
    config.name, config.data_dir = "cifar10", str(tmp_path)
    with pytest.raises(UsageError, match="not found in data_dir"):
        sources.load_source(config, "train")


def test_search_batches_and_exact_resume(digits_dir):
    config = _digits_config(digits_dir)
    data = pipeline.create_search_data(config, batch_size=8, seed=3, num_threads=2)
    batch, valid = next(data.train), next(data.valid)
    assert batch["image"].shape == (8, 32, 32, 3) and batch["image"].dtype == np.float32
    assert batch["label"].shape == (8,) and batch["label"].dtype == np.int32
    assert valid["image"].shape == (32, 32, 32, 3)  # 4x the training batch, as in TuNAS
    assert (data.num_classes, data.image_shape) == (10, (32, 32, 3))
    assert not data.preprocess.random_flip  # mirrored digits are not digits
    assert abs(float(batch["image"].mean())) < 0.5  # normalised
    for _ in range(5):
        next(data.train), next(data.valid)
    state = json.loads(json.dumps(data.get_state()))
    expected = [(next(data.train), next(data.valid)) for _ in range(3)]
    resumed = pipeline.create_search_data(config, batch_size=8, seed=3, num_threads=2)
    resumed.set_state(state)
    for (train_a, valid_a), (train_b, valid_b) in zip(
        expected, [(next(resumed.train), next(resumed.valid)) for _ in range(3)], strict=True
    ):
        for key in ("image", "label"):
            assert np.array_equal(train_a[key], train_b[key])  # augmentation included
            assert np.array_equal(valid_a[key], valid_b[key])
    other_seed = pipeline.create_search_data(config, batch_size=8, seed=4, num_threads=2)
    assert not np.array_equal(
        next(other_seed.train)["image"],
        next(pipeline.create_search_data(config, batch_size=8, seed=3, num_threads=2).train)[
            "image"
        ],
    )


def test_process_shards_concatenate_to_the_global_batch(digits_dir):
    """Each `jax.distributed` process reads its rows of every global batch; together they
    are the unsharded batches, augmentation included, and a bad split is one error."""
    config = _digits_config(digits_dir)
    whole = pipeline.create_search_data(config, batch_size=8, seed=3, num_threads=1)
    shards = [pipeline.create_search_data(config, batch_size=8, seed=3, num_threads=1,
                                          shard=(i, 2)) for i in range(2)]
    for _ in range(2):
        for stream in ("train", "valid"):
            full = next(getattr(whole, stream))
            parts = [next(getattr(shard, stream)) for shard in shards]
            assert parts[0]["image"].shape[0] == full["image"].shape[0] // 2
            for key in ("image", "label"):
                assert np.array_equal(np.concatenate([p[key] for p in parts]), full[key])
    with pytest.raises(UsageError, match="does not split into 3 equal process shards"):
        pipeline.create_search_data(config, batch_size=8, shard=(0, 3))


def _labelled_source(num_examples):
    return [
        {"image": np.full((8, 8, 3), i, np.uint8), "label": np.int64(i)}
        for i in range(num_examples)
    ]


def _identity_preprocess(image_size=8):
    return pipeline.Preprocess(image_size, np.zeros(3, np.float32), np.ones(3, np.float32) / 255)


def test_iterator_reshuffles_every_epoch_and_covers_all():
    iterator = pipeline.make_iterator(
        _labelled_source(10), 5, seed=0, train=False, preprocess=_identity_preprocess()
    )
    epochs = [np.concatenate([next(iterator)["label"] for _ in range(2)]) for _ in range(3)]
    for epoch in epochs:
        assert sorted(epoch.tolist()) == list(range(10))
    assert not np.array_equal(epochs[0], epochs[1])


def test_eval_iterator_pads_last_batch_with_mask(digits_dir):
    eval_data = pipeline.create_eval_data(_digits_config(digits_dir), batch_size=100)
    batches = list(eval_data)
    assert len(batches) == len(eval_data) == 4
    assert all(b["image"].shape == (100, 32, 32, 3) for b in batches)
    assert [int(b["mask"].sum()) for b in batches] == [100, 100, 100, 55]
    assert not batches[-1]["mask"][55:].any()
    # In order, unshuffled: labels follow the source.
    source = sources.load_source(_digits_config(digits_dir), "test")
    assert batches[1]["label"][7] == source[107]["label"]


def test_cifar10_mock_reads_through_pipeline():
    with tfds.testing.mock_data(num_examples=12):
        config = sources.default_dataset_config()
        config.name = "cifar10"
        data = pipeline.create_search_data(config, batch_size=4, num_threads=1)
        batch = next(data.train)
        assert batch["image"].shape == (4, 32, 32, 3) and batch["label"].dtype == np.int32
        assert data.num_classes == 10
        assert data.preprocess.augment == "pad_crop" and data.preprocess.random_flip
        eval_batches = list(pipeline.create_eval_data(config, batch_size=5))
        assert [int(b["mask"].sum()) for b in eval_batches] == [5, 5, 2]


def test_imagenet_mock_resizes_variable_size_images():
    with tfds.testing.mock_data(num_examples=6):
        config = sources.default_dataset_config()
        config.update(name="imagenet2012", image_size=64, eval_split="validation")
        data = pipeline.create_search_data(config, batch_size=2, num_threads=1)
        assert data.preprocess.augment == "inception"
        assert next(data.train)["image"].shape == (2, 64, 64, 3)
        assert next(data.valid)["image"].shape == (8, 64, 64, 3)
        assert data.num_classes == 1000
        eval_batch = next(iter(pipeline.create_eval_data(config, batch_size=4)))
        assert eval_batch["image"].shape == (4, 64, 64, 3)


class TunasTestPngImages(tfds.core.GeneratorBasedBuilder):
    """Variable-size PNG `tfds.features.Image` examples, encoded with PIL (no TF)."""

    VERSION = tfds.core.Version("1.0.0")

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:  # Same tfds workaround as TunasDigits.
        return epath.Path(__file__)

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3)),
                    "label": tfds.features.ClassLabel(num_classes=3),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        rng = np.random.default_rng(0)
        for i in range(6):
            pixels = rng.integers(0, 256, (20 + 7 * i, 30, 3), dtype=np.uint8)
            png = io.BytesIO()
            Image.fromarray(pixels).save(png, format="png")
            yield i, {"image": png.getvalue(), "label": i % 3}


def test_real_image_feature_decodes_without_tensorflow(tmp_path):
    # mock_data bypasses decoding, so check the real PNG -> numpy path (PIL) too.
    TunasTestPngImages(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
    config = sources.default_dataset_config()
    config.update(name="tunas_test_png_images", data_dir=str(tmp_path), image_size=16)
    config.update(train_split="train[:50%]", valid_split="train[50%:]", eval_split="train")
    data = pipeline.create_search_data(config, batch_size=2, num_threads=1)
    assert data.preprocess.augment == "inception"
    assert next(data.train)["image"].shape == (2, 16, 16, 3)
    source = sources.load_source(config, "train")
    shapes = sorted(source[i]["image"].shape for i in range(len(source)))
    assert shapes == [(20 + 7 * i, 30, 3) for i in range(6)]
    assert source[0]["image"].dtype == np.uint8
    assert "tensorflow" not in sys.modules


def test_resize_matches_pil_bilinear():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    for height, width in [(64, 64), (16, 20)]:
        ours = image_ops.resize(image, height, width)
        pil = np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))
        assert np.abs(ours - pil).max() <= 1.0  # PIL rounds to uint8
