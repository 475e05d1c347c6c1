"""Regenerate the checked-in Python stubs of `cost_service/v1/ppe.proto`.

    python -m cost_service.codegen [--out DIR]

Runs grpcio-tools' bundled protoc with the repository root as the include
path, so the generated modules import each other as `cost_service.v1.*`.
The stubs are checked in (the server and client need only grpcio and
protobuf at run time); `tests/test_cost_service.py` regenerates them into a
temporary folder and diffs, so an edited .proto without regenerated stubs
fails CI. The generated code names the grpcio and protobuf versions it
needs: the `service` extra's floors in pyproject.toml match them.
"""

from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROTO = "cost_service/v1/ppe.proto"
GENERATED = ("cost_service/v1/ppe_pb2.py", "cost_service/v1/ppe_pb2_grpc.py")


def generate(out_dir: str) -> list[str]:
    """Write the stubs under `out_dir` (same relative paths as in the repo); their paths."""
    import importlib.resources

    from grpc_tools import protoc  # build-time only: grpcio-tools

    include = str(importlib.resources.files("grpc_tools") / "_proto")
    os.makedirs(out_dir, exist_ok=True)
    rc = protoc.main(["protoc", f"-I{ROOT}", f"-I{include}", f"--python_out={out_dir}",
                      f"--grpc_python_out={out_dir}", os.path.join(ROOT, PROTO)])
    if rc != 0:
        raise RuntimeError(f"protoc failed on {PROTO} (exit {rc})")
    return [os.path.join(out_dir, p) for p in GENERATED]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=ROOT, help="output root (default: the repository)")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
