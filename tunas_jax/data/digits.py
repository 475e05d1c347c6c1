"""The built-in default dataset: scikit-learn's 8x8 digits as a TFDS dataset.

`load_digits` ships inside scikit-learn, so this dataset prepares offline and
without TensorFlow, which makes every search/train command runnable on a bare
machine. The 1797 8x8 grayscale images are upscaled bilinearly to 32x32 (the
"micro" space's input size), scaled 0..16 -> 0..255 and replicated to 3
channels, and stored as `tfds.features.Tensor` (not `tfds.features.Image`,
whose encoder needs TensorFlow) in ArrayRecord files so `tfds.data_source`
can read them with random access.

Split: a fixed stratified split with no RNG: within each class, every 5th
image (in scikit-learn's order) goes to `test` (355 images), the rest to
`train` (1442). The search carves its held-out validation set out of `train`
with TFDS slicing (see `tunas_jax.data.sources.make_search_splits`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from tunas_jax.data import image_ops

DIGITS_NAME = "tunas_digits"
IMAGE_SIZE = 32
NUM_CLASSES = 10
# Per class, index % TEST_EVERY == TEST_EVERY - 1 goes to the test split (20%).
TEST_EVERY = 5
# Per-channel statistics of the train split in [0, 1] units (all 3 channels are
# equal: grayscale). tests/test_data.py recomputes them from the prepared data.
DIGITS_MEAN = (0.3051, 0.3051, 0.3051)
DIGITS_STD = (0.3238, 0.3238, 0.3238)

# Env var that overrides the default cache location of the prepared dataset.
DATA_DIR_ENV = "TUNAS_JAX_DATA_DIR"


def default_data_dir() -> Path:
    """Where `prepare_digits` writes by default: $TUNAS_JAX_DATA_DIR or the user cache."""
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser()
    return cache / "tunas_jax" / "tensorflow_datasets"


def upscale_digits(pixels_0_16: np.ndarray, image_size: int = IMAGE_SIZE) -> np.ndarray:
    """[N, 8, 8] digits with values 0..16 -> uint8 [N, image_size, image_size, 3] in 0..255."""
    scaled = pixels_0_16.astype(np.float32).transpose(1, 2, 0) * (255.0 / 16.0)
    # The N images ride along as channels: one resize call for the whole set.
    big = image_ops.resize(scaled, image_size, image_size).transpose(2, 0, 1)
    gray = np.clip(np.rint(big), 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1)


def split_indices(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Deterministic stratified split of the 1797 digits: {'train': idx, 'test': idx}."""
    rank_in_class = np.zeros(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rank_in_class[members] = np.arange(len(members))
    is_test = rank_in_class % TEST_EVERY == TEST_EVERY - 1
    return {"train": np.flatnonzero(~is_test), "test": np.flatnonzero(is_test)}


class TunasDigits(tfds.core.GeneratorBasedBuilder):
    """scikit-learn digits, 32x32x3 uint8, 10 classes (registered as 'tunas_digits')."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {
        "1.0.0": "Bilinear 8x8 -> 32x32 upscale, stratified 1442/355 split."
    }

    # Workaround (tfds 4.9.10): the inherited `code_path` takes an
    # `isinstance(path, importlib_resources.abc.Traversable)` branch for any
    # builder defined inside an installed package, and `importlib_resources`
    # (a backport) is not installed, so download_and_prepare() dies with
    # ModuleNotFoundError. Our code path is simply this file; TFDS only uses
    # it to look for a (non-existent) checksums.tsv next to it.
    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        return epath.Path(__file__)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(
                        shape=(IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8
                    ),
                    "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://scikit-learn.org/stable/datasets/toy_dataset.html#digits-dataset",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # Nothing to download: the data ships inside scikit-learn.
        from sklearn.datasets import load_digits  # Lazy: sklearn import costs ~1 s.

        digits = load_digits()
        images, labels = upscale_digits(digits.images), digits.target.astype(np.int64)
        return {
            split: self._generate_examples(images, labels, idx)
            for split, idx in split_indices(labels).items()
        }

    def _generate_examples(self, images: np.ndarray, labels: np.ndarray, indices: np.ndarray):
        for index in indices:
            # The key is the index in load_digits(): stable, so TFDS's key-hash
            # shuffle at write time (and hence every split slice) is reproducible.
            yield int(index), {"image": images[index], "label": int(labels[index])}


def prepare_digits(data_dir: str | os.PathLike | None = None) -> Path:
    """Prepares `tunas_digits` (ArrayRecord) into data_dir once; returns the data_dir used.

    A no-op when already prepared. Needs neither network nor TensorFlow: the
    builder downloads nothing and only uses `tfds.features.Tensor`. TFDS writes
    into an `incomplete.*` folder and renames it at the end, so an interrupted
    run leaves no half-written dataset behind.
    """
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    builder = TunasDigits(data_dir=str(root), file_format="array_record")
    if not builder.is_prepared():
        root.mkdir(parents=True, exist_ok=True)
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(try_download_gcs=False)
        )
    return root
