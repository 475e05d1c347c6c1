"""Latency regressor: the MobileNetEdgeTPUv2 space on the Pixel 6 Edge TPU.

The default config; the quality bar (Spearman >= 0.99, MAPE <= 2%) is measured on it.

Run:
    tunas-jax train-cost-model --config experiments/cost_models/mobilenet_edgetpu_v2_pixel6.py \
        --workdir /tmp/cost_model_mobilenet_edgetpu_v2_pixel6
"""

import ml_collections

from experiments.cost_models import base


def get_config() -> ml_collections.ConfigDict:
    config = base.get_config()
    # Search space and hardware target this model is for.
    config.space = "mobilenet_edgetpu_v2"
    config.target = "pixel6_edgetpu"
    return config
