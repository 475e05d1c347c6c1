"""`tunas-jax analyze-blocks`: DW- vs Fused- vs GC-IBN latency/params/utilization per shape.

    tunas-jax analyze-blocks --target pixel6_edgetpu --out runs/blocks

Prints the table and writes DIR/blocks_<target>.png (latency vs params per
tensor shape) and DIR/blocks_<target>.json (the rows).
"""

from __future__ import annotations

import argparse
import dataclasses
import os

from cost_models.block_analyzer import analyze, format_table, plot
from search_spaces.architecture import write_json_atomic


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "analyze-blocks", help="compare Depthwise-, Fused- and GC-IBNs across tensor shapes",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="pixel6_edgetpu", help="hardware target")
    parser.add_argument("--out", default="block_analysis",
                        help="directory for the PNG plot and the JSON rows")
    parser.add_argument("--expansion", type=int, default=4, help="IBN expansion ratio")
    parser.add_argument("--kernel-size", type=int, default=3, help="kxk conv kernel size")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    rows = analyze(args.target, expansion=args.expansion, kernel_size=args.kernel_size)
    print(format_table(rows))
    png = os.path.join(args.out, f"blocks_{args.target}.png")
    plot(rows, png, title=f"IBN variants on {args.target} (e={args.expansion}, "
                          f"k={args.kernel_size})")
    write_json_atomic(os.path.join(args.out, f"blocks_{args.target}.json"),
                      {"target": args.target, "expansion": args.expansion,
                       "kernel_size": args.kernel_size,
                       "rows": [dataclasses.asdict(r) for r in rows]})
    print(f"wrote {png}")
    return 0
