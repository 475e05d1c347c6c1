r"""`tunas-jax multi-trial`: multi-trial NAS, each candidate trained and costed.

    tunas-jax multi-trial --config experiments/multi_trial/micro_digits.py --workdir W \
        [--config.num_trials=40 --config.strategy=random --config.workers=2]

A strategy (random search, regularized evolution, or an OSS Vizier study with
--config.strategy=vizier: experiments/multi_trial/micro_digits_vizier.py)
proposes candidates of the config's space; the proxy trainer (`config.proxy`,
a `tunas-jax train` recipe) scores each on a held-out split; the cost
interface gives its latency on the config's targets; the reward is TuNAS's
`abs` form. The study lives in W/study.sqlite (and a Vizier study in
W/vizier.db): rerun the same command after an interruption to continue (no
trial lost, none evaluated twice). Writes W/trials.jsonl, W/pareto.json and
W/architecture.json (the best trial by reward).
"""

from __future__ import annotations

import argparse

from tunas_jax import multi_trial
from tunas_jax.config_defaults import multi_trial_defaults
from tunas_jax.config_files import add_config_option, config_from_args


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "multi-trial", help="multi-trial NAS (random search, regularized evolution, OSS Vizier)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_option(parser, multi_trial_defaults, "experiments/multi_trial/micro_digits.py")
    parser.add_argument("--workdir", required=True,
                        help="study folder (study.sqlite, trials, outputs); resumes")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    summary = multi_trial.run_study(config_from_args(args), args.workdir)
    best = summary.get("best")
    if best:
        print(f"best trial {best['id']}: {best['quality_metric']} {best['quality']:.4f}, "
              f"{best['latency_ms']:.4f} ms ({best['latency_metric']}) on {best['target']}, "
              f"reward {best['reward']:.4f}")
    if summary["rejected_by_latency_band"]:
        print(f"{summary['rejected_by_latency_band']} candidates outside the latency band "
              "were not trained")
    print(f"{summary['completed']} completed, {summary['failed']} failed, "
          f"{summary['pareto']} on the Pareto front; wrote {args.workdir}/trials.jsonl, "
          "pareto.json" + (", architecture.json" if best else ""))
    return 0
