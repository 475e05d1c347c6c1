"""Configs of `tunas-jax search` (one-shot architecture search); each starts from `base.py`,
the library's defaults (`tunas_jax.config_defaults.search_defaults`)."""
