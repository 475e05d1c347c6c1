"""`tunas-jax measure`: latency of architectures on this machine's CPU (`host_cpu`).

    tunas-jax measure --preset mobilenet_multi_avg              # 224 px, 1001 classes
    tunas-jax measure --architecture arch.json --repeats 30
    tunas-jax measure --space micro --sample 5 --out host.json  # 5 random micro archs

Each architecture's standalone model is compiled by XLA for the CPU, run
`--warmup` times, then timed `--repeats` times; the median is its latency and
the relative IQR its spread (`tunas_jax.host_latency`). On a shared machine
other processes add a slow tail: compare medians, and repeat more for small
networks.
"""

from __future__ import annotations

import argparse

from search_spaces import SpecError
from search_spaces.fileio import write_json_atomic
from tunas_jax.host_latency import HOST_TARGET, measure_latency, measure_sample
from tunas_jax.summary import resolve_architecture


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "measure", help="measure architectures' latency on this machine's CPU (host_cpu)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", help="a named architecture")
    parser.add_argument("--architecture", metavar="FILE", help="an architecture JSON file")
    parser.add_argument("--space", help="with --sample: the space to sample from; else the "
                                        "preset's / file's space")
    parser.add_argument("--sample", type=int, help="measure this many random architectures "
                                                   "of --space")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (with --sample)")
    parser.add_argument("--image-size", type=int, help="input resolution (default: the space's, "
                                                       "224 for a preset on its own)")
    parser.add_argument("--num-classes", type=int, help="classes (default: the space's / 1001)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs after compiling")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs (median reported)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--out", help="JSON file with every repeat of every architecture")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = {"warmup": args.warmup, "repeats": args.repeats, "batch_size": args.batch_size}
    if args.sample is not None:
        if args.space is None or args.preset or args.architecture:
            raise SpecError("--sample needs --space and no --preset / --architecture")
        results = measure_sample(args.space, args.sample, seed=args.seed,
                                 image_size=args.image_size, num_classes=args.num_classes,
                                 **settings)
    else:
        arch = resolve_architecture(args.preset, args.architecture, args.space)
        space = arch.space
        results = [measure_latency(
            arch.spec, args.image_size or (space.default_image_size if space else 224),
            args.num_classes or (space.default_num_classes if space else 1001),
            name=arch.name or args.preset or args.architecture, **settings)]
    print(f"{'architecture':<40} {'px':>4} {'median_ms':>10} {'min_ms':>9} {'rel_IQR':>8} "
          f"{'compile_s':>9}")
    for m in results:
        print(f"{m.name[:40]:<40} {m.image_size:>4} {m.median_ms:10.3f} {m.min_ms:9.3f} "
              f"{m.relative_iqr:8.3f} {m.compile_s:9.1f}")
    if args.out:
        write_json_atomic(args.out, {"format": "tunas-jax/host-latency", "target": HOST_TARGET,
                                     "measurements": [m.to_json() for m in results]})
        print(f"wrote {args.out}")
    return 0
