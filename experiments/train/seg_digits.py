"""Standalone segmentation training on the built-in `seg_digits` at 32 px (CPU minutes):
a found architecture (or any micro architecture) with the DeepLabv3+ head; reports mIoU
and pixel accuracy.

Run:
    tunas-jax train --config experiments/train/seg_digits.py \
        --config.architecture=W/architecture.json --workdir /tmp/train_seg_digits
(W: a `tunas-jax search --config experiments/search/autoseg_digits.py` workdir.)
"""

import ml_collections

from experiments.search import autoseg_digits
from experiments.train import micro_digits


def get_config() -> ml_collections.ConfigDict:
    config = micro_digits.get_config()
    config.task = "segmentation"
    config.dataset.name = "seg_digits"
    # The search's head and output stage: what was costed is what is trained.
    config.segmentation = autoseg_digits.get_config().segmentation
    config.num_epochs = 30
    config.label_smoothing = 0.0
    config.dropout_rate = 0.0  # the head has no dropout
    # 2000 training images: 16 steps per epoch.
    config.log_every_steps = 16
    return config
