"""Latency regressor: the `autoseg` space (512 px, 32 classes, BiFPN head searched) on
the Pixel 6 Edge TPU. The segmentation search hands it its task (`overrides.task`) and
resolution, so the head and the output stage are costed as searched.

Run (a search trains it itself; standalone, the task as the ADE20K search sets it):
    tunas-jax train-cost-model --config experiments/cost_models/autoseg_pixel6.py \
        --workdir /tmp/cost_model_autoseg_pixel6
"""

import ml_collections

from experiments.cost_models import base


def get_config() -> ml_collections.ConfigDict:
    config = base.get_config()
    config.space = "autoseg"
    config.target = "pixel6_edgetpu"
    return config
