"""One module per `tunas-jax` subcommand (see `tunas_jax.cli`)."""
