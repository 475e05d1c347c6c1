"""tunas-jax: hardware-aware one-shot architecture search for Edge TPU-class accelerators.

The orchestration layer: the CLI (`tunas-jax`), search and training loops,
data, checkpoints and reports. Each CLI subcommand wraps a public function
importable from here.
"""

from tunas_jax.summary import format_table, list_spaces, resolve_architecture, summarize

__all__ = ["format_table", "list_spaces", "resolve_architecture", "summarize"]
__version__ = "0.1.0"
