"""Block types by name: what a block position can be, and how it lowers to layers.

A block type is registered once (`register_block_type`) and then usable in
any space (`BlockSpec.op` names it). It says:

- `reads(values)`: which of the `BlockSpec` decision fields (`kernel_size`,
  `expansion_ratio`, `pointwise_expansion`, `group_size`) this type uses when
  chosen with these field values. A field it does not read is an *inactive*
  decision on that path: the controller neither samples credit for it nor does
  the regressor see it (`SearchSpace.active_mask` derives the rules from here).
- `decode(spec, values, cin, cout, stage, min_group_size)`: the concrete
  `Block` for the chosen values and the block's input/output widths.
- `validate(block, fail)`: type-specific checks of a decoded or loaded block.
- `lower(block)`: the block's layers (`search_spaces.graph.Node`, names
  relative to the block), the one description every model and cost model is
  derived from. An empty lowering is the identity (a skipped block). Each
  conv node names a `role`: nodes of different types at the same role share
  one supernet switch (the IBN types use `expand`, `kxk`, `project`), so a
  new type should put its strided kxk conv at role `kxk` (the supernet can
  move a stride between roles only for 1x1 convs) and name its `weights` to
  share with others (`fused_3`) or not (`mytype_3`).

The built-in inverted-bottleneck types live in `search_spaces.ibn`; a new
block type is a new module with a subclass of `BlockKind` and one call to
`register_block_type`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from search_spaces.errors import SpecError

if TYPE_CHECKING:
    from search_spaces.blocks import Block
    from search_spaces.graph import Node
    from search_spaces.space import BlockSpec

# The BlockSpec fields a block type may read besides `op`, in decision order.
DECISION_FIELDS = ("kernel_size", "expansion_ratio", "pointwise_expansion", "group_size")


class BlockKind:
    """Base class of a block type; subclasses set `name` and override the methods."""

    name: str = ""

    def reads(self, values: Mapping[str, Any]) -> frozenset[str]:
        """The decision fields this type uses given the chosen field values."""
        del values
        return frozenset(DECISION_FIELDS)

    def decode(self, spec: BlockSpec, values: Mapping[str, Any], cin: int, cout: int,
               stage: int, min_group_size: int) -> Block:
        raise NotImplementedError

    def validate(self, block: Block, fail: Callable[[str, str], None]) -> None:
        """Raise through `fail(field, problem)` if `block` is not a valid one of this type."""

    def lower(self, block: Block) -> tuple[Node, ...]:
        raise NotImplementedError


_BLOCK_TYPES: dict[str, BlockKind] = {}


def register_block_type(kind: BlockKind, *, replace: bool = False) -> BlockKind:
    """Make `kind` usable by name in spaces and architecture files."""
    if not kind.name:
        raise SpecError(f"block type {type(kind).__name__}: set a non-empty `name`")
    if kind.name in _BLOCK_TYPES and not replace and _BLOCK_TYPES[kind.name] is not kind:
        raise SpecError(f"block type {kind.name!r} is already registered; pick another name "
                        "or pass replace=True")
    _BLOCK_TYPES[kind.name] = kind
    return kind


def get_block_type(name: Any) -> BlockKind:
    _ensure_builtins()
    try:
        return _BLOCK_TYPES[str(name)]
    except KeyError:
        raise SpecError(f"block type {name!r} is unknown; use one of {block_type_names()}"
                        ) from None


def block_type_names() -> list[str]:
    _ensure_builtins()
    return sorted(_BLOCK_TYPES)


def _ensure_builtins() -> None:
    import search_spaces.ibn  # noqa: F401  (registers the IBN types on import)
