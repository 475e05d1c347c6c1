"""The exception type for bad command-line and config input of the `tunas_jax` library.

Library modules raise `UsageError` with one line naming the offending field or
option and the fix; the CLI (`tunas_jax.cli`) prints it and exits with code 2.
It lives here, not in the CLI, so that library code never imports the CLI.
Architecture and space problems are `search_spaces.SpecError` instead.
"""


class UsageError(ValueError):
    """Bad CLI/config input that is not about an architecture or space."""
