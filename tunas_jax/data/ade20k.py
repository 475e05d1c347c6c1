"""ADE20K (TFDS `scene_parse150`) with the 32 classes of the released Edge TPU
segmentation models.

The released Autoseg-EdgeTPU and DeepLabv3+/MobileNetEdgeTPUv2 models
(tensorflow/models `official/projects/edgetpu/vision`, their configs'
`num_classes=32` and the task's label parser) train and evaluate on ADE20K
with 32 output classes, derived from the 150 by class id alone: ADE20K
numbers its classes 1..150 by frequency (0 is "other"), a label above 31
becomes 0, and 0 becomes the ignore label. So the targets are the 31 most
frequent classes, ids kept (1..31), every other pixel is ignored, and class
0 is an output the labels never ask for. `to_32_classes` is that mapping.

Reading: `tfds.data_source('scene_parse150', data_dir=...)` (prepared in
ArrayRecord format, never downloaded here), images decoded without
TensorFlow. Its `annotation` is an RGB PNG; the class id is the first (red)
channel. TFDS's `scene_parse150` 1.0.0 builds that PNG from the Places
Challenge 2017 instance annotations, whose red channel numbers the instance
challenge's categories rather than the 150 scene-parsing classes: a data_dir
prepared with the scene-parsing annotations (ADEChallengeData2016's
single-channel PNGs, read as three equal channels) gives the released
models' labels; TFDS's own build does not.

Images keep their size; the pipeline resizes image (bilinear) and label
(nearest) to `config.dataset.image_size` and normalizes with mean = std =
0.5, as the released models' parser ((x / 255 - 0.5) / 0.5).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

ADE20K_NAME = "scene_parse150"
ALIASES = ("ade20k", ADE20K_NAME)
NUM_CLASSES = 32  # ids 0..31; 0 ("other") is never a target
IGNORE_LABEL = 255
MEAN_STD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def to_32_classes(annotation: np.ndarray, ignore_label: int = IGNORE_LABEL) -> np.ndarray:
    """uint8 [H, W] labels of an ADE20K annotation ([H, W] or [H, W, C], class id in
    channel 0): ids 1..31 kept, 0 and ids above 31 -> `ignore_label`."""
    ids = np.asarray(annotation)
    if ids.ndim == 3:
        ids = ids[..., 0]
    if ids.ndim != 2:
        raise ValueError(f"ADE20K annotation of shape {np.shape(annotation)}: expected "
                         "[H, W] or [H, W, C]")
    kept = (ids >= 1) & (ids < NUM_CLASSES)
    return np.where(kept, ids, ignore_label).astype(np.uint8)


class LabelledSource(Sequence):
    """A `scene_parse150` data source read as the pipeline's {'image', 'label'} examples,
    'label' the 32-class map of 'annotation' (random access, mapped per example)."""

    def __init__(self, source: Any):
        self.source = source
        self.dataset_info = source.dataset_info

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        example = self.source[index]
        return {"image": example["image"], "label": to_32_classes(example["annotation"])}
