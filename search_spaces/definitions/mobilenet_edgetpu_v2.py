"""`mobilenet_edgetpu_v2`: the Edge TPU NAS classification space ("Searching for
Efficient Neural Architectures for On-Device ML on Edge TPUs", 2022; the released
models in tensorflow/models `official/projects/edgetpu`).

Built around the MobileNetEdgeTPUv2 topology: a 5x5/2 stem of 64, seven block
groups (1, 2, 4, 4, 4, 4, 1 blocks; stride 2 at the start of groups 1, 2, 3
and 5) and a 1x1 head of 1280. Each group picks a width multiplier of the
v2-S widths; each block picks its IBN type, kernel {3, 5, 7}, expansion
{4, 8}, e1 {2, 4} for grouped_ibn and group size {32, 64, 128} (minimum 32,
as in the paper); non-first blocks may be skipped. Fused-IBN is offered only
in groups 1-3: in the deep-channel, small-spatial late groups it is
expensive (the paper's §4.3), so, as the paper does, it is filtered out
there. Group 0 is a single expansion-1 block (fused = 1x1 projection, or a
depthwise-separable conv), as in the published models. MobileNetEdgeTPUv2-S
is a member (see `presets`).
"""

from search_spaces.decisions import FILTERS, OneOf
from search_spaces.definitions.common import filter_choices
from search_spaces.space import BlockSpec, SearchSpace, StageSpec

V2_S_FILTERS = (24, 48, 64, 128, 160, 192, 256)
MULTIPLIERS = (0.5, 0.75, 1.0, 1.25, 1.5)
EARLY_OPS = ("fused_ibn", "dw_ibn", "gc_ibn", "grouped_ibn")
LATE_OPS = ("dw_ibn", "gc_ibn", "grouped_ibn")
# (number of blocks, stride of the first block, ops) per block group 1..6.
GROUPS = ((2, 2, EARLY_OPS), (4, 2, EARLY_OPS), (4, 2, EARLY_OPS), (4, 1, LATE_OPS),
          (4, 2, LATE_OPS), (1, 1, LATE_OPS))


def _block(ops: tuple[str, ...], stride: int, skippable: bool) -> BlockSpec:
    return BlockSpec(
        op=OneOf((*ops, "skip") if skippable else ops),
        kernel_size=OneOf((3, 5, 7)),
        expansion_ratio=OneOf((4, 8), FILTERS),
        pointwise_expansion=OneOf((2, 4), FILTERS),
        group_size=OneOf((32, 64, 128)),
        stride=stride,
    )


def mobilenet_edgetpu_v2() -> SearchSpace:
    stages = [StageSpec(
        filter_choices(V2_S_FILTERS[0], MULTIPLIERS),
        (BlockSpec(op=OneOf(("fused_ibn", "dw_ibn")), kernel_size=OneOf((3, 5, 7)),
                   expansion_ratio=1, pointwise_expansion=1, group_size=64, stride=1),),
    )]
    for g, (num_blocks, stride, ops) in enumerate(GROUPS, start=1):
        blocks = tuple(_block(ops, stride if b == 0 else 1, b > 0) for b in range(num_blocks))
        stages.append(StageSpec(filter_choices(V2_S_FILTERS[g], MULTIPLIERS), blocks))
    return SearchSpace(
        name="mobilenet_edgetpu_v2",
        stem_filters=64,
        stem_kernel_size=5,
        stem_stride=2,
        stages=tuple(stages),
        head_filters=1280,
        default_image_size=224,
        default_num_classes=1001,
        min_group_size=32,
        description="Edge TPU NAS classification space around MobileNetEdgeTPUv2 (224 px).",
    )
