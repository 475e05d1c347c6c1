"""Named architectures: MobileNetEdgeTPU v1, the MobileNetEdgeTPUv2 family and the
TuNAS multi-hardware models MobileNet-Multi-AVG / -MAX.

Written from the published block semantics (tensorflow/models
`official/projects/edgetpu/vision/modeling`): v1 is the
`mobilenet_edgetpu` default block list (width 1.0); v2 Tiny/XS/S/M/L are the
v2 topology with each model's widths, stem and head; the v2 default
`ModelConfig` block list (kernel 5 in the late groups) is
`mobilenet_edgetpu_v2_reference_config`. A published "fused_grouped" block is
our `gc_ibn`, with groups = expanded filters / group_base_size.

MobileNet-Multi-AVG/MAX ("Discovering Multi-Hardware Mobile Models via
Architecture Search", Chu et al. 2020) are google-research tunas
`mobile_search_space_v3.mobilenet_multi_avg` / `mobilenet_multi_max`: ReLU
depthwise IBNs only, no squeeze-excite; each published absolute expansion
size is an integer multiple of the block's input filters, written here as
the expansion ratio. Their head is conv 960 -> pool -> a 1x1 conv of 1280
(bias, no batch norm) -> logits; a `ModelSpec` head is conv -> pool ->
logits, so the preset stops at the pool and the post-pool conv is added for
costing by `cost_models.reference_networks.with_pre_logits`.
"""

from __future__ import annotations

from collections.abc import Callable

from search_spaces.blocks import Block
from search_spaces.errors import SpecError
from search_spaces.ibn import BlockType
from search_spaces.model_spec import ModelSpec

DW, FUSED, GC, SKIP = BlockType.DW_IBN, BlockType.FUSED_IBN, BlockType.GC_IBN, BlockType.SKIP

# One row per repeated block run: (type, output filters, kernel, repeats,
# expansion, stride, residual allowed). "Residual allowed" is the published
# `id_skip`; a residual exists only where stride is 1 and widths match.
Row = tuple[BlockType, int, int, int, int, int, bool]


def _build(stem_filters: int, stem_kernel: int, rows: list[Row], head: int,
           group_base_size: int = 64, stage_of_row: list[int] | None = None) -> ModelSpec:
    blocks: list[Block] = []
    cin = stem_filters
    for r, (block_type, cout, kernel, repeats, e, stride, id_skip) in enumerate(rows):
        for rep in range(repeats):
            s = stride if rep == 0 else 1
            residual = id_skip and s == 1 and cin == cout
            stage = stage_of_row[r] if stage_of_row else r
            if block_type == SKIP:  # an identity position, so the model is a space member
                block = Block(SKIP, cin, cout, 1, None, 1, 1, None, False, stage)
            elif block_type == FUSED and e == 1:
                block = Block(FUSED, cin, cout, s, None, 1, 1, None, residual, stage)
            elif block_type == DW:
                block = Block(DW, cin, cout, s, kernel, e, e, cin * e, residual, stage)
            elif block_type == GC:
                block = Block(GC, cin, cout, s, kernel, e, 1, cin * e // group_base_size,
                              residual, stage)
            else:
                block = Block(FUSED, cin, cout, s, kernel, e, 1, 1, residual, stage)
            blocks.append(block)
            cin = cout
    return ModelSpec(stem_filters, stem_kernel, 2, tuple(blocks), head).validate()


def mobilenet_edgetpu_v1() -> ModelSpec:
    """MobileNetEdgeTPU (v1), width 1.0: 4,092,713 params at 224 px / 1001 classes."""
    rows: list[Row] = [
        (FUSED, 16, 3, 1, 1, 1, True),   # 1x1 projection only
        (FUSED, 32, 3, 1, 8, 2, True),
        (FUSED, 32, 3, 3, 4, 1, True),   # 'no_depthwise' = a 3x3 full expansion
        (FUSED, 48, 3, 1, 8, 2, True),
        (FUSED, 48, 3, 3, 4, 1, True),
        (DW, 96, 3, 1, 8, 2, True),
        (DW, 96, 3, 3, 4, 1, True),
        (DW, 96, 3, 1, 8, 1, False),
        (DW, 96, 3, 3, 4, 1, True),
        (DW, 160, 5, 1, 8, 2, True),
        (DW, 160, 5, 3, 4, 1, True),
        (DW, 192, 3, 1, 8, 1, True),
    ]
    return _build(32, 3, rows, 1280)


