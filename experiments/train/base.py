"""The starting point of every standalone training config: the library's defaults.

Run (a variant, not this file):
    tunas-jax train --config experiments/train/micro_digits.py \
        --config.architecture=ARCH.json --workdir /tmp/train_micro
Override any field with `--config.<field>=<value>` (nested: `--config.dataset.name=cifar10`).

Every field, its default and what it means is in
`tunas_jax.config_defaults.train_defaults`; variants start from `get_config()`
here and change values.
"""

import ml_collections

from tunas_jax.config_defaults import train_defaults


def get_config() -> ml_collections.ConfigDict:
    # No field differs from the library's defaults.
    return train_defaults()
