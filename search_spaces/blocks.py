"""The decoded `Block`: one block position of a concrete network, and the helpers
that size it (`round_filters`, `realize_groups`).

A block's *type* (`block_type`, a registered name: `search_spaces.block_types`;
the built-in IBN types in `search_spaces.ibn`) says what it computes; this
module holds the fields every type shares and the type-independent checks.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from search_spaces.block_types import block_type_names, get_block_type
from search_spaces.errors import SpecError


def round_filters(filters: float, divisor: int = 8, min_depth: int | None = None) -> int:
    """Round a filter count to a multiple of `divisor` (MobileNet/EfficientNet rule).

    Rounds to nearest, never below `min_depth` (default: divisor), and never
    more than 10% below the requested value.
    """
    min_depth = min_depth or divisor
    rounded = max(min_depth, int(filters + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * filters:
        rounded += divisor
    return int(rounded)


def realize_groups(
    conv_in_channels: int, conv_out_channels: int, group_size: int, min_group_size: int = 1
) -> int:
    """The group count a requested group size turns into for a given conv.

    The count must divide both channel counts. When `conv_out_channels /
    group_size` does (the published models' case) that is the answer;
    otherwise it is the valid count whose group size (output channels per
    group) is nearest the request in log scale, ties to fewer groups. Counts
    whose group size would fall below `min_group_size` are not used, so that
    with few channels the conv degrades to a full conv, never below the
    space's minimum. Every combination of decisions therefore decodes to a
    valid network.
    """
    common = math.gcd(conv_in_channels, conv_out_channels)
    candidates = [
        g for g in range(1, common + 1)
        if common % g == 0 and conv_out_channels // g >= min_group_size
    ] or [1]
    target = math.log(group_size)
    return min(candidates, key=lambda g: (abs(math.log(conv_out_channels / g) - target), g))


@dataclasses.dataclass(frozen=True)
class Block:
    """One decoded block of a concrete network.

    `kernel_size` and `groups` describe the kxk conv and are None where the
    block has none (skip; fused_ibn with e = 1). `stage` is the index of the
    block group the block belongs to (used for display and reports).
    """

    block_type: str
    input_filters: int
    output_filters: int
    stride: int = 1
    kernel_size: int | None = None
    expansion_ratio: int = 1
    pointwise_expansion: int = 1
    groups: int | None = None
    residual: bool = False
    stage: int = 0

    # ---- derived quantities -------------------------------------------------
    @property
    def skipped(self) -> bool:
        """True for a block that lowers to no layer (the identity)."""
        return not get_block_type(self.block_type).lower(self)

    @property
    def expanded_filters(self) -> int:
        """Width of the block's widest tensor (F = C * e)."""
        return self.input_filters * self.expansion_ratio

    @property
    def group_expansion(self) -> int:
        """e2 = e / e1, the expansion done by the kxk (group) conv."""
        return self.expansion_ratio // self.pointwise_expansion

    @property
    def has_kxk_conv(self) -> bool:
        return self.kernel_size is not None

    @property
    def kxk_in_channels(self) -> int:
        """Input channels of the kxk conv (after any 1x1 expansion)."""
        return self.input_filters * self.pointwise_expansion

    @property
    def group_size(self) -> int | None:
        """Output channels per group of the kxk conv."""
        if self.groups is None:
            return None
        return self.expanded_filters // self.groups

    # ---- validation ---------------------------------------------------------
    def validate(self, where: str = "block") -> Block:
        """Raise SpecError naming the field if the block is not buildable."""

        def fail(field: str, problem: str) -> None:
            raise SpecError(f"{where}.{field}: {problem}")

        if str(self.block_type) not in block_type_names():
            fail("type", f"{self.block_type!r} is unknown; use one of {block_type_names()}")
        for field in ("input_filters", "output_filters", "expansion_ratio", "pointwise_expansion"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                fail(field, f"{value!r} must be a positive integer")
        if self.stride not in (1, 2):
            fail("stride", f"{self.stride!r} must be 1 or 2")
        if self.expansion_ratio % self.pointwise_expansion:
            fail(
                "pointwise_expansion",
                f"{self.pointwise_expansion} does not divide expansion_ratio "
                f"{self.expansion_ratio}; e = e1 * e2 needs e1 | e",
            )
        get_block_type(self.block_type).validate(self, fail)
        if self.residual and (self.stride != 1 or self.input_filters != self.output_filters):
            fail("residual", "a residual needs stride 1 and input filters = output filters")
        return self

    # ---- JSON ---------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "type": str(self.block_type),
            "stage": self.stage,
            "input_filters": self.input_filters,
            "output_filters": self.output_filters,
            "stride": self.stride,
            "kernel_size": self.kernel_size,
            "expansion_ratio": self.expansion_ratio,
            "pointwise_expansion": self.pointwise_expansion,
            "group_expansion": self.group_expansion,
            "groups": self.groups,
            "group_size": self.group_size,
            "residual": self.residual,
            "skipped": self.skipped,
        }

    @classmethod
    def from_json(cls, data: Any, where: str = "block") -> Block:
        """Parse and validate; derived keys, if present, must agree."""
        if not isinstance(data, dict):
            raise SpecError(f"{where}: expected a JSON object, got {type(data).__name__}")
        required = ("type", "input_filters", "output_filters", "stride")
        missing = [k for k in required if k not in data]
        if missing:
            raise SpecError(
                f"{where}: missing key(s) {missing}; every block needs {list(required)}")
        known = {
            "type", "stage", "input_filters", "output_filters", "stride", "kernel_size",
            "expansion_ratio", "pointwise_expansion", "group_expansion", "groups",
            "group_size", "residual", "skipped",
        }
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpecError(f"{where}: unknown key(s) {unknown}; allowed keys are {sorted(known)}")
        if data["type"] not in block_type_names():
            raise SpecError(
                f"{where}.type: {data['type']!r} is unknown; use one of {block_type_names()}"
            )
        block = cls(
            block_type=data["type"],
            input_filters=data["input_filters"],
            output_filters=data["output_filters"],
            stride=data["stride"],
            kernel_size=data.get("kernel_size"),
            expansion_ratio=data.get("expansion_ratio", 1),
            pointwise_expansion=data.get("pointwise_expansion", 1),
            groups=data.get("groups"),
            residual=bool(data.get("residual", False)),
            stage=data.get("stage", 0),
        ).validate(where)
        for key in ("group_expansion", "group_size", "skipped"):
            if key in data and data[key] != getattr(block, key):
                raise SpecError(
                    f"{where}.{key}: {data[key]!r} disagrees with the other fields "
                    f"(they give {getattr(block, key)!r}); fix or drop it"
                )
        return block
