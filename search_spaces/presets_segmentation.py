"""The released segmentation models: Autoseg-EdgeTPU XS/S/M and DeepLabv3+ on
MobileNetEdgeTPUv2 XS/S/M (ADE20K, 32 classes, 512 px), each a backbone `ModelSpec`
plus the segmentation task settings it is deployed with (`PRESET_SETTINGS`).

Written from tensorflow/models `official/projects/edgetpu/vision`:
- Autoseg backbones: `modeling/mobilenet_edgetpu_v2_model_blocks.py`,
  `autoseg_edgetpu_backbone_{xs,s,m}` (block lists with widths rounded to
  multiples of 4, their `depth_divisor`: 18 becomes 20); the BiFPN head:
  `tasks/semantic_segmentation.py` (`AutosegEdgeTPU`: levels 3..8, 96 filters,
  4 repeats, sum fusion, ReLU6, separable 3x3 convs) with
  `modeling/heads/bifpn_head.py` and `configs/semantic_segmentation_searched_config.py`.
- DeepLabv3+: `configs/semantic_segmentation_config.py`
  (`seg_deeplabv3plus_ade20k_32`: ASPP on backbone level 4 with depthwise
  convs, rates 5/10/15, 128 filters; head with level-3 low-level fusion of 48
  filters and two depthwise-separable convs of 256).
The backbones run with `backbone_only` (`modeling/backbones/mobilenet_edgetpu.py`):
no 1x1 top conv, so `head_filters = 0`; their feature levels are the stem
(level "0", stride 2) and the end of every stride (levels "1".."4" = strides
4..32), so DeepLab's level 4 / low level 3 are our `stride_32` / `stride_16`.
The DeepLab configs also freeze backbone layers of >= 500 filters
(`freeze_large_filters`) while fine-tuning; that is a training choice, the
layers still have their parameters, and they are counted here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from search_spaces.blocks import round_filters
from search_spaces.model_spec import ModelSpec
from search_spaces.presets import (
    DW,
    FUSED,
    Row,
    _build,
    mobilenet_edgetpu_v2_m,
    mobilenet_edgetpu_v2_s,
    mobilenet_edgetpu_v2_xs,
)

IMAGE_SIZE_PX = 512
NUM_CLASSES = 32

# Per released block: (type, output filters, kernel, repeats, expansion, stride, id_skip),
# widths before the backbone's rounding. A published `fused_expand` block is our
# fused_ibn (kernel 1 included); a depthwise block with expansion 1 is a dw_ibn
# without its 1x1 expansion; a fused block with expansion 1 is the projection only.
_AUTOSEG_ROWS: dict[str, list[Row]] = {
    "xs": [
        (FUSED, 12, 3, 1, 1, 1, True), (FUSED, 24, 3, 1, 6, 2, True),
        (DW, 24, 3, 1, 3, 1, True), (FUSED, 60, 3, 1, 3, 2, True),
        (DW, 40, 3, 1, 6, 1, True), (DW, 40, 5, 1, 3, 2, True), (DW, 40, 3, 1, 6, 1, True),
        (FUSED, 120, 3, 1, 6, 1, True), (DW, 168, 3, 1, 6, 1, True),
        (DW, 84, 5, 1, 6, 1, True), (DW, 84, 5, 1, 3, 1, True),
        (DW, 84, 5, 1, 1, 2, False), (FUSED, 288, 1, 1, 6, 1, False),
        (DW, 288, 5, 1, 1, 1, False), (FUSED, 96, 1, 1, 3, 1, False),
        (DW, 96, 5, 1, 1, 1, False), (FUSED, 96, 1, 1, 6, 1, False),
        (DW, 96, 5, 1, 1, 1, False), (FUSED, 96, 1, 1, 6, 1, False),
        (DW, 480, 5, 1, 3, 1, True),
    ],
    "s": [
        (FUSED, 12, 3, 1, 1, 1, True), (FUSED, 36, 3, 1, 6, 2, True),
        (DW, 18, 5, 1, 3, 1, True), (FUSED, 60, 5, 1, 6, 2, True),
        (DW, 60, 3, 1, 3, 1, True), (DW, 120, 5, 1, 6, 2, True),
        (DW, 120, 3, 1, 3, 1, True), (DW, 120, 5, 1, 6, 1, True),
        (DW, 112, 3, 1, 6, 1, True), (DW, 112, 5, 2, 6, 1, True),
        (DW, 112, 5, 1, 1, 2, False), (FUSED, 192, 1, 1, 6, 1, False),
        (DW, 192, 5, 1, 1, 1, False), (FUSED, 96, 1, 1, 6, 1, False),
        (DW, 96, 5, 1, 3, 1, True), (DW, 96, 5, 1, 1, 1, False),
        (FUSED, 192, 1, 1, 6, 1, False), (DW, 192, 5, 1, 1, 1, False),
        (FUSED, 160, 1, 1, 3, 1, False),
    ],
    "m": [
        (DW, 16, 5, 1, 1, 1, True), (FUSED, 36, 3, 1, 6, 2, True),
        (DW, 36, 3, 1, 3, 1, True), (FUSED, 60, 3, 1, 6, 2, True),
        (DW, 60, 3, 1, 6, 1, True), (FUSED, 120, 5, 1, 6, 2, True),
        (DW, 120, 5, 1, 6, 1, True), (FUSED, 80, 3, 1, 6, 1, True),
        (DW, 168, 3, 1, 6, 1, True), (DW, 168, 5, 1, 6, 1, True),
        (DW, 168, 5, 1, 1, 1, False), (FUSED, 168, 1, 1, 6, 1, False),
        (DW, 168, 3, 1, 1, 2, False), (FUSED, 192, 1, 1, 3, 1, False),
        (DW, 192, 5, 1, 1, 1, False), (FUSED, 288, 1, 1, 6, 1, False),
        (DW, 288, 5, 1, 1, 1, False), (FUSED, 96, 1, 1, 6, 1, False),
        (DW, 96, 5, 1, 1, 1, False), (FUSED, 192, 1, 1, 3, 1, False),
        (DW, 192, 5, 1, 1, 1, False), (FUSED, 320, 1, 1, 3, 1, False),
    ],
}

_BIFPN = {"head": "bifpn", "bifpn_min_level": 3, "bifpn_max_level": 8,
          "bifpn_num_filters": 96, "bifpn_num_repeats": 4}
_DEEPLAB = {"head": "deeplab", "aspp_channels": 128, "atrous_rates": [5, 10, 15],
            "aspp_endpoint": "stride_32", "low_level_endpoint": "stride_16",
            "low_level_channels": 48, "decoder_channels": 256, "num_decoder_convs": 2}


def autoseg_backbone(size: str) -> ModelSpec:
    rows = [(t, round_filters(c, 4), k, r, e, s, skip)
            for t, c, k, r, e, s, skip in _AUTOSEG_ROWS[size]]
    return _build(32, 3, rows, 0)


def _settings(head: dict[str, Any]) -> dict[str, Any]:
    return {"image_size": IMAGE_SIZE_PX,
            "task": {"name": "segmentation", "num_classes": NUM_CLASSES, **head}}


SEGMENTATION_PRESETS = {
    "autoseg_edgetpu_xs": lambda: autoseg_backbone("xs"),
    "autoseg_edgetpu_s": lambda: autoseg_backbone("s"),
    "autoseg_edgetpu_m": lambda: autoseg_backbone("m"),
    "deeplabv3plus_mobilenet_edgetpu_v2_xs":
        lambda: dataclasses.replace(mobilenet_edgetpu_v2_xs(), head_filters=0),
    "deeplabv3plus_mobilenet_edgetpu_v2_s":
        lambda: dataclasses.replace(mobilenet_edgetpu_v2_s(), head_filters=0),
    "deeplabv3plus_mobilenet_edgetpu_v2_m":
        lambda: dataclasses.replace(mobilenet_edgetpu_v2_m(), head_filters=0),
}
# Preset name -> {"image_size", "task" (a `tasks.get_task(**task)` JSON)}.
PRESET_SETTINGS = {name: _settings(_BIFPN if name.startswith("autoseg") else _DEEPLAB)
                   for name in SEGMENTATION_PRESETS}
