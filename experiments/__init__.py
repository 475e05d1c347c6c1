"""Config files of `tunas-jax`: `search/`, `train/` and `cost_models/` (ml_collections).

Each file's `get_config()` starts from the library's defaults
(`tunas_jax.config_defaults`, through the folder's `base.py`) and sets the
values of one experiment; its module docstring gives the command that runs it.
This package imports the library, never the other way round.
"""
