"""Multi-hardware search: the default micro/digits search on three devices at once.

One architecture for the Pixel 6 Edge TPU, the Pixel 4 Hexagon DSP and the
Pixel 3 GPU (Chu et al. 2020, "Discovering Multi-Hardware Mobile Models"):
each device's latency is divided by its own target below, and the reward
uses the worst (largest) of the three ratios in TuNAS's `abs` form,
Q + beta * |max_i T_i / T0_i - 1|. One latency regressor per device, all in
the one jitted step (tunas_jax/search_targets.py).

Run:
    tunas-jax search --config experiments/search/multi_hw_micro_digits.py \
        --workdir /tmp/search_multi_hw_micro
"""

import ml_collections

from experiments.search import micro_digits


def get_config() -> ml_collections.ConfigDict:
    config = micro_digits.get_config()
    config.targets = ("pixel6_edgetpu", "pixel4_dsp", "pixel3_gpu")
    # 'worst': the architecture must meet every device's budget; 'average' or 'geomean'
    # trade one device's slack against another's overshoot.
    config.multi_hardware_metric = "worst"
    # One target per device, in ms of the 'layers' metric (micro_digits' metric: each
    # device's fixed per-inference part, 0.18-1.9 ms here, would swamp the space's
    # spread). Each sits near the 96th percentile of uniform micro samples on its
    # device at 32 px (pixel6_edgetpu 0.0158, pixel4_dsp 0.134, pixel3_gpu 0.986 ms),
    # the default search's 0.0176 ms on the Edge TPU kept.
    config.target_latencies_ms = (0.0176, 0.134, 0.986)
    # One regressor per target, each built with micro_digits' overrides.
    config.cost_model.configs = ("experiments/cost_models/micro_pixel6.py",
                                 "experiments/cost_models/micro_pixel4_dsp.py",
                                 "experiments/cost_models/micro_pixel3_gpu.py")
    return config
