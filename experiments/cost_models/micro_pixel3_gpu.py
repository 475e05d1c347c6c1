"""Latency regressor: the micro space (32 px, the CPU default) on the Pixel 3 GPU.

One of the per-target regressors of experiments/search/multi_hw_micro_digits.py.

Run:
    tunas-jax train-cost-model --config experiments/cost_models/micro_pixel3_gpu.py \
        --workdir /tmp/cost_model_micro_pixel3_gpu
"""

import ml_collections

from experiments.cost_models import base


def get_config() -> ml_collections.ConfigDict:
    config = base.get_config()
    # Search space and hardware target this model is for.
    config.space = "micro"
    config.target = "pixel3_gpu"
    return config
