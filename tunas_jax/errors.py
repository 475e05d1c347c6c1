"""The exception type for bad command-line and config input of the `tunas_jax` library.

Library modules raise `UsageError` with one line naming the offending field or
option and the fix; the CLI (`tunas_jax.cli`) prints it and exits with code 2.
It lives here, not in the CLI, so that library code never imports the CLI.
Architecture and space problems are `search_spaces.SpecError` instead.
`PrimaryFailedError` is how the other processes of a multi-process run stop when
process 0 failed at a step they wait for (`tunas_jax.distributed.primary_first`):
one line, exit code 1.
"""


class UsageError(ValueError):
    """Bad CLI/config input that is not about an architecture or space."""


class PrimaryFailedError(RuntimeError):
    """Process 0 failed at a step the other processes were waiting for."""
