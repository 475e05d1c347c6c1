"""The default search with this machine's CPU as the device: `host_cpu`, measured.

micro on digits at 32 px, as experiments/search/micro_digits.py, but the
reward's latency is `host_cpu`'s: a regressor trained on measured latencies
of sampled architectures (experiments/cost_models/micro_host_cpu.py; its
dataset is measured when missing, about a quarter of an hour), and the found
architecture is measured again at the end (architecture.json's
`simulated_latency_ms` is then that measurement). A measured target has no
modelled fixed part, so the metric is `end_to_end`.

Run:
    tunas-jax search --config experiments/search/host_cpu_micro_digits.py \
        --workdir /tmp/search_host_cpu_micro
"""

import ml_collections

from experiments.search import micro_digits


def get_config() -> ml_collections.ConfigDict:
    config = micro_digits.get_config()
    config.targets = ("host_cpu",)
    config.latency_metric = "end_to_end"
    config.cost_model.config = "experiments/cost_models/micro_host_cpu.py"
    # micro_digits' overrides size a simulator dataset (5000 architectures); a measured
    # one keeps the cost-model file's size.
    config.cost_model.overrides.num_architectures = None
    config.cost_model.overrides.num_steps = None
    # ms end to end (the regressor dataset's statistic of the timed runs): near the
    # measured median of micro on the 2-core machine (EXPERIMENTS.md section 5b, which
    # also says why this search has not been run yet).
    config.target_latency_ms = 0.45
    return config
