"""The one exception type for bad architecture, space and network input.

Every message names the offending field and says how to fix it, so a CLI can
print `str(err)` as a single line.
"""


class SpecError(ValueError):
    """Invalid search space, architecture, block or network description."""
