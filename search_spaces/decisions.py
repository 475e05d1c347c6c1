"""Categorical decision points (TuNAS's `OneOf`) and their tags: re-exported from
`search_spaces.schema`, where the generic tree machinery lives."""

from search_spaces.schema import FILTERS, OP, TAGS, Decision, OneOf

__all__ = ["FILTERS", "OP", "TAGS", "Decision", "OneOf"]
