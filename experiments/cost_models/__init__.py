"""Configs for `tunas-jax train-cost-model`: one file per (search space, hardware target)."""
