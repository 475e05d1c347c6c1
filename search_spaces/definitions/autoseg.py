"""`autoseg` and `autoseg_micro`: Autoseg-EdgeTPU's search space, a backbone of IBN layers
with the BiFPN segmentation head's settings searched with it.

Decisions (the Autoseg-EdgeTPU paper's): per IBN layer the depthwise kernel in
{3, 5, 7}; per block the expansion in {3, 6} (the first block fixed at 1); per
stage a channel multiplier in {1/4, 1/2, 3/4, 1, 2} of the stage's base width
(TuNAS-style per-stage width decisions; rounded to multiples of 4, as the
released Autoseg backbones' `depth_divisor`); in the head
(`SearchSpace.head_task`, read by the segmentation task with `head='bifpn'`)
the number of BiFPN repeats and the minimum feature level. Head choices are
FILTERS decisions ordered smallest head first, so filter warmup trains the
largest (most repeats, lowest level).

`autoseg` follows the layout of the released backbones
(tensorflow/models `official/projects/edgetpu/vision/modeling/
mobilenet_edgetpu_v2_model_blocks.py`, `autoseg_edgetpu_backbone_*`: 3x3/2 stem
of 32, stages at strides 2..32 with MobileNetEdgeTPUv2-S's base widths) at
512 px and 32 classes. `autoseg_micro` is the same kind of space at 32 px, small
enough for a CPU search on the digits: four stages to stride 16, five blocks, width
multipliers {1/2, 1} only.
"""

from search_spaces.decisions import FILTERS, OneOf
from search_spaces.definitions.common import filter_choices
from search_spaces.space import BlockSpec, SearchSpace, StageSpec

MULTIPLIERS = (0.25, 0.5, 0.75, 1.0, 2.0)
KERNELS = (3, 5, 7)
EXPANSIONS = (3, 6)
# autoseg_micro's: two of the multipliers, so a CPU supernet compiles in minutes (every
# width pair of neighbouring stages is a switch branch).
MICRO_MULTIPLIERS = (0.5, 1.0)


def _block(stride: int, first: bool = False) -> BlockSpec:
    return BlockSpec(op="dw_ibn", kernel_size=OneOf(KERNELS),
                     expansion_ratio=1 if first else OneOf(EXPANSIONS, FILTERS),
                     stride=stride)


def _stages(layout: tuple[tuple[int, int, int], ...], multipliers=MULTIPLIERS
            ) -> tuple[StageSpec, ...]:
    """(base width, blocks, first stride) per stage -> stages; block 0 of stage 0 has
    expansion 1."""
    out = []
    for s, (width, count, stride) in enumerate(layout):
        blocks = tuple(_block(stride if b == 0 else 1, first=(s == 0 and b == 0))
                       for b in range(count))
        out.append(StageSpec(filter_choices(width, multipliers, 4), blocks))
    return tuple(out)


def head_decisions(repeats: tuple[int, ...], min_levels: tuple[int, ...]):
    """The BiFPN settings a space searches (smallest head first: fewest repeats, highest
    minimum level)."""
    return (("bifpn_num_repeats", OneOf(tuple(sorted(repeats)), FILTERS)),
            ("bifpn_min_level", OneOf(tuple(sorted(min_levels, reverse=True)), FILTERS)))


def autoseg() -> SearchSpace:
    return SearchSpace(
        name="autoseg",
        stem_filters=32,
        stem_kernel_size=3,
        stem_stride=2,
        stages=_stages(((24, 1, 1), (48, 2, 2), (64, 4, 2), (128, 4, 2), (160, 4, 1),
                        (192, 4, 2), (256, 1, 1))),
        head_filters=1280,
        default_image_size=512,
        default_num_classes=32,
        head_task=head_decisions((1, 2, 3, 4), (3, 4)),
        description="Autoseg-EdgeTPU: IBN kernels, expansions, stage widths and the "
                    "BiFPN head's repeats and minimum level (512 px, 32 classes).",
    )


def autoseg_micro() -> SearchSpace:
    return SearchSpace(
        name="autoseg_micro",
        stem_filters=16,
        stem_kernel_size=3,
        stem_stride=2,
        stages=_stages(((16, 1, 1), (24, 1, 2), (32, 2, 2), (48, 1, 2)), MICRO_MULTIPLIERS),
        head_filters=64,
        default_image_size=32,
        default_num_classes=11,
        head_task=head_decisions((1, 2), (2, 3)),
        description="The autoseg space at 32 px for CPU searches on seg_digits.",
    )
