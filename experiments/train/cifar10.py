"""Standalone training on CIFAR-10 at 32 px (TFDS `cifar10`, ArrayRecord in data_dir).

Run:
    tunas-jax train --config experiments/train/cifar10.py \
        --config.architecture=ARCH.json --workdir /tmp/train_cifar10 \
        [--config.dataset.data_dir=~/tensorflow_datasets]
Prepare the data once on a machine with network:
`tfds build cifar10 --file_format=array_record`.
"""

import ml_collections

from experiments.train import base


def get_config() -> ml_collections.ConfigDict:
    config = base.get_config()
    config.dataset.name = "cifar10"
    config.dataset.image_size = 32
    config.dataset.train_split = "train"
    config.dataset.eval_split = "test"
    # Pad + random crop and horizontal flips ('auto' picks them for 32 px natural images).
    config.dataset.augment = "pad_crop"
    config.dataset.random_flip = "yes"
    config.num_epochs = 200
    config.batch_size = 256
    # SGD + Nesterov (base momentum 0.9), 0.1 per 256 examples, cosine (base): the usual
    # CIFAR recipe; label smoothing 0.1 and no EMA as in base.
    config.optimizer = "sgd"
    config.learning_rate = 0.1
    config.lr_batch_base = 256
    config.nesterov = True
    config.warmup_epochs = 5.0
    # Coupled L2 as in the usual CIFAR recipe (5e-4 on kernels).
    config.weight_decay = 5e-4
    config.dropout_rate = 0.2
    config.log_every_steps = 50
    return config
