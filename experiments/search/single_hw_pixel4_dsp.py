"""Single-device baseline of the multi-hardware search: the Pixel 4 Hexagon DSP alone.

micro/digits at pixel4_dsp's budget in experiments/search/multi_hw_micro_digits.py
(experiments/search/single_hw_micro_digits.py has the why).

Run:
    tunas-jax search --config experiments/search/single_hw_pixel4_dsp.py \
        --workdir /tmp/search_single_hw_pixel4_dsp
"""

import ml_collections

from experiments.search import single_hw_micro_digits


def get_config() -> ml_collections.ConfigDict:
    return single_hw_micro_digits.for_device("pixel4_dsp")