def _v2_topology(filters: tuple[int, ...], gc_overrides: tuple[tuple[int, int], ...] = ()
                 ) -> tuple[list[Row], list[int]]:
    """The v2 block-group topology (`mobilenet_edgetpu_v2_model_blocks.py`), per-group
    widths."""
    groups = [
        [(FUSED, 3, 1, 1)],
        [(FUSED, 3, 8, 2), (GC, 3, 4, 1)],
        [(FUSED, 3, 8, 2), (GC, 3, 4, 1), (FUSED, 3, 4, 1), (GC, 3, 4, 1)],
        [(FUSED, 3, 8, 2), (DW, 3, 4, 1), (DW, 3, 4, 1), (DW, 3, 4, 1)],
        [(DW, 3, 8, 1), (DW, 3, 4, 1), (DW, 3, 4, 1), (DW, 3, 4, 1)],
        [(DW, 3, 8, 2), (DW, 3, 4, 1), (DW, 3, 4, 1), (DW, 3, 4, 1)],
        [(DW, 3, 8, 1)],
    ]
    for g, b in gc_overrides:
        _, k, e, s = groups[g][b]
        groups[g][b] = (GC, k, e, s)
    rows: list[Row] = []
    stages: list[int] = []
    for g, blocks in enumerate(groups):
        for block_type, k, e, s in blocks:
            rows.append((block_type, filters[g], k, 1, e, s, True))
            stages.append(g)
    return rows, stages


def _v2(filters: tuple[int, ...], stem: int, stem_kernel: int, head: int,
        group_base_size: int = 64, gc_overrides: tuple[tuple[int, int], ...] = ()) -> ModelSpec:
    rows, stages = _v2_topology(filters, gc_overrides)
    return _build(stem, stem_kernel, rows, head, group_base_size, stages)


def mobilenet_edgetpu_v2_tiny() -> ModelSpec:
    return _v2((16, 32, 48, 80, 112, 160, 192), 32, 5, 1280,
               gc_overrides=((2, 0), (2, 2), (3, 0)))


def mobilenet_edgetpu_v2_xs() -> ModelSpec:
    return _v2((16, 32, 48, 96, 144, 160, 192), 32, 5, 1280)


def mobilenet_edgetpu_v2_s() -> ModelSpec:
    return _v2((24, 48, 64, 128, 160, 192, 256), 64, 5, 1280)


def mobilenet_edgetpu_v2_m() -> ModelSpec:
    return _v2((32, 64, 80, 160, 192, 240, 320), 64, 5, 1344)


def mobilenet_edgetpu_v2_l() -> ModelSpec:
    return _v2((32, 64, 96, 192, 240, 256, 384), 64, 7, 1408, group_base_size=128)


def mobilenet_edgetpu_v2_reference_config() -> ModelSpec:
    """The v2 default `ModelConfig` block list: 6,069,657 params at 224 px / 1001 classes."""
    rows: list[Row] = [
        (FUSED, 24, 3, 1, 1, 1, True),
        (FUSED, 48, 3, 1, 8, 2, True),
        (GC, 48, 3, 1, 4, 1, True),
        (FUSED, 64, 3, 1, 8, 2, True),
        (GC, 64, 3, 1, 4, 1, True),
        (FUSED, 64, 3, 1, 4, 1, True),
        (GC, 64, 3, 1, 4, 1, True),
        (FUSED, 128, 3, 1, 8, 2, True),
        (DW, 128, 3, 3, 4, 1, True),
        (DW, 160, 3, 1, 8, 1, True),
        (DW, 160, 3, 3, 4, 1, True),
        (DW, 192, 5, 1, 8, 2, True),
        (DW, 192, 5, 3, 4, 1, True),
        (DW, 256, 5, 1, 8, 1, True),
    ]
    return _build(64, 5, rows, 1280)


