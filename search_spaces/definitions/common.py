"""Helpers shared by the space definitions."""

from __future__ import annotations

from collections.abc import Sequence

from search_spaces.blocks import round_filters
from search_spaces.decisions import FILTERS, OneOf


def filter_choices(base: int, multipliers: Sequence[float], divisor: int = 8) -> OneOf | int:
    """A FILTERS decision over `base * multiplier`, rounded to `divisor`, duplicates merged."""
    values = sorted({round_filters(base * m, divisor) for m in multipliers})
    return values[0] if len(values) == 1 else OneOf(tuple(values), FILTERS)
