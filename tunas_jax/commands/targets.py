"""`tunas-jax targets`: the shipped hardware targets, their kind and calibration error.

    tunas-jax targets                 # table: name, kind, error on fit / held-out models
    tunas-jax targets --format json

The errors are the shipped values' mean |error| against the published
latencies they were fitted to and, for the mobile targets, against the
held-out models of the same table; `tunas-jax calibrate --target T` refits
and adds leave-one-out. The last row, `host_cpu`, is measured rather than
modelled (`tunas-jax measure`): it has no calibration error, only noise; a
search reaches it through a regressor trained on measured latencies
(`experiments/cost_models/micro_host_cpu.py`).
"""

from __future__ import annotations

import argparse
import json

from cost_models.calibration import target_summaries
from tunas_jax.host_latency import HOST_TARGET


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "targets", help="list the hardware targets with their kind and calibration error",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.set_defaults(func=run)


def _percent(value: float | None, count: int) -> str:
    return "-" if value is None else f"{value:5.1f}% ({count})"


def run(args: argparse.Namespace) -> int:
    rows = [*target_summaries(), {
        "name": HOST_TARGET, "kind": "measured", "fit_models": 0,
        "fit_mean_abs_error_percent": None, "held_out_models": 0,
        "held_out_mean_abs_error_percent": None,
        "description": ("this machine's CPU, standalone model through XLA (tunas-jax "
                        "measure; searched through a regressor on measured latencies)")}]
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'target':<16} {'kind':<8} {'fit |err| (n)':>14} {'held-out (n)':>13}  description")
    for r in rows:
        print(f"{r['name']:<16} {r['kind']:<8} "
              f"{_percent(r['fit_mean_abs_error_percent'], r['fit_models']):>14} "
              f"{_percent(r['held_out_mean_abs_error_percent'], r['held_out_models']):>13}  "
              f"{r['description']}")
    return 0
