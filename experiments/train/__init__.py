"""Configs of `tunas-jax train`: standalone training of one architecture (base + variants)."""
