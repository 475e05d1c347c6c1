"""Segmentation search on the CPU: the `micro` backbone with a DeepLabv3+ head on the
built-in `seg_digits` (up to four digits per 32x32 image, 11 classes), Pixel 6 Edge TPU.

The backbone's decisions are searched (the head is fixed: its searched BiFPN form,
issue 17, is not built yet); the latency the reward sees includes the head and the
output stage, because the cost model is trained with the segmentation head
(`config.cost_model.overrides.task`, set by the search). The reward's quality is the
validation batch's mIoU.

Run:
    tunas-jax search --config experiments/search/autoseg_digits.py --workdir /tmp/search_autoseg
"""

import ml_collections

from experiments.search import micro_digits


def get_config() -> ml_collections.ConfigDict:
    config = micro_digits.get_config()
    config.task = "segmentation"
    config.dataset.name = "seg_digits"
    config.dataset.image_size = 32
    # Digits on a black canvas: no pixel is unlabelled, so nothing is ignored, but 255
    # keeps the convention of datasets that have them.
    config.segmentation.ignore_label = 255
    config.segmentation.output_stage = "exact"
    # Small head: micro's `features` (1x1 conv to 128 at stride 8, 4x4 px) feeds the
    # ASPP, the stride-4 endpoint (8x8 px) the low-level branch; rates fit a 4x4 map.
    config.segmentation.aspp_channels = 32
    config.segmentation.low_level_channels = 16
    config.segmentation.decoder_channels = 32
    config.segmentation.num_decoder_convs = 1
    config.segmentation.atrous_rates = (1, 2, 3)
    config.segmentation.aspp_endpoint = "features"
    config.segmentation.low_level_endpoint = "stride_4"
    # Layers latency (as micro_digits: the 0.40 ms fixed part would swamp the space).
    # With this head micro spans 0.0099-0.0311 ms (median 0.0157, 3000 uniform samples,
    # simulated); 60% of the slowest, as micro_digits' target.
    config.target_latency_ms = 0.0187
    # Segmentation has no label smoothing in the reference recipe.
    config.optimizer.label_smoothing = 0.0
    return config
