"""`mobilenet_multi`: a multi-hardware space ("Discovering Multi-Hardware Mobile Models
via Architecture Search", Chu et al. 2020): ops that every target runs well.

The topology of TuNAS's MobileNet-Multi-AVG/MAX (google-research tunas
`mobile_search_space_v3.py`): a 3x3/2 stem of 32, five block groups of 2, 4,
4, 2 and 4 blocks (stride 2 at the start of groups 0, 1, 2 and 4), a 1x1 head
of 960. Only what the CPU, GPU, DSP and Edge TPU targets all run well: ReLU
everywhere, no squeeze-excite, no swish (a DSP penalizes both:
`cost_models.targets.pixel4_dsp`). Each block picks depthwise IBN, or in the
two high-resolution groups fused IBN (a full kxk conv: fast on the GPU, DSP
and Edge TPU, where depthwise convs use the wide units poorly); kernel
{3, 5}; expansion {2, ..., 6}; non-first blocks may be skipped (the
residual then is the identity). Each group picks its width among three
values that include both published models' widths. Group-conv IBNs are left
out: not every mobile runtime the targets stand for runs grouped convs
natively (an assumption of this space, not a measured fact). As in TuNAS,
the first block of a group has no residual even where shapes allow one.
MobileNet-Multi-AVG and -MAX are members (see `presets`), without their
post-pool 1x1 conv of 1280, which a space's head (conv -> pool -> logits)
does not have.
"""

from search_spaces.decisions import FILTERS, OneOf
from search_spaces.space import BlockSpec, SearchSpace, StageSpec

# (width choices, number of blocks, stride of the first block, ops) per block group.
GROUPS = (((24, 32, 40), 2, 2, ("dw_ibn", "fused_ibn")),
          ((48, 64, 80), 4, 2, ("dw_ibn", "fused_ibn")),
          ((96, 128, 160), 4, 2, ("dw_ibn",)),
          ((128, 160, 192), 2, 1, ("dw_ibn",)),
          ((160, 192, 240), 4, 2, ("dw_ibn",)))


def _block(ops: tuple[str, ...], stride: int, first: bool) -> BlockSpec:
    op_choices = ops if first else (*ops, "skip")
    return BlockSpec(
        op=OneOf(op_choices) if len(op_choices) > 1 else op_choices[0],
        kernel_size=OneOf((3, 5)),
        expansion_ratio=OneOf((2, 3, 4, 5, 6), FILTERS),
        pointwise_expansion=1,
        stride=stride,
        residual=not first,
    )


def mobilenet_multi() -> SearchSpace:
    stages = tuple(
        StageSpec(OneOf(widths, FILTERS), tuple(_block(ops, stride if b == 0 else 1, b == 0)
                                                for b in range(num_blocks)))
        for widths, num_blocks, stride, ops in GROUPS)
    return SearchSpace(
        name="mobilenet_multi",
        stem_filters=32,
        stem_kernel_size=3,
        stem_stride=2,
        stages=stages,
        head_filters=960,
        default_image_size=224,
        default_num_classes=1001,
        description="Multi-hardware space (ReLU, no SE): MobileNet-Multi-AVG/MAX topology.",
    )
