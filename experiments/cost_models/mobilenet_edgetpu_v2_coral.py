"""Latency regressor: the MobileNetEdgeTPUv2 space on the Coral Edge TPU.

Run:
    tunas-jax train-cost-model --config experiments/cost_models/mobilenet_edgetpu_v2_coral.py \
        --workdir /tmp/cost_model_mobilenet_edgetpu_v2_coral
"""

import ml_collections

from experiments.cost_models import base


def get_config() -> ml_collections.ConfigDict:
    config = base.get_config()
    # Search space and hardware target this model is for.
    config.space = "mobilenet_edgetpu_v2"
    config.target = "coral_edgetpu"
    return config
