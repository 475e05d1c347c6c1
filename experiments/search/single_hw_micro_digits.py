"""Single-device baselines of the multi-hardware search: micro/digits on one device.

Issue 16's acceptance compares the worst-case multi-hardware search
(experiments/search/multi_hw_micro_digits.py) with one single-target search per
device at the same per-device budget. `for_device(name)` is that search for
one of its devices: the target latency and cost-model config come from the
multi-hardware config, so both always share budgets. One variant file per
device calls it (single_hw_pixel6_edgetpu.py, single_hw_pixel4_dsp.py,
single_hw_pixel3_gpu.py); this file alone is the pixel6_edgetpu one.

Run:
    tunas-jax search --config experiments/search/single_hw_pixel3_gpu.py \
        --workdir /tmp/search_single_hw_pixel3_gpu
"""

import ml_collections

from experiments.search import micro_digits, multi_hw_micro_digits


def for_device(device: str) -> ml_collections.ConfigDict:
    """The default micro/digits search on `device` at its multi-hardware budget."""
    multi = multi_hw_micro_digits.get_config()
    devices = tuple(multi.targets)
    if device not in devices:
        raise ValueError(f"single_hw_micro_digits.for_device({device!r}): pick one of "
                         f"{list(devices)}, the multi-hardware search's devices")
    i = devices.index(device)
    # Everything else (steps, reward, 'layers' metric, the regressors' overrides) is the
    # default search's, as in the multi-hardware config.
    config = micro_digits.get_config()
    config.targets = (device,)
    config.target_latency_ms = multi.target_latencies_ms[i]
    config.cost_model.config = multi.cost_model.configs[i]
    return config


def get_config() -> ml_collections.ConfigDict:
    return for_device("pixel6_edgetpu")
