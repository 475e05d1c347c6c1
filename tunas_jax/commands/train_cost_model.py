r"""`tunas-jax train-cost-model`: fit the learned latency regressor for a space and target.

    tunas-jax train-cost-model --config experiments/cost_models/mobilenet_edgetpu_v2_pixel6.py \
        --workdir /tmp/cost_model_v2_pixel6 [--config.num_steps=2000 --config.model=linear]

Simulates the dataset if its file is missing, trains, and writes the orbax
checkpoint, `cost_model.json` (with the `heldout` metrics) and `scatter.png`
into the workdir. Any config field can be overridden with `--config.<field>=<value>`.
"""

from __future__ import annotations

import argparse

from tunas_jax import cost_model_training
from tunas_jax.config_defaults import cost_model_defaults
from tunas_jax.config_files import add_config_option, config_from_args


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train-cost-model", help="train the learned latency regressor (simulates its dataset)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_option(parser, cost_model_defaults, "experiments/cost_models/micro_pixel6.py")
    parser.add_argument("--workdir", required=True,
                        help="output folder (dataset, checkpoint, cost_model.json, scatter.png)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    metadata = cost_model_training.train_cost_model(config, args.workdir)
    print(cost_model_training.format_metrics(metadata))
    print(f"wrote {args.workdir}/cost_model.json, checkpoint/ and scatter.png "
          f"({metadata['training']['wall_time_s']:.1f} s)")
    return 0
