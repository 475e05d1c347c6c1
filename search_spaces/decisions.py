"""Categorical decision points: TuNAS's `OneOf`.

A search space is a tree of specs in which some fields are `OneOf` values.
Each `OneOf` is one decision; an architecture is the list of chosen indices,
one per decision, in the space's fixed traversal order. The tag says what the
decision picks: an op (block type, kernel, group size) or a filter count
(stage widths, expansion ratios), which the controller and the cost model treat differently (TuNAS's
filter warmup only touches `FILTERS` decisions).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from search_spaces.errors import SpecError

OP = "op"
FILTERS = "filters"
TAGS = (OP, FILTERS)


@dataclasses.dataclass(frozen=True)
class OneOf:
    """A categorical choice among `choices` (JSON scalars), tagged `OP` or `FILTERS`."""

    choices: tuple[Any, ...]
    tag: str = OP

    def __post_init__(self) -> None:
        object.__setattr__(self, "choices", tuple(self.choices))
        if not self.choices:
            raise SpecError("OneOf.choices is empty: give at least one choice")
        if len(set(self.choices)) != len(self.choices):
            raise SpecError(f"OneOf.choices {self.choices} has duplicates: list each choice once")
        if self.tag not in TAGS:
            raise SpecError(f"OneOf.tag {self.tag!r} is unknown: use one of {TAGS}")
        for choice in self.choices:
            if not isinstance(choice, (int, float, str, bool)):
                raise SpecError(
                    f"OneOf choice {choice!r} is not a JSON scalar: use int, float, str or bool"
                )


@dataclasses.dataclass(frozen=True)
class Decision:
    """One decision of a concrete space: its dotted name, position and choices."""

    name: str
    position: int
    choices: tuple[Any, ...]
    tag: str

    @property
    def num_choices(self) -> int:
        return len(self.choices)

    def index_of(self, value: Any) -> int:
        """The index of `value` among the choices; SpecError if it is not one."""
        for i, choice in enumerate(self.choices):
            if choice == value and type(choice) is type(value):
                return i
        raise SpecError(
            f"decision {self.name!r}: value {value!r} is not a choice; choose one of {self.choices}"
        )


def value_or_decision(field: Any) -> bool:
    """True if a spec field is a decision (a OneOf), False if it is fixed."""
    return isinstance(field, OneOf)
