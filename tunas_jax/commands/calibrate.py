"""`tunas-jax calibrate`: fit a hardware target to published latencies and print the fit.

    tunas-jax calibrate --target pixel6_edgetpu            # fit, print before/after tables
    tunas-jax calibrate --target coral_edgetpu --no-fit    # the shipped target's fit only
    tunas-jax calibrate --target coral_edgetpu --print-values   # + lines to paste into
                                                           #   cost_models/targets/<T>.py
"""

from __future__ import annotations

import argparse

from cost_models.calibration import FIT_FIELDS, calibrate, evaluate, published_rows, target_source


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "calibrate", help="fit a hardware target's free parameters to published latencies",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="pixel6_edgetpu",
                        help="hardware target (pixel6_edgetpu or coral_edgetpu)")
    parser.add_argument("--fields", default=None,
                        help="comma-separated target fields to fit (default: the target's "
                             "usual set, e.g. compute_efficiency,layer_overhead_ms,...)")
    parser.add_argument("--csv", default=None,
                        help="published_latency.csv to read instead of the built-in copy")
    parser.add_argument("--no-fit", action="store_true",
                        help="only compare the shipped target with the published latencies")
    parser.add_argument("--print-values", action="store_true",
                        help="also print the fitted values as lines to paste into "
                             "cost_models/targets/<target>.py")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    rows = published_rows(args.target, args.csv)
    if args.no_fit:
        print(evaluate(args.target, rows).table())
        return 0
    fields = args.fields.split(",") if args.fields else FIT_FIELDS.get(args.target)
    before, after = calibrate(args.target, fields, rows)
    print(f"== {args.target}: before fitting {', '.join(fields)}")
    print(before.table())
    print(f"== {args.target}: after")
    print(after.table())
    if args.print_values:
        print(f"== paste into cost_models/targets/{args.target}.py")
        print(target_source(after.target, fields))
    return 0
