"""Standalone segmentation training on ADE20K (32 classes, 512 px): the architecture an
`experiments/search/autoseg_ade20k.py` search found, with that search's head and
output stage, trained by the released models' recipe (tensorflow/models
`official/projects/edgetpu/vision`, `seg_deeplabv3plus_ade20k_32`); reports mIoU on
ADE20K's 2,000 validation images (TFDS 'test').

Run:
    tunas-jax train --config experiments/train/autoseg_ade20k.py \
        --config.architecture=W/architecture.json --workdir /tmp/train_ade20k
(W: the search's workdir; `--config.init_from=W` starts from its supernet weights.)
"""

import ml_collections

from experiments.search import autoseg_ade20k
from experiments.train import base


def get_config() -> ml_collections.ConfigDict:
    config = base.get_config()
    search = autoseg_ade20k.get_config()
    config.task = "segmentation"
    # What was searched and costed is what is trained: head, output stage and data.
    config.segmentation = search.segmentation
    config.dataset = search.dataset
    config.dataset.train_split = "train"
    # The released recipe: 200 epochs at batch 128, Adam, peak 1e-4 after 4 epochs of
    # linear warmup. It decays polynomially (power 0.9) to 0; cosine is the nearest
    # schedule here (also 0 at the end).
    config.num_epochs = 200
    config.batch_size = 128
    config.eval_batch_size = 32
    config.optimizer = "adam"
    config.learning_rate = 1e-4
    config.lr_batch_base = 128
    config.epsilon = 1e-7  # Keras Adam's
    config.schedule = "cosine"
    config.warmup_epochs = 4.0
    # The released config sets no weight decay and no label smoothing.
    config.weight_decay = 0.0
    config.label_smoothing = 0.0
    config.eval_every_epochs = 10.0
    config.targets = search.targets
    config.latency_metric = search.latency_metric
    return config
