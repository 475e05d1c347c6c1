"""`micro`: the full IBN vocabulary at 32x32, small enough to search on 2 CPU cores.

Stem 3x3/2 (32 -> 16 px), three stages ending at 4x4, 1x1 head of 128. Each
block picks its IBN type among all four, kernel {3, 5}, expansion {2, 4} and
group size {16, 32} (grouped_ibn splits its expansion with e1 = 2); non-first
blocks may be skipped; each stage picks its width from two choices. It is
the built-in default space.
"""

from search_spaces.decisions import FILTERS, OneOf
from search_spaces.space import BlockSpec, SearchSpace, StageSpec

ALL_OPS = ("dw_ibn", "fused_ibn", "gc_ibn", "grouped_ibn")


def _block(stride: int, skippable: bool) -> BlockSpec:
    return BlockSpec(
        op=OneOf((*ALL_OPS, "skip") if skippable else ALL_OPS),
        kernel_size=OneOf((3, 5)),
        expansion_ratio=OneOf((2, 4), FILTERS),
        pointwise_expansion=2,
        group_size=OneOf((16, 32)),
        stride=stride,
    )


def micro() -> SearchSpace:
    return SearchSpace(
        name="micro",
        stem_filters=16,
        stem_kernel_size=3,
        stem_stride=2,
        stages=(
            StageSpec(OneOf((16, 24), FILTERS), (_block(1, False),)),
            StageSpec(OneOf((24, 32), FILTERS), (_block(2, False), _block(1, True))),
            StageSpec(OneOf((48, 64), FILTERS), (_block(2, False), _block(1, True))),
        ),
        head_filters=128,
        default_image_size=32,
        default_num_classes=10,
        min_group_size=16,
        description="IBN variants at 32x32 px; the built-in default for CPU searches.",
    )
