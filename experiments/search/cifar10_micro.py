"""The `micro` space on CIFAR-10 (32 px), Pixel 6 Edge TPU latency.

Needs cifar10 prepared in ArrayRecord format in the TFDS data_dir
(`tfds build cifar10 --file_format=array_record` on a machine with network).

Run:
    tunas-jax search --config experiments/search/cifar10_micro.py --workdir /tmp/search_cifar10
"""

import ml_collections

from experiments.search import micro_digits


def get_config() -> ml_collections.ConfigDict:
    config = micro_digits.get_config()
    config.dataset.name = "cifar10"
    config.dataset.image_size = 32
    # 45k training images: ~90 epochs of batch 128 is ~32k steps; 10k steps (~28
    # epochs) is enough for the controller to settle on this small space.
    config.steps = 10_000
    config.batch_size = 128
    config.valid_batch_size = 512  # TuNAS: 4x the training batch
    # SGD with momentum, cosine: the standard CIFAR recipe, stable over tens of epochs.
    config.optimizer.name = "momentum"
    config.optimizer.base_learning_rate = 0.2  # x 128/256 = 0.1 peak
    config.optimizer.momentum = 0.9
    config.optimizer.weight_decay = 4e-5
    config.controller.base_lr = 3e-3
    config.log_every = 50
    config.checkpoint_every = 1000
    return config
