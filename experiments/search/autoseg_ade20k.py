"""Segmentation search in the paper's setting (Autoseg-EdgeTPU): ADE20K with the
released models' 32 classes at 512 px, Pixel 6 Edge TPU, the `autoseg` space (IBN
kernels, expansions and stage widths, and the BiFPN head's repeats and minimum level,
searched together; the head's fixed settings as released: 96 filters, levels up to 8).

The reward's latency includes the head and the output stage: the search trains its
cost model (`experiments/cost_models/autoseg_pixel6.py`) with the segmentation task at
512 px. The data follow tensorflow/models `official/projects/edgetpu/vision`
(`seg_deeplabv3plus_ade20k_32`, the released models' data): 32 classes with ADE20K's
"other" and its classes above 31 ignored (`tunas_jax/data/ade20k.py`). Needs
`scene_parse150` in ArrayRecord format in config.dataset.data_dir
(`tfds build scene_parse150 --file_format=array_record` on a machine with network).

Run:
    tunas-jax search --config experiments/search/autoseg_ade20k.py --workdir /tmp/search_ade20k
"""

import ml_collections

from experiments.search import imagenet_mobilenet_edgetpu_v2
from tunas_jax.data import ade20k

# ADE20K's training split (TFDS scene_parse150 'train'): 20,210 images.
ADE20K_TRAIN_EXAMPLES = 20_210


def get_config() -> ml_collections.ConfigDict:
    # The target, masked layers and recipe of the ImageNet search (space and cost model
    # set below).
    config = imagenet_mobilenet_edgetpu_v2.get_config()
    config.task = "segmentation"
    config.dataset.name = "ade20k"
    config.dataset.image_size = 512
    # TuNAS: the reward's batches held out of the training split; ADE20K's 'test' split
    # is its 2,000 validation images.
    config.dataset.train_split = "train[:95%]"
    config.dataset.valid_split = "train[95%:]"
    config.dataset.eval_split = "test"
    # Label maps: no random-resized crop (the pipeline refuses 'inception' for them).
    config.dataset.augment = "pad_crop"
    config.dataset.random_flip = "yes"
    config.dataset.in_memory = False

    config.space = "autoseg"
    config.cost_model.config = "experiments/cost_models/autoseg_pixel6.py"
    seg = config.segmentation
    seg.ignore_label = ade20k.IGNORE_LABEL
    seg.output_stage = "exact"
    # The released Autoseg-EdgeTPU head (tasks/semantic_segmentation.py, AutosegEdgeTPU):
    # BiFPN up to level 8 (stride 256) with 96 filters; the space searches its repeats
    # (1-4) and minimum level (3 or 4).
    seg.head = "bifpn"
    seg.bifpn_max_level = 8
    seg.bifpn_num_filters = 96
    # The regressor costs the network at the search's resolution.
    config.cost_model.overrides.image_size = 512
    # The released Autoseg-EdgeTPU-XS as this simulator costs it (end to end, exact
    # output stage: EXPERIMENTS.md section 10; the published Pixel 6 figure is 5.4 ms).
    config.target_latency_ms = 4.11

    # The released recipe's batch (128) and optimizer (Adam, peak 1e-4 after 4 of
    # 200 epochs of warmup, polynomial decay) are for training a fixed model from an
    # ImageNet-pretrained backbone; the supernet trains from scratch, so the
    # ImageNet search's RMSProp recipe is kept, at the released batch size.
    config.batch_size = 128
    config.valid_batch_size = 128
    config.architectures_per_device = 4
    config.steps = 100 * int(0.95 * ADE20K_TRAIN_EXAMPLES) // config.batch_size
    config.optimizer.base_learning_rate = 0.165
    config.optimizer.label_smoothing = 0.0
    config.log_every = 50
    config.checkpoint_every = 500
    return config
