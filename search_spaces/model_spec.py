"""`ModelSpec`: the concrete network an architecture decodes to.

The IBN backbone family: stem (kxk conv, stride, ReLU) -> blocks -> head
(1x1 conv, ReLU); the task's head (e.g. classification's pool and logits)
comes on top (`tasks`). Every space of the family decodes to one of these,
and hand-written presets (MobileNetEdgeTPU v1/v2) are written as one
directly. `head_filters = 0` means no head conv: `features` is then the last
block's output (the released segmentation models use their backbones without
it). It is lowered once to a layer graph (`search_spaces.graph.lower`),
from which the models (`supernet/`) and network descriptions are built.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from search_spaces.blocks import Block
from search_spaces.errors import SpecError


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    stem_filters: int
    stem_kernel_size: int
    stem_stride: int
    blocks: tuple[Block, ...]
    head_filters: int
    # The task head's searched settings, (name, value) pairs (e.g. the BiFPN's
    # `bifpn_num_repeats`): empty for a space without head decisions.
    task_head: tuple[tuple[str, Any], ...] = ()

    def validate(self, where: str = "network") -> ModelSpec:
        for field in ("stem_filters", "stem_kernel_size", "stem_stride", "head_filters"):
            value = getattr(self, field)
            low = 0 if field == "head_filters" else 1  # 0: no head conv (module docstring)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise SpecError(f"{where}.{field}: {value!r} must be an integer >= {low}")
        if not self.blocks:
            raise SpecError(f"{where}.blocks: empty; a network needs at least one block")
        if not isinstance(self.task_head, tuple) or not all(
                isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str)
                for p in self.task_head):
            raise SpecError(f"{where}.head.task: {self.task_head!r} must be (name, value) "
                            "pairs")
        filters = self.stem_filters
        for i, block in enumerate(self.blocks):
            block.validate(f"{where}.blocks[{i}]")
            if block.input_filters != filters:
                raise SpecError(
                    f"{where}.blocks[{i}].input_filters: {block.input_filters} does not match "
                    f"the previous layer's {filters} output filters"
                )
            filters = block.output_filters
        return self

    @property
    def active_blocks(self) -> tuple[Block, ...]:
        return tuple(b for b in self.blocks if not b.skipped)

    def to_json(self) -> dict[str, Any]:
        return {
            "stem": {
                "filters": self.stem_filters,
                "kernel_size": self.stem_kernel_size,
                "stride": self.stem_stride,
            },
            "blocks": [b.to_json() for b in self.blocks],
            "head": {"filters": self.head_filters,
                     **({"task": dict(self.task_head)} if self.task_head else {})},
        }

    @classmethod
    def from_json(cls, data: Any, where: str = "network") -> ModelSpec:
        if not isinstance(data, dict):
            raise SpecError(f"{where}: expected a JSON object, got {type(data).__name__}")
        for key in ("stem", "blocks", "head"):
            if key not in data:
                raise SpecError(f"{where}: missing key {key!r}; a network has stem, blocks, head")
        stem, head = data["stem"], data["head"]
        if not isinstance(stem, dict) or not isinstance(head, dict):
            raise SpecError(f"{where}.stem / {where}.head must be JSON objects")
        if not isinstance(data["blocks"], list):
            raise SpecError(f"{where}.blocks must be a list of block objects")
        try:
            spec = cls(
                stem_filters=stem["filters"],
                stem_kernel_size=stem["kernel_size"],
                stem_stride=stem["stride"],
                blocks=tuple(
                    Block.from_json(b, f"{where}.blocks[{i}]") for i, b in enumerate(data["blocks"])
                ),
                head_filters=head["filters"],
                task_head=tuple(sorted(head.get("task", {}).items())),
            )
        except KeyError as err:
            raise SpecError(f"{where}: missing key {err}; see the architecture format") from None
        return spec.validate(where)
