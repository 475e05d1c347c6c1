"""Multi-trial study configs (`tunas-jax multi-trial`); each starts from
`tunas_jax.config_defaults.multi_trial_defaults`."""
