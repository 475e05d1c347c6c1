"""The generic search-space tree: `OneOf` decisions anywhere in nested dataclasses,
dicts, lists and tuples (TuNAS's `schema` idea).

A space definition is an ordinary tree of specs in which some nodes are
`OneOf`s. This module knows nothing about what the specs mean; it gives:

- `walk(tree)`: every decision in a fixed depth-first order, named by its path
  (dataclass field names, dict keys and list positions joined by dots, e.g.
  `stages.2.blocks.1.op`). A `OneOf` whose choices are themselves trees has
  their decisions after its own, named `<path>.<choice index>.<sub-path>`, and
  they are *nested*: active only when the parent picks that choice.
- `prune(tree, indices)`: the tree with every decision replaced by its chosen
  value (the architecture); decisions nested under a choice not taken are
  dropped with it.
- `to_json(tree)` / `fingerprint(tree)`: a canonical JSON encoding and its
  hash, stored with anything trained for a space so that another is refused.

Which decisions are active under which choices is public: `Decision.parent`
gives the (position, choice) a nested decision depends on; a model family may
add its own rules on top (`search_spaces.space`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from search_spaces.errors import SpecError

OP = "op"
FILTERS = "filters"
TAGS = (OP, FILTERS)


def _is_tree(value: Any) -> bool:
    return (dataclasses.is_dataclass(value) and not isinstance(value, type)) or isinstance(
        value, (Mapping, list, tuple))


@dataclasses.dataclass(frozen=True)
class OneOf:
    """A categorical choice among `choices`, tagged `OP` or `FILTERS`.

    Choices are JSON scalars or sub-trees (frozen dataclasses, tuples) that may
    hold further decisions. The tag says what the decision picks, which the
    controller treats differently (TuNAS's filter warmup only touches `FILTERS`
    decisions, op warmup only `OP` ones).
    """

    choices: tuple[Any, ...]
    tag: str = OP

    def __post_init__(self) -> None:
        object.__setattr__(self, "choices", tuple(self.choices))
        if not self.choices:
            raise SpecError("OneOf.choices is empty: give at least one choice")
        for choice in self.choices:
            if not (isinstance(choice, (int, float, str, bool)) or _is_tree(choice)):
                raise SpecError(f"OneOf choice {choice!r} is neither a JSON scalar nor a spec "
                                "tree: use int, float, str, bool or a (frozen) dataclass")
        if len(set(map(_freeze, self.choices))) != len(self.choices):
            raise SpecError(f"OneOf.choices {self.choices} has duplicates: list each choice once")
        if self.tag not in TAGS:
            raise SpecError(f"OneOf.tag {self.tag!r} is unknown: use one of {TAGS}")


@dataclasses.dataclass(frozen=True)
class Decision:
    """One decision of a space: its dotted path, position, choices and tag.

    `parent` is `(position, choice index)` for a decision nested inside one
    choice of another (active only when that choice is taken), else None.
    """

    name: str
    position: int
    choices: tuple[Any, ...]
    tag: str
    parent: tuple[int, int] | None = None

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


def _children(node: Any) -> list[tuple[str, Any]]:
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return [(f.name, getattr(node, f.name)) for f in dataclasses.fields(node)]
    if isinstance(node, Mapping):
        return [(str(k), v) for k, v in node.items()]
    if isinstance(node, (list, tuple)):
        return [(str(i), v) for i, v in enumerate(node)]
    return []


def walk(tree: Any) -> tuple[Decision, ...]:
    """Every decision of `tree` in depth-first order (the order of an index vector)."""
    out: list[Decision] = []

    def visit(node: Any, path: str, parent: tuple[int, int] | None) -> None:
        if isinstance(node, OneOf):
            position = len(out)
            out.append(Decision(path, position, node.choices, node.tag, parent))
            for j, choice in enumerate(node.choices):
                if _is_tree(choice):
                    visit(choice, f"{path}.{j}", (position, j))
            return
        for key, child in _children(node):
            visit(child, f"{path}.{key}" if path else key, parent)

    visit(tree, "", None)
    return tuple(out)


def prune(tree: Any, indices: Sequence[int]) -> Any:
    """`tree` with each decision replaced by its chosen value, in `walk` order."""
    position = iter(range(len(indices) + 1))
    taken = list(indices)

    def skip(node: Any) -> None:
        # Decisions of a choice not taken still hold their places in the order.
        if isinstance(node, OneOf):
            next(position)
            for choice in node.choices:
                skip(choice)
            return
        for _, child in _children(node):
            skip(child)

    def build(node: Any) -> Any:
        if isinstance(node, OneOf):
            index = taken[next(position)]
            chosen = None
            for j, choice in enumerate(node.choices):
                if j == index:
                    chosen = build(choice)
                else:
                    skip(choice)
            return chosen
        if dataclasses.is_dataclass(node) and not isinstance(node, type):
            return dataclasses.replace(node, **{k: build(v) for k, v in _children(node)
                                                if _contains_decision(v)})
        if isinstance(node, Mapping):
            return type(node)((k, build(v)) for k, v in node.items())
        if isinstance(node, (list, tuple)):
            return type(node)(build(v) for v in node)
        return node

    return build(tree)


def nested_active(decisions: Sequence[Decision], indices: Any, active: list[Any],
                  xp: Any = np) -> list[Any]:
    """`active` (one boolean column [...] per decision) with every nested decision ANDed
    with its parent being active and choosing the branch that holds it."""
    active = list(active)
    for d in decisions:  # parents come first in walk order
        if d.parent is not None:
            parent, choice = d.parent
            active[d.position] = active[d.position] & active[parent] & (
                xp.asarray(indices)[..., parent] == choice)
    return active


def _contains_decision(node: Any) -> bool:
    return isinstance(node, OneOf) or any(_contains_decision(c) for _, c in _children(node))


def to_json(tree: Any) -> Any:
    """A canonical JSON value of the tree (a OneOf is {"one_of": [...], "tag": ...})."""
    if isinstance(tree, OneOf):
        return {"one_of": [to_json(c) for c in tree.choices], "tag": tree.tag}
    if dataclasses.is_dataclass(tree) and not isinstance(tree, type):
        return {k: to_json(v) for k, v in _children(tree)}
    if isinstance(tree, Mapping):
        return {str(k): to_json(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [to_json(v) for v in tree]
    if hasattr(tree, "value") and isinstance(tree, str):  # str enums
        return str(tree)
    return tree


def fingerprint(tree: Any) -> str:
    """16 hex digits of the SHA-256 of the canonical JSON of `tree`."""
    text = json.dumps(to_json(tree), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _freeze(value: Any) -> Any:
    return json.dumps(to_json(value), sort_keys=True)


def choices(field: Any) -> tuple[Any, ...]:
    """The possible values of a spec field: a OneOf's choices, or the fixed value alone."""
    return field.choices if isinstance(field, OneOf) else (field,)


def mixed_radix(num_choices: Sequence[int]) -> tuple[int, ...]:
    """Multipliers that turn indices over decisions with `num_choices` into one code
    (the first decision most significant): code = sum(index * radix)."""
    radices, r = [], 1
    for n in reversed(num_choices):
        radices.append(r)
        r *= int(n)
    return tuple(reversed(radices))
