"""`tunas-jax import`: write an existing model as a network description the simulator costs.

    tunas-jax import model.onnx --out network.json [--input-shape 224,224,3]
    tunas-jax import model.tflite --out network.json
    tunas-jax import my_pkg.models:forward --out network.json --input-shape 32,32,3

ONNX needs `pip install 'tunas-jax[onnx]'`, .tflite `pip install
'tunas-jax[tflite]'` (a flatbuffer parser; no TensorFlow). An op the
importer cannot map is refused with the node's name and op type. Then:
`tunas-jax simulate --network network.json --target coral_edgetpu`.
"""

from __future__ import annotations

import argparse

from search_spaces.fileio import write_json_atomic
from tunas_jax.errors import UsageError
from tunas_jax.importers import import_model


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import", help="import an ONNX / .tflite model or a JAX callable as a network "
        "description", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a .onnx or .tflite file, or module.path:function")
    parser.add_argument("--out", required=True, help="network-description JSON to write")
    parser.add_argument("--input-shape", default=None,
                        help="H,W,C of the input image (needed when the model leaves it "
                             "open; required for a JAX callable)")
    parser.add_argument("--name", default=None, help="the description's name")
    parser.set_defaults(func=run)


def parse_shape(text: str | None) -> tuple[int, int, int] | None:
    if text is None:
        return None
    try:
        h, w, c = (int(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"--input-shape {text!r}: use three positive ints H,W,C, "
                         "e.g. 224,224,3") from None
    if min(h, w, c) < 1:
        raise UsageError(f"--input-shape {text!r}: every size must be >= 1")
    return (h, w, c)


def run(args: argparse.Namespace) -> int:
    net = import_model(args.model, parse_shape(args.input_shape), args.name)
    write_json_atomic(args.out, net.to_json(), indent=1)
    print(f"wrote {args.out}: {net.name}, {len(net.layers)} layers, {net.params:,d} params, "
          f"{net.macs:,d} MACs (format version {net.format_version})")
    return 0
