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
    config.label_smoothing = 0.0
    config.dropout_rate = 0.0  # the head has no dropout
    # Optimizer steps are what this task needs (EXPERIMENTS.md §7b): after learning
    # stroke vs background a model sits at "background everywhere" until it can tell
    # the digits apart, one class after another; batches of 128 (15 steps an epoch)
    # never left that plateau in a few minutes, batches of 32 (62 an epoch) do.
    # Adam at 4e-3 per 32, cosine after 1 warmup epoch.
    config.batch_size = 32
    config.lr_batch_base = 32
    config.learning_rate = 4e-3
    config.warmup_epochs = 1.0
    config.num_epochs = 20
    config.eval_every_epochs = 5.0
    # 2000 training images: 62 steps per epoch; logged twice an epoch.
    config.log_every_steps = 31
    return config
