"""`tunas-jax show`: an architecture's block table, trainable params and MACs."""

from __future__ import annotations

import argparse
import json

from tunas_jax.summary import format_table, resolve_architecture, summarize


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("show", help="show an architecture (preset or JSON file)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--preset", help="a named architecture, e.g. mobilenet_edgetpu_v2_s")
    source.add_argument("--architecture", metavar="FILE", help="an architecture JSON file")
    parser.add_argument("--space", help="place the preset in this space / check the file's space")
    parser.add_argument("--image-size", type=int, help="input resolution (default: the space's)")
    parser.add_argument("--num-classes", type=int, help="classes (default: the space's)")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    arch = resolve_architecture(args.preset, args.architecture, args.space)
    summary = summarize(arch, args.image_size, args.num_classes)
    print(json.dumps(summary, indent=2) if args.format == "json" else format_table(summary))
    return 0
