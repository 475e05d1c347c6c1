"""Standalone training on the built-in digits at 32 px: a CPU run of minutes.

Run:
    tunas-jax train --config experiments/train/micro_digits.py \
        --config.architecture=ARCH.json --workdir /tmp/train_micro_digits
(ARCH.json: e.g. a micro-space architecture, `tunas-jax show` / a search's
architecture.json.) Short recipe: RMSProp would need many more steps than the
~11 per epoch digits give, so this uses Adam with a cosine schedule.
"""

import ml_collections

from experiments.train import base


def get_config() -> ml_collections.ConfigDict:
    config = base.get_config()
    # Digits: 1442 train / 355 test images, upscaled to 32 px (the micro space's size).
    config.dataset.name = "digits"
    config.dataset.image_size = 32
    config.dataset.eval_split = "test"
    config.num_epochs = 40
    config.batch_size = 128
    # Adam at 2e-3 per 128 examples, cosine after 2 warmup epochs.
    config.optimizer = "adam"
    config.learning_rate = 2e-3
    config.lr_batch_base = 128
    config.epsilon = 1e-8
    config.momentum = 0.9
    config.schedule = "cosine"
    config.warmup_epochs = 2.0
    config.weight_decay = 5e-5
    config.label_smoothing = 0.1
    config.dropout_rate = 0.1
    # 11 steps per epoch: a short horizon EMA (effective ~50 steps).
    config.ema_decay = 0.98
    config.log_every_steps = 11
    config.targets = ("pixel6_edgetpu",)
    # The metric of the default search (experiments/search/micro_digits.py).
    config.latency_metric = "layers"
    return config
