"""Single-device baseline of the multi-hardware search: the Pixel 6 Edge TPU alone.

micro/digits at pixel6_edgetpu's budget in experiments/search/multi_hw_micro_digits.py
(experiments/search/single_hw_micro_digits.py has the why).

Run:
    tunas-jax search --config experiments/search/single_hw_pixel6_edgetpu.py \
        --workdir /tmp/search_single_hw_pixel6_edgetpu
"""

import ml_collections

from experiments.search import single_hw_micro_digits


def get_config() -> ml_collections.ConfigDict:
    return single_hw_micro_digits.for_device("pixel6_edgetpu")
