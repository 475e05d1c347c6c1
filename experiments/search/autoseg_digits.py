"""Segmentation search on the CPU: the `autoseg_micro` space (IBN kernels, expansions,
stage widths, and the BiFPN head's repeats and minimum level) on the built-in
`seg_digits` (up to four digits per 32x32 image, 11 classes), Pixel 6 Edge TPU.

The backbone's and the head's decisions are searched together, by weight sharing
(one supernet trace for every head choice, `tasks.bifpn`); the latency the reward
sees includes the head and the output stage, because the cost model is trained
with the segmentation task (`config.cost_model.overrides.task`, set by the
search). The reward's quality is the validation batch's mIoU. The DeepLabv3+
variant on `micro` is `autoseg_digits_deeplab.py`.

Run:
    tunas-jax search --config experiments/search/autoseg_digits.py --workdir /tmp/search_autoseg
"""

import ml_collections

from experiments.search import micro_digits


def get_config() -> ml_collections.ConfigDict:
    config = micro_digits.get_config()
    config.space = "autoseg_micro"
    config.cost_model.config = "experiments/cost_models/autoseg_micro_pixel6.py"
    config.task = "segmentation"
    config.dataset.name = "seg_digits"
    config.dataset.image_size = 32
    # Digits on a black canvas: no pixel is unlabelled, so nothing is ignored, but 255
    # keeps the convention of datasets that have them.
    config.segmentation.ignore_label = 255
    config.segmentation.output_stage = "exact"
    # BiFPN over levels min..4 (stride 16: 2x2 px at 32 px); the space searches the
    # minimum level (2 or 3) and the repeats (1 or 2). 16 filters keep it CPU-sized
    # (the released models: 96 filters, levels 3..8, 4 repeats at 512 px).
    config.segmentation.head = "bifpn"
    config.segmentation.bifpn_max_level = 4
    config.segmentation.bifpn_num_filters = 16
    # Layers latency (as micro_digits: the fixed part would swamp the space). With this
    # head autoseg_micro spans 0.0091-0.0394 ms over 2000 uniform samples (median 0.0188,
    # 95th percentile 0.0292; the slowest architecture 0.0456), simulated; 60% of the
    # slowest, as micro_digits' target (91st percentile).
    config.target_latency_ms = 0.0274
    # Segmentation has no label smoothing in the reference recipe.
    config.optimizer.label_smoothing = 0.0
    return config
