"""Random-access data sources by name, and the search's train/valid split.

Every dataset is read with `tfds.data_source` (ArrayRecord files, random
access, no TensorFlow): the built-in `digits` (prepared on first use, see
`digits.py`) or any TFDS dataset already prepared in ArrayRecord format in a
data_dir (`tfds build cifar10 --file_format=array_record` on a machine with
network). Nothing here downloads.

TuNAS trains the shared weights on one part of the training set and computes
the controller's reward on a disjoint, held-out part of the same training set
(never the test set); `make_search_splits` returns those two sources and
refuses overlapping split specs.
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from tunas_jax.data import ade20k, digits, seg_digits
from tunas_jax.errors import UsageError

DIGITS_ALIASES = ("digits", digits.DIGITS_NAME)
SEG_DIGITS_ALIASES = ("seg_digits", seg_digits.SEG_DIGITS_NAME)
# Classes of datasets whose label is a dense map (a Tensor feature has no class count).
DENSE_NUM_CLASSES = {seg_digits.SEG_DIGITS_NAME: seg_digits.NUM_CLASSES,
                     ade20k.ADE20K_NAME: ade20k.NUM_CLASSES}
# Datasets whose examples are not {'image', 'label'} as stored: the wrapper that reads
# them so (ADE20K: the 32-class map of its 'annotation').
LABEL_READERS = {ade20k.ADE20K_NAME: ade20k.LabelledSource}
# The label that augmentation pads a dense label map with, where it is not 0 (0 is
# seg_digits' background; ADE20K's padding is unlabelled, and its class 0 no target).
LABEL_PAD = {ade20k.ADE20K_NAME: ade20k.IGNORE_LABEL}

# Per-channel mean/std in [0, 1] units for datasets we know; others are
# estimated from a sample of their training split (`estimate_mean_std`).
_IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
KNOWN_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    digits.DIGITS_NAME: (digits.DIGITS_MEAN, digits.DIGITS_STD),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet2012": _IMAGENET_STATS,
    "imagenette": _IMAGENET_STATS,
    "imagenet_v2": _IMAGENET_STATS,
    ade20k.ADE20K_NAME: ade20k.MEAN_STD,  # the released segmentation models' (x - 0.5) / 0.5
}

# Size used to turn split specs into example ranges for the overlap check:
# percent slices are exact at any size, absolute indices are checked as given.
_OVERLAP_CHECK_SIZE = 10**9


def default_dataset_config() -> ml_collections.ConfigDict:
    """The `config.dataset` section with its defaults (the built-in digits)."""
    config = ml_collections.ConfigDict()
    # 'digits' (built in, prepared offline on first use), 'seg_digits' (the built-in
    # segmentation dataset: digits on a canvas, per-pixel labels), 'ade20k' (TFDS
    # 'scene_parse150' with the released segmentation models' 32 classes) or any TFDS
    # name prepared in ArrayRecord format in data_dir (e.g. 'cifar10', 'imagenet2012').
    config.name = "digits"
    # TFDS data_dir. '' = digits: ~/.cache/tunas_jax/tensorflow_datasets
    # ($TUNAS_JAX_DATA_DIR overrides); other datasets: TFDS's default
    # (~/tensorflow_datasets or $TFDS_DATA_DIR).
    config.data_dir = ""
    # Side of the square model input in pixels; images are resized/cropped to it.
    config.image_size = 32
    # Shared weights train on train_split; the controller's reward comes from
    # valid_split, which must be held out of train_split (TFDS slicing syntax).
    config.train_split = "train[:90%]"
    config.valid_split = "train[90%:]"
    # Final evaluation split ('validation' for imagenet2012, which has no labelled test).
    config.eval_split = "test"
    # 'auto', 'pad_crop' (small images: pad + random crop), 'inception'
    # (random-resized crop; eval: center crop) or 'none'. 'auto' picks
    # 'inception' for variable-size or large images, else 'pad_crop'.
    config.augment = "auto"
    # Random horizontal flips in training: 'auto' (on, except digits), 'yes', 'no'.
    config.random_flip = "auto"
    # Hold small fixed-shape splits (<= 256 MiB, e.g. digits, cifar10) in RAM
    # instead of decoding TFDS records every step.
    config.in_memory = True
    return config


def resolve_name(name: str) -> str:
    """Config name -> TFDS builder name ('digits' -> 'tunas_digits')."""
    if name in SEG_DIGITS_ALIASES:
        return seg_digits.SEG_DIGITS_NAME
    if name in ade20k.ALIASES:
        return ade20k.ADE20K_NAME
    return digits.DIGITS_NAME if name in DIGITS_ALIASES else name


def is_digits(name: str) -> bool:
    """Digits, plain or on a canvas (mirrored digits are not digits: no random flips)."""
    return name in DIGITS_ALIASES + SEG_DIGITS_ALIASES


def _data_dir(dataset_config: ml_collections.ConfigDict) -> str | None:
    data_dir = dataset_config.get("data_dir") or None
    return str(Path(data_dir).expanduser()) if data_dir else None


def load_source(
    dataset_config: ml_collections.ConfigDict, split: str, field: str = "split"
) -> Sequence[dict[str, Any]]:
    """`tfds.data_source` for one split; prepares digits if needed, never downloads.

    Args:
      dataset_config: the `config.dataset` section (name, data_dir).
      split: a TFDS split spec, e.g. 'train[:90%]'.
      field: the config field the split came from, named in error messages.

    Raises:
      UsageError: unknown dataset name, dataset not prepared in data_dir (or
        prepared as TFRecord, which has no random access), unknown split.
    """
    name = resolve_name(dataset_config.name)
    data_dir = _data_dir(dataset_config)
    if name == digits.DIGITS_NAME:
        data_dir = str(digits.prepare_digits(data_dir))
    elif name == seg_digits.SEG_DIGITS_NAME:
        data_dir = str(seg_digits.prepare_seg_digits(data_dir))
    try:
        source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except tfds.core.registered.DatasetNotFoundError:
        raise UsageError(
            f"config.dataset.name={dataset_config.name!r} is not a TFDS dataset: "
            "use 'digits' or a name from `tfds.list_builders()`"
        ) from None
    except (NotImplementedError, AssertionError, FileNotFoundError) as err:
        raise _not_prepared_error(name, data_dir, err) from None
    except ValueError as err:
        if "split" in str(err).lower():
            raise UsageError(f"config.dataset.{field}={split!r}: {err}") from None
        raise
    reader = LABEL_READERS.get(name)
    return reader(source) if reader is not None else source


def _not_prepared_error(name: str, data_dir: str | None, err: Exception) -> UsageError:
    """Turns TFDS's misleading 'TFRECORD is not supported' into what to do."""
    builder = tfds.builder(name, data_dir=data_dir)
    where = builder.data_dir
    if builder.is_prepared():
        return UsageError(
            f"dataset {name!r} in {where} has no random-access files ({err.__class__.__name__}):"
            f" rebuild it with `tfds build {name} --file_format=array_record`"
        )
    return UsageError(
        f"dataset {name!r} not found in data_dir {data_dir or '(TFDS default)'} "
        f"(looked for {where}): prepare it with `tfds build {name} "
        "--file_format=array_record` on a machine with network, or set config.dataset.data_dir"
    )


