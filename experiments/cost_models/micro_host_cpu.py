"""Latency regressor for `host_cpu`: the micro space on this machine's CPU, measured.

The dataset is measured, not simulated (tunas_jax/host_dataset.py): each
sampled architecture's standalone model compiled by XLA for this CPU, run
`measure_warmup` times, then timed `measure_repeats` times, the median kept.
Seconds per architecture (a compile each), so far fewer architectures than a
simulator dataset; the build resumes where it stopped. At the default task's
workload (32 px, 10 classes: experiments/search/micro_digits.py).

Run:
    tunas-jax train-cost-model --config experiments/cost_models/micro_host_cpu.py \
        --workdir /tmp/cost_model_micro_host_cpu
"""

import ml_collections

from experiments.cost_models import base


def get_config() -> ml_collections.ConfigDict:
    config = base.get_config()
    config.space = "micro"
    config.target = "host_cpu"
    config.image_size = 32
    config.num_classes = 10
    # Seconds per architecture (a compile each; EXPERIMENTS.md section 5b has the
    # measured rate and what so few noisy points give). A third held out.
    config.num_architectures = 150
    config.heldout_fraction = 0.33
    # TuNAS's additive model (the cache-aware one needs a simulated weight cache and is
    # refused for a measured target).
    config.model = "linear"
    config.num_steps = 2000
    config.measure_warmup = 5
    config.measure_repeats = 20
    return config
