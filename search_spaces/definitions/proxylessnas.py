"""`proxylessnas`: TuNAS's reproduction of the ProxylessNAS space (Bender et al. 2020;
google-research `tunas/proxylessnas_search_space.py`).

Stem 3x3/2 of 32; a depthwise-separable conv of 16 with kernel {3, 5, 7};
21 depthwise IBNs in six stages of widths 32, 40, 80, 96, 192, 320 (4, 4, 4,
4, 4, 1 blocks; stride 2 at the start of stages 1, 2, 3 and 5), each with
kernel {3, 5, 7} and expansion {3, 6}; the 15 non-first blocks of each stage
may be skipped (zero op inside the residual = identity); head 1x1 of 1280.
"""

from search_spaces.decisions import FILTERS, OneOf
from search_spaces.space import BlockSpec, SearchSpace, StageSpec

# (width, number of blocks, stride of the first block)
STAGES = ((32, 4, 2), (40, 4, 2), (80, 4, 2), (96, 4, 1), (192, 4, 2), (320, 1, 1))


def proxylessnas() -> SearchSpace:
    stages = [StageSpec(16, (BlockSpec(op="dw_ibn", kernel_size=OneOf((3, 5, 7)),
                                       expansion_ratio=1, pointwise_expansion=1),))]
    for width, num_blocks, stride in STAGES:
        stages.append(StageSpec(width, tuple(
            BlockSpec(
                op=OneOf(("dw_ibn", "skip")) if b > 0 else "dw_ibn",
                kernel_size=OneOf((3, 5, 7)),
                expansion_ratio=OneOf((3, 6), FILTERS),
                pointwise_expansion=1,
                stride=stride if b == 0 else 1,
            )
            for b in range(num_blocks)
        )))
    return SearchSpace(
        name="proxylessnas",
        stem_filters=32,
        stem_kernel_size=3,
        stem_stride=2,
        stages=tuple(stages),
        head_filters=1280,
        default_image_size=224,
        default_num_classes=1001,
        description="TuNAS's ProxylessNAS space: kernel {3,5,7}, expansion {3,6}, skip.",
    )
