"""Configs of `tunas-jax search` (one-shot architecture search); `base.py` holds the defaults."""
