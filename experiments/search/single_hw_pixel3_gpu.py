"""Single-device baseline of the multi-hardware search: the Pixel 3 GPU alone.

micro/digits at pixel3_gpu's budget in experiments/search/multi_hw_micro_digits.py
(experiments/search/single_hw_micro_digits.py has the why).

Run:
    tunas-jax search --config experiments/search/single_hw_pixel3_gpu.py \
        --workdir /tmp/search_single_hw_pixel3_gpu
"""

import ml_collections

from experiments.search import single_hw_micro_digits


def get_config() -> ml_collections.ConfigDict:
    return single_hw_micro_digits.for_device("pixel3_gpu")
