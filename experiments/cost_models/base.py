"""The starting point of every learned latency regressor config: the library's defaults.

Run (a variant, not this file):
    tunas-jax train-cost-model --config experiments/cost_models/mobilenet_edgetpu_v2_pixel6.py \
        --workdir /tmp/cost_model_v2_pixel6
Override any field with `--config.<field>=<value>`, e.g. `--config.model=linear`.

Every field, its default and what it means is in
`tunas_jax.config_defaults.cost_model_defaults`; variants start from
`get_config()` here and change values.
"""

import ml_collections

from tunas_jax.config_defaults import cost_model_defaults


def get_config() -> ml_collections.ConfigDict:
    # No field differs from the library's defaults.
    return cost_model_defaults()
