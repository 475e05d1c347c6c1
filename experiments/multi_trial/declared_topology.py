"""Multi-trial NAS over a topology declared in this file, not in a space module.

Run:
    tunas-jax multi-trial --config experiments/multi_trial/declared_topology.py \
        --workdir /tmp/multi_trial_declared

`config.topology` is the model generator's input: the network's stem, stages
and head, with a list wherever a parameter is searchable (a `OneOf` over the
list, see search_spaces/declared.py). Everything else (digits proxy training,
`pixel6_edgetpu` latency, the reward) is the `micro_digits` study's.
"""

import ml_collections

from experiments.multi_trial import micro_digits

TOPOLOGY = {
    "name": "digits_ibn",
    "image_size": 32,  # the size the network is costed at by default
    "num_classes": 10,
    "stem": {"filters": [8, 16], "kernel_size": 3, "stride": 2},
    "stages": [
        # Searchable: width, op, kernel and expansion of each block; the second
        # block of a stage may be skipped.
        {"filters": [16, 24],
         "blocks": [{"op": ["dw_ibn", "fused_ibn"], "kernel_size": [3, 5],
                     "expansion_ratio": [2, 4], "stride": 2},
                    {"op": ["dw_ibn", "fused_ibn", "skip"], "kernel_size": [3, 5],
                     "expansion_ratio": [2, 4]}]},
        {"filters": [32, 48],
         "blocks": [{"op": ["dw_ibn", "fused_ibn"], "kernel_size": [3, 5],
                     "expansion_ratio": [2, 4], "stride": 2}]},
    ],
    "head": {"filters": 128},
}


def get_config() -> ml_collections.ConfigDict:
    config = micro_digits.get_config()
    config.topology = TOPOLOGY
    config.space = TOPOLOGY["name"]  # must name the declaration
    # micro_digits' latency band (train only candidates within 5% of its target) is
    # sized to micro's latency range; this topology spans another, so no band: the
    # reward's latency term alone steers toward the target.
    config.latency_band = 0.0
    return config
