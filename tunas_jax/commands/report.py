"""`tunas-jax report`: an HTML page and PNG plots of searches, trainings and random baselines.

    tunas-jax report /tmp/search_micro /tmp/train_searched /tmp/random_micro --out /tmp/report

Each workdir is a search (`tunas-jax search`), a training (`tunas-jax train`)
or a random baseline (`tunas-jax random-baseline`); see `tunas_jax.report`.
Writes DIR/report.html (self-contained: plots inlined) and the PNGs beside it.
"""

from __future__ import annotations

import argparse

from tunas_jax import report


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report", help="HTML + PNG report: accuracy vs latency, controller, found architecture",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workdirs", nargs="+", metavar="WORKDIR",
                        help="search, train or random-baseline workdirs")
    parser.add_argument("--out", required=True, help="output folder of report.html and PNGs")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    written = report.write_report(args.workdirs, args.out)
    verdict = written["comparison"]
    if verdict:
        word = "above" if verdict["searched_mean_above_random_median"] else "NOT above"
        print(f"searched mean {verdict['quality_metric']} {verdict['searched_mean']:.4f} "
              f"(n={verdict['searched_n']}) is {word} the random median "
              f"{verdict['random_median']:.4f} "
              f"(n={verdict['random_n']})")
    print(f"wrote {written['html']} and {len(written['images'])} PNGs")
    return 0
