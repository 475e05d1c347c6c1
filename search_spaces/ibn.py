"""The built-in block types: the inverted-bottleneck (IBN) vocabulary and `skip`.

Semantics (input `C` channels, output `Co`, total expansion `e`, expanded
width `F = C * e`; every conv is followed by batch norm; ReLU after every conv
except the 1x1 projection; `same` padding):

- `dw_ibn`  Depthwise-IBN: [1x1 conv C->F if e > 1] -> kxk depthwise conv on F
  channels (groups = F, carries the stride) -> 1x1 projection F->Co.
- `fused_ibn`  Fused-IBN: kxk full conv C->F (groups = 1, carries the stride)
  -> 1x1 projection F->Co. With e = 1 there is no kxk conv at all, only the
  1x1 projection, as in the published MobileNetEdgeTPU models; the projection
  then carries the stride.
- `gc_ibn`  GC-IBN: kxk group conv C->F (it does the expansion; carries the
  stride) -> 1x1 projection F->Co, which mixes the groups (no shuffle needed).
  With e = 1 the group conv maps C->C (as the published `ibn_fused_grouped`).
- `grouped_ibn`  the general grouped IBN: e = e1 * e2 with e1 the
  `pointwise_expansion`: [1x1 conv C->C*e1 if e1 > 1] -> kxk group conv
  C*e1->F -> 1x1 projection F->Co. `gc_ibn` is e1 = 1; the published
  `ibn_grouped` is e1 = e.
- `skip`  identity (only where the block keeps its shape).

Group size is counted, as in the published models (`group_base_size`), in
*output* channels of the group conv per group: groups = F / group_size, and
the group count must also divide the group conv's input channels.

A residual connection adds the block input to its output when the block asks
for one (`residual`), has stride 1 and keeps the width.

Weight sharing (the `weights` keys of the lowering): one 1x1 expansion and
one projection per block position; kxk full kernels per kernel size and input
kind, `fused_k` (reads the block input: fused_ibn, gc_ibn and grouped_ibn
with e1 = 1) and `grouped_k` (reads grouped_ibn's 1x1 expansion), so a group
conv trains the block diagonal of the same weights a full conv does;
depthwise kernels `dw_k`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Any

from search_spaces.block_types import DECISION_FIELDS, BlockKind, register_block_type
from search_spaces.blocks import Block, realize_groups
from search_spaces.graph import Node, add, conv


class BlockType(enum.StrEnum):
    """Names of the built-in block types (a registered type may have any other name)."""

    DW_IBN = "dw_ibn"
    FUSED_IBN = "fused_ibn"
    GC_IBN = "gc_ibn"
    GROUPED_IBN = "grouped_ibn"
    SKIP = "skip"


GROUPED_TYPES = (BlockType.GC_IBN, BlockType.GROUPED_IBN)


class _IBN(BlockKind):
    """What the four IBN types share: optional 1x1 expansion, kxk conv, 1x1 projection."""

    # e1 of the type given e: dw_ibn expands fully in its 1x1; the rest set below.
    def pointwise(self, values: Mapping[str, Any]) -> int:
        return 1

    def groups(self, values: Mapping[str, Any], kxk_in: int, expanded: int,
               min_group_size: int) -> int:
        return 1

    def reads(self, values: Mapping[str, Any]) -> frozenset[str]:
        return frozenset({"kernel_size", "expansion_ratio"})

    def decode(self, spec: Any, values: Mapping[str, Any], cin: int, cout: int, stage: int,
               min_group_size: int) -> Block:
        e = values["expansion_ratio"]
        e1 = self.pointwise(values)
        residual = spec.residual and spec.stride == 1 and cin == cout
        if self.name == BlockType.FUSED_IBN and e == 1:
            return Block(self.name, cin, cout, spec.stride, None, 1, 1, None, residual, stage)
        groups = self.groups(values, cin * e1, cin * e, min_group_size)
        return Block(self.name, cin, cout, spec.stride, values["kernel_size"], e, e1, groups,
                     residual, stage)

    def validate(self, block: Block, fail: Callable[[str, str], None]) -> None:
        expected = self.expected_pointwise(block)
        if expected is not None and block.pointwise_expansion != expected:
            fail("pointwise_expansion", f"must be {expected} for {self.name}")
        if not block.has_kxk_conv:
            if block.kernel_size is not None or block.groups is not None:
                fail("kernel_size", "fused_ibn with expansion 1 has no kxk conv: set "
                     "kernel_size and groups to null")
            return
        k = block.kernel_size
        if not isinstance(k, int) or k < 1 or k % 2 == 0:
            fail("kernel_size", f"{block.kernel_size!r} must be a positive odd integer")
        if not isinstance(block.groups, int) or block.groups < 1:
            fail("groups", f"{block.groups!r} must be a positive integer")
        self.check_groups(block, fail)
        if block.kxk_in_channels % block.groups or block.expanded_filters % block.groups:
            fail("groups", f"group count {block.groups} does not divide the group conv's "
                 f"channels ({block.kxk_in_channels} in, {block.expanded_filters} out); pick a "
                 "group size whose group count divides both")

    def expected_pointwise(self, block: Block) -> int | None:
        return 1

    def check_groups(self, block: Block, fail: Callable[[str, str], None]) -> None:
        pass

    def kxk_layer(self, block: Block) -> tuple[str, str]:
        """(layer name, weights key) of the kxk conv."""
        family = "grouped" if block.pointwise_expansion > 1 else "fused"
        return "group", f"{family}_{block.kernel_size}"

    def lower(self, block: Block) -> tuple[Node, ...]:
        nodes: list[Node] = []
        x, width = "block_input", block.input_filters
        if block.pointwise_expansion > 1:
            nodes.append(conv("expand", x, width, block.kxk_in_channels, role="expand",
                              weights="expand"))
            x, width = "expand", block.kxk_in_channels
        stride = block.stride
        if block.has_kxk_conv:
            name, weights = self.kxk_layer(block)
            nodes.append(conv(name, x, width, block.expanded_filters, block.kernel_size,
                              block.stride, block.groups, role="kxk", weights=weights))
            x, width, stride = name, block.expanded_filters, 1
        # With no kxk conv (fused_ibn, e = 1) the projection carries the stride.
        nodes.append(conv("project", x, width, block.output_filters, 1, stride,
                          activation=None, role="project", weights="project"))
        if block.residual:
            nodes.append(add("add", ("project", "block_input"), block.output_filters))
        return tuple(nodes)


class DepthwiseIBN(_IBN):
    name = BlockType.DW_IBN

    def pointwise(self, values: Mapping[str, Any]) -> int:
        return values["expansion_ratio"]

    def groups(self, values, kxk_in, expanded, min_group_size) -> int:
        return expanded

    def expected_pointwise(self, block: Block) -> int:
        return block.expansion_ratio

    def check_groups(self, block: Block, fail) -> None:
        if block.groups != block.expanded_filters:
            fail("groups", f"a depthwise conv has groups = channels = {block.expanded_filters}")

    def kxk_layer(self, block: Block) -> tuple[str, str]:
        return "depthwise", f"dw_{block.kernel_size}"


class FusedIBN(_IBN):
    name = BlockType.FUSED_IBN

    def reads(self, values: Mapping[str, Any]) -> frozenset[str]:
        # No kxk conv with expansion 1: its kernel is moot.
        if values["expansion_ratio"] == 1:
            return frozenset({"expansion_ratio"})
        return frozenset({"kernel_size", "expansion_ratio"})

    def check_groups(self, block: Block, fail) -> None:
        if block.groups != 1:
            fail("groups", "a fused_ibn's kxk conv is a full conv: groups must be 1")

    def kxk_layer(self, block: Block) -> tuple[str, str]:
        return "fused", f"fused_{block.kernel_size}"


class GroupConvIBN(_IBN):
    name = BlockType.GC_IBN

    def reads(self, values: Mapping[str, Any]) -> frozenset[str]:
        return frozenset({"kernel_size", "expansion_ratio", "group_size"})

    def groups(self, values, kxk_in, expanded, min_group_size) -> int:
        return realize_groups(kxk_in, expanded, values["group_size"], min_group_size)


class GroupedIBN(GroupConvIBN):
    name = BlockType.GROUPED_IBN

    def reads(self, values: Mapping[str, Any]) -> frozenset[str]:
        return frozenset(DECISION_FIELDS)

    def pointwise(self, values: Mapping[str, Any]) -> int:
        return values["pointwise_expansion"]

    def expected_pointwise(self, block: Block) -> None:
        return None  # any e1 dividing e (checked for every block)


class Skip(BlockKind):
    name = BlockType.SKIP

    def reads(self, values: Mapping[str, Any]) -> frozenset[str]:
        return frozenset()

    def decode(self, spec, values, cin, cout, stage, min_group_size) -> Block:
        return Block(self.name, cin, cout, stride=1, stage=stage)

    def validate(self, block: Block, fail) -> None:
        if block.stride != 1 or block.input_filters != block.output_filters:
            fail("type", "a skipped block must keep its shape (stride 1, input = output filters)")
        if block.kernel_size is not None or block.groups is not None:
            fail("kernel_size", "a skipped block has no conv: set kernel_size and groups to null")

    def lower(self, block: Block) -> tuple[Node, ...]:
        return ()


for _kind in (DepthwiseIBN(), FusedIBN(), GroupConvIBN(), GroupedIBN(), Skip()):
    register_block_type(_kind)
