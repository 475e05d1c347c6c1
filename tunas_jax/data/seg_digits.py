"""The built-in segmentation dataset: scikit-learn's digits placed on a canvas.

Each 32x32 example is a 2x2 grid of 16x16 cells; each cell holds a digit with
probability `DIGIT_PROBABILITY` (an image with none gets one in a random cell),
upscaled bilinearly from 8x8 to a random side of 12-16 px and placed at a random
offset inside its cell, so digits never overlap. A digit's stroke pixels
(upscaled intensity >= `STROKE_THRESHOLD` of 16) are drawn with their intensity
and labelled with the digit's class + 1; every other pixel is black and labelled
0 (background). So the label map is exactly what the image shows: 11 classes,
no ignored pixels.

Why this layout (EXPERIMENTS.md §7): version 1.0.0 placed three digits at
random positions, later ones painting over earlier ones, so many labelled
strokes belonged to a digit partly hidden by another, while a digit's class can
only be read from the whole digit. Here every digit is whole and fits its 16 px
cell (2x2 stride-8 features, 4x4 stride-4 logits), and strokes drawn from
intensity 2 make about a third of the pixels digit pixels (22% before).

Everything is drawn from `np.random.default_rng(seed)` (`make_examples`), so a
seed gives the same dataset on every machine. The `train` split is drawn from the
digits of `tunas_digits`' train split, `test` from its test split (no digit image
in both). Stored like `tunas_digits` (TFDS, ArrayRecord, `tfds.features.Tensor`:
no TensorFlow), prepared offline on first use as `seg_digits`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from tunas_jax.data import digits, image_ops

SEG_DIGITS_NAME = "tunas_seg_digits"
IMAGE_SIZE = 32
NUM_CLASSES = 11  # background + the 10 digits
CELL_PX = 16  # the canvas is a grid of CELL_PX cells, at most one digit in each
DIGIT_PROBABILITY = 0.75  # that a cell holds a digit
DIGIT_SIDES_PX = (12, 16)  # inclusive range of a placed digit's side
STROKE_THRESHOLD = 2  # of the digits' 0..16 intensity
SPLIT_SIZES = {"train": 2000, "test": 500}
SEED = 0


def make_examples(digit_images: np.ndarray, digit_labels: np.ndarray, num: int, seed: int,
                  image_size: int = IMAGE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [num, S, S, 3], labels uint8 [num, S, S]) from 8x8 digits (0..16)
    and their classes, deterministic from `seed`."""
    rng = np.random.default_rng(seed)
    images = np.zeros((num, image_size, image_size), np.uint8)
    labels = np.zeros((num, image_size, image_size), np.uint8)
    cells = [(row, col) for row in range(0, image_size - CELL_PX + 1, CELL_PX)
             for col in range(0, image_size - CELL_PX + 1, CELL_PX)]
    for n in range(num):
        occupied = [cell for cell in cells if rng.random() < DIGIT_PROBABILITY]
        if not occupied:
            occupied = [cells[int(rng.integers(len(cells)))]]
        for row, col in occupied:
            i = int(rng.integers(len(digit_images)))
            side = int(rng.integers(DIGIT_SIDES_PX[0], DIGIT_SIDES_PX[1] + 1))
            top, left = (origin + int(rng.integers(0, CELL_PX - side + 1))
                         for origin in (row, col))
            big = image_ops.resize(digit_images[i].astype(np.float32)[..., None], side,
                                   side)[..., 0]
            stroke = big >= STROKE_THRESHOLD
            window = (slice(top, top + side), slice(left, left + side))
            gray = np.clip(np.rint(big * (255.0 / 16.0)), 0, 255).astype(np.uint8)
            images[n][window] = np.where(stroke, gray, 0)
            labels[n][window] = np.where(stroke, digit_labels[i] + 1, 0)
    return np.repeat(images[..., None], 3, axis=-1), labels


class TunasSegDigits(tfds.core.GeneratorBasedBuilder):
    """Digits on a 32x32 canvas with per-pixel labels (registered as 'tunas_seg_digits')."""

    VERSION = tfds.core.Version("2.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {
        "1.0.0": "3 digits of 12-16 px per 32x32 image, seed 0; 2000 train, 500 test.",
        "2.0.0": "Up to 4 non-overlapping digits (one per 16 px cell), strokes from "
                 "intensity 2; seed 0; 2000 train, 500 test.",
    }

    # The same tfds 4.9.10 workaround as `TunasDigits.code_path`.
    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        return epath.Path(__file__)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Tensor(shape=(IMAGE_SIZE, IMAGE_SIZE, 3),
                                              dtype=np.uint8),
                "label": tfds.features.Tensor(shape=(IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8),
            }),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # nothing to download
        from sklearn.datasets import load_digits

        source = load_digits()
        classes = source.target.astype(np.int64)
        out = {}
        for offset, (split, idx) in enumerate(digits.split_indices(classes).items()):
            images, labels = make_examples(source.images[idx], classes[idx],
                                           SPLIT_SIZES[split], SEED + offset)
            out[split] = self._generate_examples(images, labels)
        return out

    def _generate_examples(self, images: np.ndarray, labels: np.ndarray):
        for index in range(len(images)):
            yield index, {"image": images[index], "label": labels[index]}


def prepare_seg_digits(data_dir: str | os.PathLike | None = None) -> Path:
    """Prepares `tunas_seg_digits` into data_dir once (offline); returns the data_dir."""
    root = Path(data_dir).expanduser() if data_dir is not None else digits.default_data_dir()
    builder = TunasSegDigits(data_dir=str(root), file_format="array_record")
    if not builder.is_prepared():
        root.mkdir(parents=True, exist_ok=True)
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    return root
