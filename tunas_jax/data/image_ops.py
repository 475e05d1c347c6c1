"""Per-example image operations in plain numpy (no TensorFlow).

The input pipeline runs these inside grain worker threads on one example at a
time: uint8 [H, W, C] in, uint8 or float32 [H, W, C] out. Randomness always
comes from an explicit `np.random.Generator` so grain can derive it from the
pipeline seed and the element index, which keeps checkpoint-resume exact.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# Fraction of the shorter side kept by the eval center crop (the Inception /
# MobileNet convention: resize to size / 0.875, then crop size).
EVAL_CROP_FRACTION = 0.875


def _resize_weights(in_size: int, out_size: int) -> np.ndarray:
    """[out_size, in_size] triangle-filter weights, widened when shrinking.

    Widening the kernel by the shrink factor makes downscaling antialiased (an
    area-like average), matching PIL's BILINEAR; upscaling is plain bilinear
    with half-pixel centres. Rows are normalised, which clamps at the borders.
    """
    scale = out_size / in_size
    kernel_width = max(1.0, 1.0 / scale)
    centres = (np.arange(out_size) + 0.5) / scale - 0.5
    dist = np.abs(np.arange(in_size)[None, :] - centres[:, None]) / kernel_width
    weights = np.maximum(0.0, 1.0 - dist)
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear (antialiased when shrinking) resize of [H, W, C] to [height, width, C].

    Returns float32 in the input's value range (not rounded), so callers that
    normalise next lose no precision.
    """
    in_h, in_w = image.shape[:2]
    image = image.astype(np.float32, copy=False)
    if (in_h, in_w) == (height, width):
        return image
    rows = _resize_weights(in_h, height)
    cols = _resize_weights(in_w, width)
    out = np.tensordot(rows, image, axes=(1, 0))  # [height, in_w, C]
    return np.einsum("pw,hwc->hpc", cols, out)


def center_crop_box(height: int, width: int, fraction: float) -> tuple[int, int, int, int]:
    """(top, left, crop_h, crop_w) of the central square covering `fraction` of the short side."""
    side = max(1, round(min(height, width) * fraction))
    return (height - side) // 2, (width - side) // 2, side, side


def random_resized_crop_box(
    rng: np.random.Generator,
    height: int,
    width: int,
    area_range: tuple[float, float] = (0.08, 1.0),
    aspect_range: tuple[float, float] = (3 / 4, 4 / 3),
    attempts: int = 10,
) -> tuple[int, int, int, int]:
    """Inception-style crop box: random area fraction and aspect ratio.

    Falls back to the full-image center crop after `attempts` misses, as the
    reference implementations do.
    """
    area = height * width
    log_lo, log_hi = math.log(aspect_range[0]), math.log(aspect_range[1])
    for _ in range(attempts):
        target_area = area * rng.uniform(*area_range)
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        crop_w = round(math.sqrt(target_area * aspect))
        crop_h = round(math.sqrt(target_area / aspect))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top = int(rng.integers(0, height - crop_h + 1))
            left = int(rng.integers(0, width - crop_w + 1))
            return top, left, crop_h, crop_w
    return center_crop_box(height, width, 1.0)


def pad_and_random_crop(image: np.ndarray, rng: np.random.Generator, pad: int,
                        label: np.ndarray | None = None, label_pad: int = 0) -> Any:
    """Zero-pad by `pad` pixels per side, then crop back to the input size at a random offset.

    With a dense `label` map [H, W] (segmentation), the same pad and crop are applied to it
    (padded with `label_pad`: the background class, or the ignore label) and (image,
    label) is returned."""
    if pad <= 0:
        return image if label is None else (image, label)
    height, width = image.shape[:2]
    top = int(rng.integers(0, 2 * pad + 1))
    left = int(rng.integers(0, 2 * pad + 1))

    def cut(x: np.ndarray, value: int = 0) -> np.ndarray:
        padded = np.pad(x, ((pad, pad), (pad, pad)) + ((0, 0),) * (x.ndim - 2),
                        constant_values=value)
        return padded[top : top + height, left : left + width]

    return cut(image) if label is None else (cut(image), cut(label, label_pad))


def crop(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    top, left, crop_h, crop_w = box
    return image[top : top + crop_h, left : left + crop_w]


def normalize(image: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """uint8-range image -> float32 (x / 255 - mean) / std, with mean/std in [0, 1] units."""
    scaled = image.astype(np.float32, copy=False) * np.float32(1.0 / 255.0)
    return (scaled - mean) / std
