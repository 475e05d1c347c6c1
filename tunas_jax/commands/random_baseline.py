r"""`tunas-jax random-baseline`: K random architectures in a latency band, each trained.

    tunas-jax random-baseline --config experiments/train/micro_digits.py \
        --num 10 --latency-band 0.0167,0.0185 --workdir /tmp/random_micro

The baseline TuNAS compares against: architectures of `--space` drawn
uniformly and kept when their simulated latency (on the first of `config.targets`, in
`config.latency_metric`, ms) lies in LO..HI, each trained with the train
config's recipe, i.e. the recipe a searched architecture gets with the same
config. Writes W/baseline.json (the architectures, then their top1 and the
mean/median) and one train workdir W/arch_NN per architecture. Rerun the same
command to resume.
"""

from __future__ import annotations

import argparse

from tunas_jax import random_baseline
from tunas_jax.config_defaults import train_defaults
from tunas_jax.config_files import add_config_option, config_from_args


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "random-baseline", help="train K random architectures of a latency band (TuNAS baseline)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_option(parser, train_defaults,
                      "experiments/train/micro_digits.py (the training recipe)")
    parser.add_argument("--workdir", required=True, help="output folder; resumes")
    parser.add_argument("--space", default="micro", help="search space to sample (default micro)")
    parser.add_argument("--num", type=int, required=True, help="number of architectures K")
    parser.add_argument("--latency-band", required=True, metavar="LO,HI",
                        help="simulated latency band in ms (config.latency_metric)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    band = random_baseline.parse_band(args.latency_band)
    config = config_from_args(args)
    plan = random_baseline.run_random_baseline(config, args.workdir, space_name=args.space,
                                               num=args.num, band=band, seed=args.seed)
    if "stopped_at" in plan:
        print(f"stopped in {plan['stopped_at']['architecture']} (config.stop_after_steps); "
              "rerun the same command to continue")
        return 0
    s = plan["summary"]
    print(f"{args.num} random architectures in [{band[0]}, {band[1]}] ms "
          f"({config.latency_metric}): top1 mean {s['mean_top1']:.4f}, median "
          f"{s['median_top1']:.4f}, range {s['min_top1']:.4f}-{s['max_top1']:.4f}")
    print(f"wrote {args.workdir}/{random_baseline.BASELINE_FILE}")
    return 0
