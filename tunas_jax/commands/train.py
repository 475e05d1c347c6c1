r"""`tunas-jax train`: train the standalone model of one architecture and report its costs.

    tunas-jax train --config experiments/train/micro_digits.py \
        --config.architecture=ARCH.json --workdir /tmp/train_micro_digits
    tunas-jax train --config experiments/train/imagenet.py \
        --config.architecture=preset:mobilenet_edgetpu_v2_s --workdir /tmp/train_v2_s
    tunas-jax train --config experiments/train/micro_digits.py \
        --config.init_from=SEARCH_WORKDIR --workdir /tmp/train_inherited

`--config.architecture` is an architecture JSON file or `preset:<name>`; with
`--config.init_from=SEARCH_WORKDIR` it defaults to the search's
architecture.json and the model starts from the supernet's weights. Rerunning
the same command on the same workdir resumes from its newest checkpoint.
Writes W/result.json (top1, params, macs, simulated_latency_ms, energy_mj,
predicted_latency_ms), W/metrics.jsonl, W/tensorboard/, W/checkpoints/.
Any config field can be overridden with `--config.<field>=<value>`
(nested: `--config.dataset.image_size=16`).
"""

from __future__ import annotations

import argparse

from tunas_jax import train
from tunas_jax.config_defaults import train_defaults
from tunas_jax.config_files import add_config_option, config_from_args


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train the standalone model of an architecture (or preset), report costs",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_option(parser, train_defaults, "experiments/train/micro_digits.py")
    parser.add_argument("--workdir", required=True,
                        help="output folder (checkpoints, metrics, result.json); resumes")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    result = train.run_training(config, args.workdir)
    if "stopped_at" in result:
        print(f"stopped at step {result['stopped_at']} (config.stop_after_steps); rerun the "
              "same command to continue")
        return 0
    predicted = result["predicted_latency_ms"]
    metric = result["quality_metric"]
    print(f"{metric} {result[metric]:.4f} on {result['eval_split']} ({result['weights']} weights), "
          f"{result['params']:,} params, {result['macs'] / 1e6:.1f} MMACs, simulated "
          f"{result['simulated_latency_ms']:.4f} ms ({result['latency_metric']}) / "
          f"{result['energy_mj']:.4f} mJ on "
          f"{result['target']}, predicted "
          + (f"{predicted:.4f} ms" if predicted is not None else "n/a"))
    print(f"wrote {args.workdir}/result.json ({result['wall_time_s']:.1f} s)")
    return 0
