"""`tunas-jax evaluate`: re-evaluate the newest checkpoint of a `tunas-jax train` workdir.

    tunas-jax evaluate --workdir /tmp/train_micro_digits
    tunas-jax evaluate --workdir /tmp/train_seg_digits --output-stage approximate

Rebuilds the model from W/architecture.json and W/run.json, restores the
newest checkpoint (EMA weights when the run used them) and prints the task's
quality metric on the config's eval split (classification: top-1 accuracy;
segmentation: mIoU, with pixel accuracy in `--json`). `--output-stage` scores a
segmentation model with the other output stage than it was trained with (the
approximate stage: argmax at the logits' resolution, then nearest-neighbour
upsampling), so its mIoU cost is measured on the same weights.
"""

from __future__ import annotations

import argparse
import json

from tunas_jax import train


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="quality (top-1 or mIoU) of a train workdir's newest checkpoint",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True, help="a `tunas-jax train` workdir")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
    parser.add_argument("--output-stage", choices=("exact", "approximate"), default=None,
                        help="segmentation: evaluate with this output stage instead of "
                             "the run's")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    metrics = train.evaluate_workdir(args.workdir, args.output_stage)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        metric = metrics["quality_metric"]
        print(f"{metric} {metrics[metric]:.4f} on {metrics['eval_split']} "
              f"({metrics['num_eval_examples']} examples, step {metrics['step']}, "
              f"{metrics['weights']} weights"
              + (f", {args.output_stage} output stage)" if args.output_stage else ")"))
    return 0
