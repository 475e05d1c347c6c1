"""`tunas-jax calibrate`: fit a hardware target to published latencies, with leave-one-out.

    tunas-jax calibrate --target pixel6_edgetpu            # fit + leave-one-out, print, write
                                                           #   calibration_pixel6_edgetpu.json
    tunas-jax calibrate --target coral_edgetpu --out coral.json --csv published_latency.csv
    tunas-jax calibrate --target coral_edgetpu --no-fit    # the shipped target's fit only
    tunas-jax calibrate --target coral_edgetpu --print-values   # + lines to paste into
                                                           #   cost_models/targets/<T>.py
    tunas-jax calibrate --target pixel4_dsp                # a mobile target: also its
                                                           #   held-out models

The leave-one-out table predicts each published model with a fit that did
not see it: the error to expect on a network outside the calibration set.
The held-out table (mobile targets) prices models of the same table unlike
every fit model (other blocks, activations) with the fitted target.
"""

from __future__ import annotations

import argparse

from cost_models.calibration import (
    DEVICE_OF_TARGET,
    FIT_FIELDS,
    calibration_report,
    evaluate,
    published_rows,
    target_source,
)
from search_spaces.fileio import write_json_atomic


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "calibrate", help="fit a hardware target's free parameters to published latencies",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="pixel6_edgetpu",
                        help="hardware target with published latencies "
                             f"({', '.join(sorted(DEVICE_OF_TARGET))})")
    parser.add_argument("--fields", default=None,
                        help="comma-separated target fields to fit (default: the target's "
                             "usual set, cost_models.calibration.FIT_FIELDS)")
    parser.add_argument("--csv", default=None,
                        help="published_latency.csv to read instead of the built-in copy")
    parser.add_argument("--out", default=None,
                        help="JSON file for the in-sample and leave-one-out figures "
                             "(default calibration_<target>.json)")
    parser.add_argument("--no-loo", action="store_true",
                        help="skip the leave-one-out refits")
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
    result = calibration_report(args.target, fields, rows, loo=not args.no_loo)
    print(f"== {args.target}: before fitting {', '.join(result.fields)}")
    print(result.before.table())
    print(f"== {args.target}: in-sample (fitted to all {len(rows)} models)")
    print(result.after.table())
    if result.loo is not None:
        print(f"== {args.target}: leave-one-out (each model predicted by a fit to the others)")
        print(result.loo.table())
        lo, hi = result.loo.ratio_range
        print(f"in-sample mean |error| {result.after.mean_abs_error_percent:.1f}%, "
              f"leave-one-out {result.loo.mean_abs_error_percent:.1f}% "
              f"(simulated/published {lo:.2f}x-{hi:.2f}x)")
    if result.held_out is not None:
        print(f"== {args.target}: held out (models of the same table the fit never saw)")
        print(result.held_out.table())
    out = args.out or f"calibration_{args.target}.json"
    write_json_atomic(out, result.to_json())
    print(f"wrote {out}")
    if args.print_values:
        print(f"== paste into cost_models/targets/{args.target}.py")
        print(target_source(result.after.target, result.fields))
    return 0
