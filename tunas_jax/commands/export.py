"""`tunas-jax export`: a trained model as a TFLite flatbuffer (float or full-integer int8).

    tunas-jax export --workdir TRAIN_WORKDIR --out model.tflite [--int8]

Restores the newest checkpoint of a `tunas-jax train` workdir (the weights
`evaluate` scores), folds each batch norm into its conv and writes the
network as TFLite ops (see `tunas_jax.export`). `--int8` writes what the
Edge TPU compiler takes: int8 weights, activations, input and output, only
TFLITE_BUILTINS_INT8 ops, calibrated on images of the task's training split.
`--group-conv-as-slices` writes each group conv as slice + full conv +
concat, for compilers without native group convs. The model's input is the
image after the dataset's eval preprocessing (resized, normalized). Needs
TensorFlow: pip install 'tunas-jax[export]'.
"""

from __future__ import annotations

import argparse
import json

from tunas_jax import export


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="write a train workdir's model as .tflite (float or int8)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True, help="a `tunas-jax train` workdir")
    parser.add_argument("--out", required=True, help="the .tflite file to write")
    parser.add_argument("--int8", action="store_true",
                        help="full-integer int8 (int8 input and output), as the Edge TPU needs")
    parser.add_argument("--group-conv-as-slices", action="store_true",
                        help="group convs as slice + full conv per group + concat")
    parser.add_argument("--calibration-examples", type=int,
                        default=export.DEFAULT_CALIBRATION_EXAMPLES,
                        help="training images of the int8 representative dataset "
                             "(default %(default)s)")
    parser.add_argument("--evaluate", action="store_true",
                        help="also report the written model's top-1 on the eval split")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    summary = export.export_tflite(args.workdir, args.out, int8=args.int8,
                                   group_conv_as_slices=args.group_conv_as_slices,
                                   calibration_examples=args.calibration_examples,
                                   evaluate=args.evaluate)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    kind = "int8" if summary["int8"] else "float32"
    print(f"wrote {summary['out']}: {kind}, {summary['bytes']:,d} bytes, input "
          f"{summary['input_shape']} (step {summary['step']}, {summary['weights']} weights)")
    if summary["int8"]:
        q = summary["quantization"]["input"]
        zero = q["zero_point"]
        print(f"input int8: real = {q['scale']:.6g} * (q {'-' if zero >= 0 else '+'} "
              f"{abs(zero)})")
    print(f"logits vs the Flax model on {summary['check_examples']} training images: max abs "
          f"diff {summary['max_abs_logit_diff']:.3g}, same top-1 on "
          f"{summary['top1_agreement']:.0%}")
    if args.evaluate:
        t, f = summary["tflite_eval"], summary["flax_eval"]
        print(f"top1 on {t['eval_split']} ({t['num_examples']} examples): .tflite "
              f"{t['top1']:.4f}, Flax {f['top1']:.4f}")
    return 0