def mobilenet_multi_avg() -> ModelSpec:
    """MobileNet-Multi-AVG body (tunas `mobilenet_multi_avg`); see the module docstring."""
    rows: list[Row] = [
        (DW, 32, 3, 1, 3, 2, False), (DW, 32, 3, 1, 2, 1, True),
        (DW, 64, 5, 1, 5, 2, False), (DW, 64, 3, 1, 3, 1, True), (DW, 64, 3, 1, 2, 1, True),
        (DW, 64, 3, 1, 3, 1, True),
        (DW, 128, 5, 1, 6, 2, False), (DW, 128, 3, 3, 3, 1, True),
        (DW, 160, 3, 1, 6, 1, False), (DW, 160, 3, 1, 4, 1, True),
        (DW, 192, 3, 1, 6, 2, False), (DW, 192, 5, 3, 4, 1, True),
    ]
    return _build(32, 3, rows, 960, stage_of_row=[0, 0, 1, 1, 1, 1, 2, 2, 3, 3, 4, 4])


def mobilenet_multi_max() -> ModelSpec:
    """MobileNet-Multi-MAX body (tunas `mobilenet_multi_max`); see the module docstring."""
    rows: list[Row] = [
        (DW, 32, 3, 1, 3, 2, False), (SKIP, 32, 0, 1, 1, 1, False),
        (DW, 64, 5, 1, 6, 2, False), (DW, 64, 3, 2, 2, 1, True), (SKIP, 64, 0, 1, 1, 1, False),
        (DW, 128, 5, 1, 6, 2, False), (DW, 128, 3, 1, 4, 1, True), (DW, 128, 3, 2, 3, 1, True),
        (DW, 128, 3, 1, 6, 1, False), (DW, 128, 3, 1, 3, 1, True),
        (DW, 160, 3, 1, 6, 2, False), (DW, 160, 5, 1, 4, 1, True), (DW, 160, 3, 1, 5, 1, True),
        (DW, 160, 5, 1, 4, 1, True),
    ]
    return _build(32, 3, rows, 960,
                  stage_of_row=[0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 4, 4, 4, 4])


PRESETS: dict[str, Callable[[], ModelSpec]] = {
    "mobilenet_edgetpu_v1": mobilenet_edgetpu_v1,
    "mobilenet_edgetpu_v2_tiny": mobilenet_edgetpu_v2_tiny,
    "mobilenet_edgetpu_v2_xs": mobilenet_edgetpu_v2_xs,
    "mobilenet_edgetpu_v2_s": mobilenet_edgetpu_v2_s,
    "mobilenet_edgetpu_v2_m": mobilenet_edgetpu_v2_m,
    "mobilenet_edgetpu_v2_l": mobilenet_edgetpu_v2_l,
    "mobilenet_edgetpu_v2_reference_config": mobilenet_edgetpu_v2_reference_config,
    "mobilenet_multi_avg": mobilenet_multi_avg,
    "mobilenet_multi_max": mobilenet_multi_max,
}


def _segmentation() -> None:
    # The segmentation presets live in their own module (it imports this one).
    from search_spaces.presets_segmentation import PRESET_SETTINGS as settings
    from search_spaces.presets_segmentation import SEGMENTATION_PRESETS

    PRESETS.update(SEGMENTATION_PRESETS)
    PRESET_SETTINGS.update(settings)


# Preset name -> what it is deployed with when not classification at the space's
# defaults: {"image_size", "task" (a tasks.get_task(**task) JSON)}.
PRESET_SETTINGS: dict[str, dict] = {}
_segmentation()
# The presets deployed as classifiers (the others: PRESET_SETTINGS's tasks), sorted.
CLASSIFICATION_PRESETS = sorted(set(PRESETS) - set(PRESET_SETTINGS))


def get_preset(name: str) -> ModelSpec:
    if name not in PRESETS:
        raise SpecError(f"preset {name!r} is unknown; choose one of {sorted(PRESETS)}")
    return PRESETS[name]()
