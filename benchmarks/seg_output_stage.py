"""Simulated cost of segmentation's two output stages (exact: bilinear resize of the
logits to full resolution, then argmax; approximate: argmax at the logits'
resolution, then nearest-neighbour upsampling), on a preset backbone with the
DeepLabv3+ head of the released MobileNetEdgeTPUv2 segmentation models (ASPP on
stride 16 with 128 channels, rates 5/10/15, low-level stride 8 with 48 channels,
two separable decoder convs of 256, 32 classes).

    python benchmarks/seg_output_stage.py [--preset mobilenet_edgetpu_v2_s]
        [--image-size 512] [--target pixel6_edgetpu]
    python benchmarks/seg_output_stage.py --search W --image-size 32

A segmentation preset (`autoseg_edgetpu_*`, `deeplabv3plus_mobilenet_edgetpu_v2_*`)
brings its own head and settings (`search_spaces.presets.PRESET_SETTINGS`) instead;
`--search W` costs a segmentation search's found architecture (W/architecture.json,
its head decisions included) with that search's head settings (W/config.json) and the
dataset's classes (11 for seg_digits: `--num-classes`).

Prints both stages' end-to-end latency, the output stage's own layers and the
speed-up (exact / approximate).
"""

from __future__ import annotations

import argparse
import json
import os

import search_spaces
from cost_models.simulator import simulate
from search_spaces import get_preset
from search_spaces.presets import PRESET_SETTINGS
from tasks import Segmentation, describe

RELEASED_HEAD = {"num_classes": 32, "aspp_channels": 128, "low_level_channels": 48,
                 "decoder_channels": 256, "num_decoder_convs": 2, "atrous_rates": (5, 10, 15),
                 "aspp_endpoint": "stride_16", "low_level_endpoint": "stride_8"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mobilenet_edgetpu_v2_s")
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--target", default="pixel6_edgetpu")
    parser.add_argument("--search", default="", help="a segmentation search's workdir")
    parser.add_argument("--num-classes", type=int, default=11)
    args = parser.parse_args()
    name = args.preset
    if args.search:
        arch = search_spaces.load(os.path.join(args.search, "architecture.json"))
        with open(os.path.join(args.search, "config.json")) as f:
            settings = dict(json.load(f)["segmentation"], num_classes=args.num_classes)
        settings.update(dict(arch.spec.task_head))  # the searched head decisions
        spec, name = arch.spec, args.search
    elif args.preset in PRESET_SETTINGS:
        spec = get_preset(args.preset)
        settings = {k: v for k, v in PRESET_SETTINGS[args.preset]["task"].items()
                    if k != "name"}
    else:
        spec, settings = get_preset(args.preset), dict(RELEASED_HEAD)
    latency = {}
    for stage in ("exact", "approximate"):
        settings["output_stage"] = stage
        network = describe(spec, args.image_size, Segmentation(**settings))
        result = simulate(network, args.target)
        latency[stage] = result.latency_ms
        output_ms = sum(layer.latency_ps for layer in result.layers
                        if layer.name.startswith("output.")) / 1e9
        print(f"{stage:12s} end to end {result.latency_ms:9.4f} ms   output stage "
              f"{output_ms:8.4f} ms   ({name}, {args.image_size} px, {args.target})")
    print(f"speed-up (exact / approximate): {latency['exact'] / latency['approximate']:.2f}x")


if __name__ == "__main__":
    main()
