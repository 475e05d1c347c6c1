"""Semantic segmentation: a DeepLabv3+ (`tasks.deeplab`) or BiFPN (`tasks.bifpn`) head,
per-pixel cross-entropy with an ignore label, mean IoU and pixel accuracy, and the
output stage.

Batches are `{'image': float [N, H, W, C], 'label': int [N, H, W]}`: one class per
pixel, `ignore_label` where a pixel has none (it adds nothing to the loss or the
metrics). The head's output is the logits at the head's resolution (DeepLab: the
low-level endpoint's; BiFPN: its minimum level's) [N, h, w, classes]; the loss
resizes them bilinearly to the label's resolution.

Output stage (what a deployed model computes after the logits; `output_stage`):
- `exact`: bilinear resize of the logits to the input resolution, then argmax;
- `approximate`: argmax at the logits' resolution, then nearest-neighbour upsampling
  of the class map: the resize moves 1 channel instead of `classes` (the Autoseg
  paper's ~1.5x end-to-end speed-up at 512 px).
Both use `first_argmax` (ties go to the lowest class, written out rather than left
to a backend's argmax) and both are in the network description (`head_layers`), so
the cost models price the stage that is deployed. The reward's quality, and the
evaluation, use the configured stage's predictions.

Evaluation adds up one confusion matrix over the whole pass (`eval_sums`), so mIoU
is that of the dataset, not a mean of per-batch mIoUs. It also reports each present
class's IoU (`iou_class_<k>`). The reward's quality is the
validation batch's mIoU (over the classes present in the batch's labels or
predictions).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from search_spaces import Layer, SpecError
from tasks import bifpn, deeplab
from tasks.base import Batch, Task, register_task

OUTPUT_STAGES = ("exact", "approximate")
HEADS = ("deeplab", "bifpn")
# The head settings a search space may search (`SearchSpace.head_task`).
SEARCHABLE = ("bifpn_num_repeats", "bifpn_min_level")


def first_argmax(logits: jax.Array) -> jax.Array:
    """Argmax over the last axis; on ties the lowest index (int32)."""
    classes = logits.shape[-1]
    is_max = logits == jnp.max(logits, axis=-1, keepdims=True)
    return jnp.min(jnp.where(is_max, jnp.arange(classes, dtype=jnp.int32), classes), axis=-1)


def resize_nearest(labels: Any, height: int, width: int) -> Any:
    """Nearest-neighbour resize of [N, h, w] maps (jax or numpy), half-pixel centers
    (source pixel of output pixel i: floor((i + 0.5) * h / height))."""
    h, w = labels.shape[1:3]
    rows = np.minimum(((np.arange(height) + 0.5) * h / height).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * w / width).astype(np.int64), w - 1)
    return labels[:, rows][:, :, cols]


def predict(logits: jax.Array, height: int, width: int, stage: str = "exact") -> jax.Array:
    """Class map [N, height, width] (int32) of logits [N, h, w, classes] by `stage`."""
    if stage == "exact":
        return first_argmax(deeplab.resize_bilinear(logits, height, width))
    if stage == "approximate":
        return resize_nearest(first_argmax(logits), height, width)
    raise SpecError(f"output_stage: {stage!r}; use one of {OUTPUT_STAGES}")


def confusion_matrix(labels: jax.Array, predictions: jax.Array, valid: jax.Array,
                     num_classes: int) -> jax.Array:
    """[classes, classes] pixel counts (row: label, column: prediction) where `valid`."""
    labels = jnp.clip(labels, 0, num_classes - 1)
    index = (labels * num_classes + predictions).reshape(-1)
    counts = jnp.bincount(index, weights=valid.reshape(-1).astype(jnp.int32),
                          length=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def iou_from_confusion(confusion: Any, xp: Any = jnp) -> tuple[Any, Any]:
    """(mean IoU over the classes that occur in labels or predictions, pixel accuracy)."""
    tp = xp.diagonal(confusion)
    union = confusion.sum(0) + confusion.sum(1) - tp
    present = union > 0
    iou = xp.where(present, tp / xp.maximum(union, 1), 0.0)
    miou = iou.sum() / xp.maximum(present.sum(), 1)
    accuracy = tp.sum() / xp.maximum(confusion.sum(), 1)
    return miou, accuracy


def per_class_iou(confusion: np.ndarray) -> dict[str, float]:
    """{'iou_class_<k>': IoU} of each class k in the labels or predictions (an absent
    class has no IoU, and none is made up for it)."""
    tp = np.diagonal(confusion)
    union = confusion.sum(0) + confusion.sum(1) - tp
    return {f"iou_class_{k}": float(tp[k] / union[k]) for k in np.flatnonzero(union > 0)}


class Segmentation(Task):
    """Settings: `ignore_label` (a label outside 0..num_classes-1 marking unlabelled
    pixels), `output_stage` ('exact' | 'approximate', module docstring), and the
    DeepLabv3+ head's (`tasks.deeplab`): `aspp_channels` (every ASPP branch and the
    projection), `low_level_channels` (the low-level 1x1 projection),
    `decoder_channels` and `num_decoder_convs` (separable 3x3 convs after the fusion),
    `atrous_rates` (one separable ASPP branch per rate), `aspp_endpoint` and
    `low_level_endpoint` (backbone endpoint names: `stride_N` or `features`);
    `head` ('deeplab' | 'bifpn') picks the head; the BiFPN's (`tasks.bifpn`):
    `bifpn_min_level`, `bifpn_max_level` (level L = stride 2^L), `bifpn_num_filters`,
    `bifpn_num_repeats`. A space may search `bifpn_num_repeats` and `bifpn_min_level`
    (`with_head`, `with_head_choices`)."""

    name = "segmentation"
    primary_metric = "miou"

    def __init__(self, num_classes: int, ignore_label: int = 255, output_stage: str = "exact",
                 aspp_channels: int = 32, low_level_channels: int = 16,
                 decoder_channels: int = 32, num_decoder_convs: int = 1,
                 atrous_rates: Sequence[int] = (1, 2, 3), aspp_endpoint: str = "features",
                 low_level_endpoint: str = "stride_4", head: str = "deeplab",
                 bifpn_min_level: int = 3, bifpn_max_level: int = 8,
                 bifpn_num_filters: int = 96, bifpn_num_repeats: int = 4) -> None:
        if int(num_classes) < 2:
            raise SpecError(f"num_classes: {num_classes}; segmentation needs >= 2")
        if output_stage not in OUTPUT_STAGES:
            raise SpecError(f"output_stage: {output_stage!r}; use one of {OUTPUT_STAGES}")
        if 0 <= int(ignore_label) < int(num_classes):
            raise SpecError(f"ignore_label: {ignore_label} is one of the {num_classes} "
                            "classes; use a value outside 0..num_classes-1 (e.g. 255)")
        if head not in HEADS:
            raise SpecError(f"head: {head!r}; use one of {HEADS}")
        self.num_classes = int(num_classes)
        self.ignore_label = int(ignore_label)
        self.output_stage = output_stage
        self.head_name = head
        self.deeplab = deeplab.DeepLabConfig(
            self.num_classes, int(aspp_channels), int(low_level_channels),
            int(decoder_channels), int(num_decoder_convs), tuple(atrous_rates),
            aspp_endpoint, low_level_endpoint)
        self.bifpn = bifpn.BiFPNConfig(self.num_classes, int(bifpn_min_level),
                                       int(bifpn_max_level), int(bifpn_num_filters),
                                       int(bifpn_num_repeats))
        # The supernet's head choices (with_head_choices); None: this task's settings.
        self.choices: bifpn.Choices | None = None
        self.choice_order: tuple[str, ...] = ()

    # ---- searched head settings -------------------------------------------------------
    def _check_searchable(self, names: Any) -> None:
        bad = sorted(set(names) - set(SEARCHABLE))
        if bad or (names and self.head_name != "bifpn"):
            raise SpecError(f"segmentation head settings {sorted(names)}: only {SEARCHABLE} "
                            "can be searched, and only with head='bifpn' (set "
                            "segmentation.head='bifpn')")

    def with_head(self, settings: Mapping[str, Any]) -> Segmentation:
        if not settings:
            return self
        self._check_searchable(settings)
        return _rebuild(self, dict(settings))

    def with_head_choices(self, choices: Mapping[str, tuple[Any, ...]]) -> Segmentation:
        self._check_searchable(choices)
        task = _rebuild(self, {})
        task.choices = bifpn.Choices(
            tuple(choices.get("bifpn_num_repeats", (self.bifpn.num_repeats,))),
            tuple(choices.get("bifpn_min_level", (self.bifpn.min_level,))))
        task.choice_order = tuple(choices)
        return task

    # ---- head -----------------------------------------------------------------------
    def head_layers(self, endpoints: Mapping[str, tuple[str, tuple[int, int, int]]]
                    ) -> list[Layer]:
        if "input" not in endpoints:
            raise SpecError("segmentation's head needs the input's size: describe the "
                            "network with tasks.describe (it passes the 'input' endpoint)")
        if self.head_name == "bifpn":
            layers = bifpn.head_layers(self.bifpn, endpoints)
        else:
            layers = deeplab.head_layers(self.deeplab, endpoints)
        height, width, _ = endpoints["input"][1]
        logits = layers[-1]
        h, w, k = logits.output_shape
        if self.output_stage == "exact":
            layers += [
                Layer(name="output.resize", op="resize", inputs=("logits",),
                      input_shape=(h, w, k), output_shape=(height, width, k), mode="bilinear"),
                Layer(name="output.argmax", op="argmax", inputs=("output.resize",),
                      input_shape=(height, width, k), output_shape=(height, width, 1))]
        else:
            layers += [
                Layer(name="output.argmax", op="argmax", inputs=("logits",),
                      input_shape=(h, w, k), output_shape=(h, w, 1)),
                Layer(name="output.resize", op="resize", inputs=("output.argmax",),
                      input_shape=(h, w, 1), output_shape=(height, width, 1),
                      mode="nearest")]
        return layers

    def init_head(self, key: jax.Array, endpoint_widths: Mapping[str, int]) -> Any:
        if self.head_name == "bifpn":
            return bifpn.init_params(self.bifpn, key, endpoint_widths, self.choices)
        return deeplab.init_params(self.deeplab, key, endpoint_widths)

    def apply_head(self, params: Any, endpoints: Mapping[str, jax.Array], *, train: bool,
                   head_indices: jax.Array | None = None) -> jax.Array:
        del train  # batch statistics, as the supernet's backbone; no dropout
        if self.head_name != "bifpn":
            return deeplab.apply_params(self.deeplab, params, endpoints)
        picked = None
        if head_indices is not None:
            at = dict(zip(self.choice_order, range(len(self.choice_order)), strict=True))
            picked = jnp.stack([head_indices[at[k]] if k in at else jnp.int32(0)
                                for k in ("bifpn_num_repeats", "bifpn_min_level")])
        return bifpn.apply_params(self.bifpn, params, endpoints, self.choices, picked)

    def inherit_head(self, params: Any, endpoint_widths: Mapping[str, int]
                     ) -> dict[str, dict[str, Any]]:
        if self.head_name == "bifpn":
            return bifpn.inherit_params(self.bifpn, params, endpoint_widths)
        return deeplab.inherit_params(self.deeplab, params, endpoint_widths)

    def build_head(self, endpoint_widths: Mapping[str, int], *, rngs: nnx.Rngs,
                   dropout_rate: float = 0.0) -> nnx.Module:
        del dropout_rate  # neither head has dropout (tasks.deeplab, tasks.bifpn)
        if self.head_name == "bifpn":
            return bifpn.BiFPNHead(self.bifpn, endpoint_widths, rngs=rngs)
        return deeplab.DeepLabHead(self.deeplab, endpoint_widths, rngs=rngs)

    # ---- objective ------------------------------------------------------------------
    def _valid(self, batch: Batch) -> jax.Array:
        return batch["label"] != self.ignore_label

    def predict(self, output: jax.Array, height: int, width: int) -> jax.Array:
        """The configured output stage's class map [N, height, width]."""
        return predict(output, height, width, self.output_stage)

    def loss(self, output: jax.Array, batch: Batch, *, label_smoothing: float = 0.0
             ) -> tuple[jax.Array, dict[str, jax.Array]]:
        labels = batch["label"]
        logits = deeplab.resize_bilinear(output, *labels.shape[1:3])
        valid = self._valid(batch)
        targets = optax.smooth_labels(
            jax.nn.one_hot(jnp.where(valid, labels, 0), self.num_classes), label_smoothing)
        per_pixel = optax.softmax_cross_entropy(logits, targets)
        loss = jnp.sum(jnp.where(valid, per_pixel, 0.0)) / jnp.maximum(valid.sum(), 1)
        predictions = first_argmax(logits)
        accuracy = jnp.sum((predictions == labels) & valid) / jnp.maximum(valid.sum(), 1)
        return loss, {"pixel_accuracy": accuracy}

    def quality(self, output: jax.Array, batch: Batch) -> jax.Array:
        labels = batch["label"]
        predictions = self.predict(output, *labels.shape[1:3])
        confusion = confusion_matrix(labels, predictions, self._valid(batch), self.num_classes)
        return iou_from_confusion(confusion)[0]

    def eval_sums(self, output: jax.Array, batch: Batch, mask: jax.Array
                  ) -> dict[str, jax.Array]:
        labels = batch["label"]
        valid = self._valid(batch) & mask[:, None, None]
        predictions = self.predict(output, *labels.shape[1:3])
        logits = deeplab.resize_bilinear(output, *labels.shape[1:3])
        per_pixel = optax.softmax_cross_entropy_with_integer_labels(
            logits, jnp.where(valid, labels, 0))
        return {"confusion": confusion_matrix(labels, predictions, valid, self.num_classes),
                "loss_sum": jnp.where(valid, per_pixel, 0.0).sum(), "pixels": valid.sum(),
                "count": mask.sum()}

    def finish_eval(self, sums: Mapping[str, Any]) -> dict[str, float]:
        confusion = np.asarray(sums["confusion"], np.float64)
        miou, accuracy = iou_from_confusion(confusion, np)
        pixels = max(float(sums["pixels"]), 1.0)
        return {"miou": float(miou), "pixel_accuracy": float(accuracy),
                "loss": float(sums["loss_sum"]) / pixels, "num_examples": int(sums["count"]),
                **per_class_iou(confusion)}

    def output_values(self, image_size: int) -> int:
        return image_size * image_size  # the class map

    def to_json(self) -> dict[str, Any]:
        h, b = self.deeplab, self.bifpn
        out = {"name": self.name, "num_classes": self.num_classes,
               "ignore_label": self.ignore_label, "output_stage": self.output_stage,
               "aspp_channels": h.aspp_channels, "low_level_channels": h.low_level_channels,
               "decoder_channels": h.decoder_channels,
               "num_decoder_convs": h.num_decoder_convs, "atrous_rates": list(h.atrous_rates),
               "aspp_endpoint": h.aspp_endpoint, "low_level_endpoint": h.low_level_endpoint}
        if self.head_name != "deeplab":  # a DeepLab task's JSON stays as it was
            out.update(head=self.head_name, bifpn_min_level=b.min_level,
                       bifpn_max_level=b.max_level, bifpn_num_filters=b.num_filters,
                       bifpn_num_repeats=b.num_repeats)
        return out


def _rebuild(task: Segmentation, settings: dict[str, Any]) -> Segmentation:
    """A copy of `task` with some settings replaced."""
    data = {k: v for k, v in task.to_json().items() if k != "name"}
    data.update(head=task.head_name, **settings)
    return Segmentation(**data)


register_task("segmentation", Segmentation)
