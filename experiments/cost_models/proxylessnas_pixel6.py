"""Latency regressor: the ProxylessNAS space (TuNAS) on the Pixel 6 Edge TPU.

Run:
    tunas-jax train-cost-model --config experiments/cost_models/proxylessnas_pixel6.py \
        --workdir /tmp/cost_model_proxylessnas_pixel6
"""

import ml_collections

from experiments.cost_models import base


def get_config() -> ml_collections.ConfigDict:
    config = base.get_config()
    # Search space and hardware target this model is for.
    config.space = "proxylessnas"
    config.target = "pixel6_edgetpu"
    return config
