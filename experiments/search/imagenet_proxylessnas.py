"""TuNAS on ImageNet in the ProxylessNAS space (Pixel 6 Edge TPU latency, 224 px).

Same TuNAS ImageNet hyperparameters as `imagenet_mobilenet_edgetpu_v2.py`.

Run:
    tunas-jax search --config experiments/search/imagenet_proxylessnas.py \
        --workdir /tmp/search_proxylessnas
"""

import ml_collections

from experiments.search import imagenet_mobilenet_edgetpu_v2


def get_config() -> ml_collections.ConfigDict:
    config = imagenet_mobilenet_edgetpu_v2.get_config()
    config.space = "proxylessnas"
    config.cost_model.config = "experiments/cost_models/proxylessnas_pixel6.py"
    # Median of this space's simulated latencies (0.93-2.9 ms, 500 uniform samples).
    config.target_latency_ms = 1.55
    return config
