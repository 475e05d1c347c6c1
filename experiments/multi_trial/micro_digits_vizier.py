"""Multi-trial NAS on the default task with an OSS Vizier back-end (`pip install
'tunas-jax[vizier]'`): micro_digits.py's study, its candidates proposed by Vizier.

Run:
    tunas-jax multi-trial --config experiments/multi_trial/micro_digits_vizier.py \
        --workdir /tmp/multi_trial_vizier [--config.vizier.algorithm=EAGLE_STRATEGY]

The study lives in W/vizier.db (Vizier's SQL datastore, served by a Vizier
server this command starts in a child process and stops); rerun the same
command to continue it. For a quality/latency Pareto front with NSGA-II:
    --config.vizier.algorithm=NSGA2 --config.vizier.objectives="('quality','latency_ms')"
(or "('quality','energy_mj')" for quality vs energy).
Against a running Vizier server: --config.vizier.server=HOST:PORT.
"""

import ml_collections

from experiments.multi_trial import micro_digits


def get_config() -> ml_collections.ConfigDict:
    config = micro_digits.get_config()
    config.strategy = "vizier"
    # Regularized evolution as a Vizier designer (controllers/vizier_designers.py), with
    # the base config's population_size and tournament_size.
    config.vizier.algorithm = "REGULARIZED_EVOLUTION"
    config.vizier.objectives = ("reward",)
    # The base config's latency band holds: a suggestion outside it is completed in
    # Vizier as infeasible without training (controllers/vizier_strategy.py).
    return config
