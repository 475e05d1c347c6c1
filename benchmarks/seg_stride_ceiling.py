"""How well can logits at stride s segment seg_digits at all? A reference decoder's mIoU.

A segmentation head's logits sit at some stride of the input (a searched BiFPN at
its minimum level, the released Autoseg models at 8, the released DeepLabv3+ at 16)
and the output stage brings them back to full resolution. This scores the best such
logits one can write down without a model: each stride-s cell's class frequencies
(the labels one-hot, average-pooled s x s), decoded like the model's (exact: bilinear
to full resolution, then argmax; approximate: argmax, then nearest-neighbour). It is
not a strict upper bound (a model may put sharper logits in a cell than the cell's
averages), but it says how much of a low mIoU is the stride's and not the training's.

    python benchmarks/seg_stride_ceiling.py [--strides 2 4 8 16] [--split test]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from experiments.train import seg_digits as seg_digits_config
from tasks.segmentation import confusion_matrix, iou_from_confusion, predict
from tunas_jax.data import sources
from tunas_jax.data.seg_digits import NUM_CLASSES


def cell_frequencies(labels: np.ndarray, stride_px: int) -> np.ndarray:
    """[N, H/s, W/s, classes] fraction of each class in each s x s cell."""
    n, h, w = labels.shape
    one_hot = np.eye(NUM_CLASSES, dtype=np.float32)[labels]
    cells = one_hot.reshape(n, h // stride_px, stride_px, w // stride_px, stride_px,
                            NUM_CLASSES)
    return cells.mean(axis=(2, 4))


def ceiling_miou(labels: np.ndarray, stride_px: int, stage: str) -> float:
    h, w = labels.shape[1:]
    predictions = predict(jnp.asarray(cell_frequencies(labels, stride_px)), h, w, stage)
    confusion = confusion_matrix(jnp.asarray(labels, jnp.int32), predictions,
                                 jnp.ones(labels.shape, bool), NUM_CLASSES)
    return float(iou_from_confusion(confusion)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strides", type=int, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    jax.config.update("jax_platforms", "cpu")
    dataset = seg_digits_config.get_config().dataset
    source = sources.load_source(dataset, args.split)
    labels = np.stack([source[i]["label"] for i in range(len(source))]).astype(np.int64)
    print(f"seg_digits {args.split}: {len(labels)} images, {labels.shape[1]} px")
    print("| logits stride | exact | approximate |")
    print("|---|---|---|")
    for stride in args.strides:
        print(f"| {stride} | {ceiling_miou(labels, stride, 'exact'):.3f} | "
              f"{ceiling_miou(labels, stride, 'approximate'):.3f} |")


if __name__ == "__main__":
    main()
