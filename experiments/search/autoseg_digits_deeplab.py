"""The segmentation search with a fixed DeepLabv3+ head: the `micro` backbone's decisions
searched on `seg_digits` (autoseg_digits.py with the head and space swapped).

Run:
    tunas-jax search --config experiments/search/autoseg_digits_deeplab.py \
        --workdir /tmp/search_autoseg_deeplab
"""

import ml_collections

from experiments.search import autoseg_digits


def get_config() -> ml_collections.ConfigDict:
    config = autoseg_digits.get_config()
    config.space = "micro"
    config.cost_model.config = "experiments/cost_models/micro_pixel6.py"
    config.segmentation.head = "deeplab"
    # Small head: micro's `features` (1x1 conv to 128 at stride 8, 4x4 px) feeds the
    # ASPP, the stride-4 endpoint (8x8 px) the low-level branch; rates fit a 4x4 map.
    config.segmentation.aspp_channels = 32
    config.segmentation.low_level_channels = 16
    config.segmentation.decoder_channels = 32
    config.segmentation.num_decoder_convs = 1
    config.segmentation.atrous_rates = (1, 2, 3)
    config.segmentation.aspp_endpoint = "features"
    config.segmentation.low_level_endpoint = "stride_4"
    # With this head micro spans 0.0099-0.0311 ms (median 0.0157, 3000 uniform samples,
    # simulated); 60% of the slowest, as micro_digits' target.
    config.target_latency_ms = 0.0187
    return config
