"""Latency regressor: the autoseg_micro space (32 px, BiFPN head searched) on the Pixel 6
Edge TPU. The segmentation search hands it its task (`overrides.task`), so the head and
the output stage are costed as searched.

Run:
    tunas-jax train-cost-model --config experiments/cost_models/autoseg_micro_pixel6.py \
        --workdir /tmp/cost_model_autoseg_micro_pixel6
"""

import ml_collections

from experiments.cost_models import base


def get_config() -> ml_collections.ConfigDict:
    config = base.get_config()
    config.space = "autoseg_micro"
    config.target = "pixel6_edgetpu"
    return config