class _EverySplit(dict):
    """split_infos stand-in for `ReadInstruction.to_absolute`: any split, fixed size."""

    def __contains__(self, split: object) -> bool:
        return True

    def __missing__(self, split: str) -> types.SimpleNamespace:
        return types.SimpleNamespace(num_examples=_OVERLAP_CHECK_SIZE)


def _example_ranges(spec: str) -> list[tuple[str, int, int]]:
    """(split, start, stop) ranges a split spec reads, at `_OVERLAP_CHECK_SIZE` examples/split."""
    instructions = tfds.core.ReadInstruction.from_spec(spec).to_absolute(_EverySplit())
    # TFDS leaves open ends as None.
    return [
        (ins.splitname, ins.from_ or 0, _OVERLAP_CHECK_SIZE if ins.to is None else ins.to)
        for ins in instructions
    ]


def check_held_out(train_split: str, valid_split: str) -> None:
    """Raises UsageError if the two split specs can share an example."""
    for split_a, start_a, stop_a in _example_ranges(train_split):
        for split_b, start_b, stop_b in _example_ranges(valid_split):
            if split_a == split_b and max(start_a, start_b) < min(stop_a, stop_b):
                raise UsageError(
                    f"config.dataset.valid_split={valid_split!r} overlaps "
                    f"train_split={train_split!r}: the controller's reward must come from "
                    "examples held out of weight training, e.g. 'train[:90%]' / 'train[90%:]'"
                )


