"""The starting point of every one-shot search config: the library's defaults.

Run (a variant, not this file):
    tunas-jax search --config experiments/search/micro_digits.py --workdir /tmp/search_micro
Override any field with `--config.<field>=<value>`, nested ones with dots, e.g.
`--config.steps=200 --config.dataset.image_size=16 --config.controller.delay_fraction=0.2`.

Every field, its default and what it means is in
`tunas_jax.config_defaults.search_defaults` (the library owns the schema so
that it validates configs without importing this package). Variants start from
`get_config()` here and change values; a field the schema lacks is refused as a
typo.
"""

import ml_collections

from tunas_jax.config_defaults import search_defaults


def get_config() -> ml_collections.ConfigDict:
    # No field differs from the library's defaults.
    return search_defaults()
