"""Segmentation search in the paper's setting: ADE20K with the released models' 32
classes at 512 px, Pixel 6 Edge TPU, the DeepLabv3+ head of the released
MobileNetEdgeTPUv2 segmentation models on the searched backbone.

TODO(issue 17): switch `config.space` to "autoseg" (backbone + BiFPN head decisions)
with a cost-model config for it at 512 px (not written yet); until then the backbone
is searched in "mobilenet_edgetpu_v2" with the fixed DeepLabv3+ head below, and the latency the
reward sees includes that head and the output stage (the search trains its cost
model with the segmentation task and 512 px).

The head and data follow tensorflow/models `official/projects/edgetpu/vision`
(`seg_deeplabv3plus_ade20k_32`): ASPP on the stride-16 features with depthwise
branches at rates 5, 10, 15 and 128 filters, low-level fusion from stride 8 with 48
filters, two separable 3x3 decoder convs of 256, 32 classes with ADE20K's "other"
and its classes above 31 ignored (`tunas_jax/data/ade20k.py`). Needs
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
    # The space, target, cost-model config and masked layers of the ImageNet search.
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

    seg = config.segmentation
    seg.ignore_label = ade20k.IGNORE_LABEL
    seg.output_stage = "exact"
    seg.aspp_endpoint = "stride_16"
    seg.low_level_endpoint = "stride_8"
    seg.aspp_channels = 128
    seg.atrous_rates = (5, 10, 15)
    seg.low_level_channels = 48
    seg.decoder_channels = 256
    seg.num_decoder_convs = 2
    # The regressor costs the network at the search's resolution.
    config.cost_model.overrides.image_size = 512
    # The released AutosegEdgeTPU-XS's Pixel 6 latency with the exact output stage
    # (tensorflow/models edgetpu vision README: 5.4 ms).
    config.target_latency_ms = 5.4

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