def make_search_splits(
    dataset_config: ml_collections.ConfigDict,
) -> tuple[Sequence[dict[str, Any]], Sequence[dict[str, Any]]]:
    """(train_source, valid_source): weight-training and held-out reward examples."""
    train_split = dataset_config.get("train_split", "train[:90%]")
    valid_split = dataset_config.get("valid_split", "train[90%:]")
    check_held_out(train_split, valid_split)
    return (
        load_source(dataset_config, train_split, "train_split"),
        load_source(dataset_config, valid_split, "valid_split"),
    )


def num_classes(source: Any) -> int:
    """Number of label classes, from the source's TFDS metadata (a dense label map's
    from `DENSE_NUM_CLASSES`)."""
    name = source.dataset_info.name
    if name in DENSE_NUM_CLASSES:
        return DENSE_NUM_CLASSES[name]
    feature = source.dataset_info.features["label"]
    if hasattr(feature, "num_classes"):
        return int(feature.num_classes)
    raise UsageError(f"dataset {name!r}: its 'label' feature has no class count; add the "
                     "dataset to tunas_jax.data.sources.DENSE_NUM_CLASSES")


def estimate_mean_std(
    source: Sequence[dict[str, Any]], max_examples: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean/std in [0, 1] units from evenly spaced examples (deterministic)."""
    count = min(len(source), max_examples)
    indices = np.linspace(0, len(source) - 1, count).astype(int)
    total = total_sq = 0.0
    pixels = 0
    for index in indices:
        image = np.asarray(source[int(index)]["image"], dtype=np.float64) / 255.0
        flat = image.reshape(-1, image.shape[-1])
        total = total + flat.sum(axis=0)
        total_sq = total_sq + np.square(flat).sum(axis=0)
        pixels += flat.shape[0]
    mean = total / pixels
    std = np.sqrt(np.maximum(total_sq / pixels - np.square(mean), 1e-12))
    return mean.astype(np.float32), std.astype(np.float32)


def mean_std(name: str, train_source: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Normalisation statistics: the table for known datasets, else estimated."""
    stats = KNOWN_STATS.get(resolve_name(name))
    if stats is None:
        return estimate_mean_std(train_source)
    return np.asarray(stats[0], np.float32), np.asarray(stats[1], np.float32)


# Splits with fixed-shape images up to this size are read into memory once:
# decoding TFDS records costs about as much as the augmentation itself.
IN_MEMORY_MAX_BYTES = 256 * 2**20


class InMemorySource(Sequence):
    """A split's 'image' and 'label' held as two numpy arrays (random access, no decoding)."""

    def __init__(self, source: Any):
        self.dataset_info = source.dataset_info
        examples = [source[index] for index in range(len(source))]
        self.images = np.stack([np.asarray(example["image"]) for example in examples])
        # [N] class ids, or [N, H, W] label maps (segmentation).
        self.labels = np.asarray([example["label"] for example in examples], np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        return {"image": self.images[index], "label": self.labels[index]}


def maybe_in_memory(source: Any, max_bytes: int = IN_MEMORY_MAX_BYTES) -> Any:
    """`InMemorySource(source)` for small fixed-shape image splits, else `source` itself."""
    shape = tuple(source.dataset_info.features["image"].shape)
    if None in shape or len(source) * int(np.prod(shape)) > max_bytes:
        return source
    return InMemorySource(source)
