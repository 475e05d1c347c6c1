"""grain input pipelines for search, training and evaluation (numpy only, no TF).

Batches are dicts {'image': float32 [B, H, W, C], 'label': int32 [B]}, or for a
dataset whose label is a map (segmentation) 'label': int32 [B, H, W]
(evaluation adds 'mask': bool [B]). Images are normalised with the dataset's
per-channel mean/std after augmentation; a label map gets the same geometric
augmentation as its image (resize: nearest; pad_crop: the same offset, zero
padding; flips), and 'inception' crops are refused for it.

Checkpointing. `make_iterator` returns a grain `DatasetIterator`:
`state = it.get_state()` is a small JSON-serialisable dict (the index of the
next batch in the seeded, shuffled, repeated stream) and `it.set_state(state)`
on an iterator built with the SAME source, batch_size, seed and preprocessing
resumes exactly: the following batches are bit-identical, augmentation
included, because each example's RNG is derived from (seed, batch index, row).
`SearchData.get_state()/set_state()` do this for the train and valid iterators
together. Save the state at the step you checkpoint the weights.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from typing import Any

import grain
import ml_collections
import numpy as np

from tasks.segmentation import resize_nearest
from tunas_jax.data import image_ops, sources
from tunas_jax.errors import UsageError

AUGMENT_MODES = ("pad_crop", "inception", "none")
# Images whose longer side exceeds this get 'inception' preprocessing under 'auto'.
_SMALL_IMAGE_MAX_SIDE = 64
# Read-ahead in batches per worker thread (grain's default of 500 elements
# would hold gigabytes of ImageNet batches).
_PREFETCH_BATCHES_PER_THREAD = 2


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """Per-example preprocessing; `train_example` augments, `eval_example` does not.

    augment: 'pad_crop' (resize to image_size if needed, zero-pad image_size/8
      and crop back at a random offset: CIFAR-style), 'inception' (train: random
      resized crop; eval: central 87.5% crop; both then resized to image_size)
      or 'none' (resize only).
    mean, std: per-channel, in [0, 1] units.
    """

    image_size: int
    mean: np.ndarray
    std: np.ndarray
    augment: str = "pad_crop"
    random_flip: bool = False
    # Label of the pixels 'pad_crop' pads a label map with: the background class where
    # a black border is background (seg_digits), else the ignore label (ADE20K).
    label_pad: int = 0

    def _to_output(self, image: np.ndarray, label: Any) -> dict[str, np.ndarray]:
        image = image_ops.normalize(image, self.mean, self.std)
        return {"image": np.ascontiguousarray(image, np.float32),
                "label": np.asarray(label, np.int32)}

    def _resized(self, image: np.ndarray, label: Any) -> tuple[np.ndarray, Any]:
        size = self.image_size
        if image.shape[:2] != (size, size):
            image = image_ops.resize(image, size, size)
            if _is_map(label):
                label = resize_nearest(label[None], size, size)[0]
        return image, label

    def _check_map(self, label: Any) -> None:
        if _is_map(label) and self.augment == "inception":
            raise UsageError("config.dataset.augment='inception' crops and rescales the image;"
                             " for a dataset with label maps use 'pad_crop' or 'none'")

    def train_example(self, example: dict[str, Any], rng: np.random.Generator) -> dict:
        image, label = _as_hwc(example["image"]), np.asarray(example["label"])
        self._check_map(label)
        size = self.image_size
        if self.augment == "inception":
            box = image_ops.random_resized_crop_box(rng, *image.shape[:2])
            image = image_ops.resize(image_ops.crop(image, box), size, size)
        else:
            image, label = self._resized(image, label)
            if self.augment == "pad_crop":
                pad = max(1, size // 8)
                if _is_map(label):
                    image, label = image_ops.pad_and_random_crop(image, rng, pad, label,
                                                                 self.label_pad)
                else:
                    image = image_ops.pad_and_random_crop(image, rng, pad)
        if self.random_flip and rng.random() < 0.5:
            image = image[:, ::-1]
            label = label[:, ::-1] if _is_map(label) else label
        return self._to_output(image, label)

    def eval_example(self, example: dict[str, Any]) -> dict:
        image, label = _as_hwc(example["image"]), np.asarray(example["label"])
        self._check_map(label)
        if self.augment == "inception":
            box = image_ops.center_crop_box(*image.shape[:2], image_ops.EVAL_CROP_FRACTION)
            image = image_ops.crop(image, box)
        image, label = self._resized(image, label)
        return self._to_output(image, label)


def _is_map(label: Any) -> bool:
    """A dense label map (segmentation) rather than one class id."""
    return np.ndim(label) >= 2


def _as_hwc(image: Any) -> np.ndarray:
    image = np.asarray(image)
    return image[:, :, None] if image.ndim == 2 else image


def _read_options(num_threads: int) -> grain.ReadOptions:
    return grain.ReadOptions(
        num_threads=num_threads,
        prefetch_buffer_size=max(1, num_threads) * _PREFETCH_BATCHES_PER_THREAD,
    )


def make_iterator(
    source: Sequence[dict[str, Any]],
    batch_size: int,
    seed: int,
    train: bool,
    *,
    preprocess: Preprocess,
    num_threads: int = 4,
    shard: tuple[int, int] = (0, 1),
) -> grain.DatasetIterator:
    """Endless shuffled batches from `source`; checkpointable (see module docstring).

    Every epoch is reshuffled (seeded); the last partial batch of the endless
    stream never occurs, so all batches have exactly `batch_size` examples.

    Args:
      source: random-access examples with 'image' (uint8 [H, W, C]) and 'label'.
      batch_size: examples per (global) batch.
      seed: shuffle and augmentation seed.
      train: True = augment (`preprocess.train_example`); False = deterministic
        `eval_example` (the controller's reward batches).
      preprocess: the per-example preprocessing.
      num_threads: grain worker threads decoding/augmenting examples.
      shard: (index, count): yield only rows index*B/count.. (index+1)*B/count of each
        batch (one `jax.distributed` process's rows). Every shard walks the same
        shuffled stream of example indices but reads and preprocesses only its own
        rows; each example's augmentation RNG derives from (seed, batch, row), so
        the shards of a batch concatenate to the unsharded batch, bit for bit.
    """
    if batch_size <= 0:
        raise UsageError(f"batch_size must be positive, got {batch_size}")
    if len(source) == 0:
        raise UsageError("the dataset split is empty: check config.dataset.*_split")
    index, count = shard
    if not 0 <= index < count or batch_size % count:
        raise UsageError(f"batch size {batch_size} does not split into {count} equal "
                         f"process shards (shard {index}); use a multiple of {count}")
    rows = range(index * batch_size // count, (index + 1) * batch_size // count)
    # Shuffled indices, batched, first; then one grain element reads and preprocesses
    # its rows of a batch: one RNG and one thread hand-off per batch instead of per
    # example (1.5x faster on the digits).
    dataset = (
        grain.MapDataset.range(len(source))
        .shuffle(seed=seed)
        .repeat()
        .batch(batch_size, drop_remainder=True, batch_fn=list)
    )
    if train:
        # A seed distinct from the shuffle's; grain derives each batch's RNG from it
        # and the batch's index in the stream, so resume is exact.
        def augment(indices: list, rng: np.random.Generator) -> dict[str, np.ndarray]:
            base = int(rng.integers(2**63))
            return _stack([preprocess.train_example(
                source[int(indices[row])], np.random.default_rng((base, row))) for row in rows])

        dataset = dataset.random_map(augment, seed=seed + 1)
    else:
        dataset = dataset.map(lambda indices: _stack(
            [preprocess.eval_example(source[int(indices[row])]) for row in rows]))
    return iter(dataset.to_iter_dataset(_read_options(num_threads)))


def _stack(examples: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {key: np.stack([example[key] for example in examples]) for key in examples[0]}


class EvalDataset:
    """One pass over every example of a split, in order, as fixed-size batches.

    The last batch is padded with zero examples up to `batch_size` (so a jitted
    eval step sees one shape); batch['mask'] is False on padding. Iterate it
    once per evaluation; `len()` is the number of batches.
    """

    def __init__(
        self,
        source: Sequence[dict[str, Any]],
        batch_size: int,
        preprocess: Preprocess,
        num_threads: int = 4,
    ):
        if batch_size <= 0:
            raise UsageError(f"eval batch_size must be positive, got {batch_size}")
        if len(source) == 0:
            raise UsageError("the eval split is empty: check config.dataset.eval_split")
        self.num_examples = len(source)
        self.batch_size = batch_size
        self._source = source
        self._preprocess = preprocess
        self._num_threads = num_threads
        first = preprocess.eval_example(source[0])
        self._padding = {
            "image": np.zeros_like(first["image"]),
            "label": np.zeros_like(first["label"]),
            "mask": np.bool_(False),
        }

    def __len__(self) -> int:
        return math.ceil(self.num_examples / self.batch_size)

    def _example(self, index: int) -> dict[str, np.ndarray]:
        if index >= self.num_examples:
            return self._padding
        example = self._preprocess.eval_example(self._source[index])
        example["mask"] = np.bool_(True)
        return example

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        dataset = (
            grain.MapDataset.range(len(self) * self.batch_size)
            .batch(self.batch_size, batch_fn=list)
            .map(lambda indices: _stack([self._example(int(i)) for i in indices]))
        )
        return iter(dataset.to_iter_dataset(_read_options(self._num_threads)))


def make_eval_iterator(
    source: Sequence[dict[str, Any]],
    batch_size: int,
    *,
    preprocess: Preprocess,
    num_threads: int = 4,
) -> EvalDataset:
    """All examples once, unshuffled, last batch padded (batch['mask'] marks real ones)."""
    return EvalDataset(source, batch_size, preprocess, num_threads)


def make_preprocess(
    dataset_config: ml_collections.ConfigDict, train_source: Sequence[dict[str, Any]]
) -> Preprocess:
    """Resolves config.dataset's image_size/augment/random_flip ('auto') into a Preprocess."""
    name = dataset_config.name
    image_size = int(dataset_config.get("image_size", 32))
    if image_size <= 0:
        raise UsageError(f"config.dataset.image_size must be positive, got {image_size}")
    augment = dataset_config.get("augment", "auto")
    dense = sources.resolve_name(name) in sources.DENSE_NUM_CLASSES
    if augment == "auto":
        shape = tuple(train_source.dataset_info.features["image"].shape)
        large = None in shape[:2] or max(shape[:2]) > _SMALL_IMAGE_MAX_SIDE
        # A label map cannot follow inception's crop-and-rescale (`Preprocess`).
        augment = "inception" if large and not dense else "pad_crop"
    if augment not in AUGMENT_MODES:
        raise UsageError(
            f"config.dataset.augment={augment!r}: use 'auto' or one of {AUGMENT_MODES}"
        )
    flip = dataset_config.get("random_flip", "auto")
    if flip not in ("auto", "yes", "no"):
        raise UsageError(f"config.dataset.random_flip={flip!r}: use 'auto', 'yes' or 'no'")
    # Mirrored digits are not digits; natural images are flip-invariant.
    random_flip = flip == "yes" or (flip == "auto" and not sources.is_digits(name))
    mean, std = sources.mean_std(name, train_source)
    label_pad = sources.LABEL_PAD.get(sources.resolve_name(name), 0)
    return Preprocess(image_size, mean, std, augment, random_flip, label_pad)


@dataclasses.dataclass
class SearchData:
    """The search's two endless iterators and what the model needs to know."""

    train: grain.DatasetIterator  # Augmented batches for the shared weights.
    valid: grain.DatasetIterator  # Held-out, unaugmented batches for the reward.
    num_classes: int
    image_shape: tuple[int, int, int]  # (H, W, C) of the batches.
    num_train_examples: int
    num_valid_examples: int
    preprocess: Preprocess

    def get_state(self) -> dict[str, Any]:
        """JSON-serialisable state of both iterators, for the checkpoint."""
        return {"train": self.train.get_state(), "valid": self.valid.get_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        """Resumes both iterators from `get_state()` (same config and seed)."""
        self.train.set_state(state["train"])
        self.valid.set_state(state["valid"])


def create_search_data(
    dataset_config: ml_collections.ConfigDict,
    *,
    batch_size: int,
    valid_batch_size: int | None = None,
    seed: int = 0,
    num_threads: int = 4,
    shard: tuple[int, int] = (0, 1),
) -> SearchData:
    """Train/valid iterators for the search from the `config.dataset` section.

    valid_batch_size defaults to 4 * batch_size (TuNAS's reward batches are 4x
    larger than the weight-training batches). Both are global batch sizes: with
    `shard` (process index, process count) the iterators yield this process's rows
    of each global batch (`make_iterator`).
    """
    train_source, valid_source = sources.make_search_splits(dataset_config)
    if dataset_config.get("in_memory", True):
        train_source = sources.maybe_in_memory(train_source)
        valid_source = sources.maybe_in_memory(valid_source)
    preprocess = make_preprocess(dataset_config, train_source)
    valid_batch_size = valid_batch_size or 4 * batch_size
    train = make_iterator(
        train_source, batch_size, seed, True, preprocess=preprocess, num_threads=num_threads,
        shard=shard,
    )
    # A different seed so reward batches are not in lockstep with the weights'.
    valid = make_iterator(
        valid_source,
        valid_batch_size,
        seed + 1000,
        False,
        preprocess=preprocess,
        num_threads=num_threads,
        shard=shard,
    )
    channels = int(train_source.dataset_info.features["image"].shape[-1])
    return SearchData(
        train=train,
        valid=valid,
        num_classes=sources.num_classes(train_source),
        image_shape=(preprocess.image_size, preprocess.image_size, channels),
        num_train_examples=len(train_source),
        num_valid_examples=len(valid_source),
        preprocess=preprocess,
    )


def create_eval_data(
    dataset_config: ml_collections.ConfigDict,
    *,
    batch_size: int,
    split: str | None = None,
    num_threads: int = 4,
) -> EvalDataset:
    """One-pass eval batches of `split` (default config.dataset.eval_split).

    Normalisation statistics come from the training split so train and eval
    inputs match.
    """
    field = "eval_split" if split is None else "split"
    split = split or dataset_config.get("eval_split", "test")
    train_split = dataset_config.get("train_split", "train[:90%]")
    train_source = sources.load_source(dataset_config, train_split, "train_split")
    preprocess = make_preprocess(dataset_config, train_source)
    eval_source = sources.load_source(dataset_config, split, field)
    return make_eval_iterator(
        eval_source, batch_size, preprocess=preprocess, num_threads=num_threads
    )
