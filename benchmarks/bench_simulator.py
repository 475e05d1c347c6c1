"""Throughput of the analytical simulator and of the fast per-architecture coster.

    /work/venv/bin/python benchmarks/bench_simulator.py [--space mobilenet_edgetpu_v2]
        [--target pixel6_edgetpu] [--num 20000]

Prints architectures per second on one core: `simulate(describe(decode))`
per architecture, and `ArchitectureCoster.cost_batch` cold (empty cache,
first `num` random architectures) and warm (the next `num`), and the
single-architecture `cost()`. The dataset generator needs >= 2,000/s.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from cost_models import ArchitectureCoster, simulate
from search_spaces import describe, get_space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="mobilenet_edgetpu_v2")
    parser.add_argument("--target", default="pixel6_edgetpu")
    parser.add_argument("--num", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    space = get_space(args.space)
    rng = np.random.default_rng(args.seed)
    indices = space.sample(rng, 2 * args.num)

    n_ref = min(200, args.num)
    start = time.perf_counter()
    for idx in indices[:n_ref]:
        simulate(describe(space.decode(idx), space.default_image_size,
                          space.default_num_classes), args.target)
    ref_rate = n_ref / (time.perf_counter() - start)

    coster = ArchitectureCoster(space, args.target)
    start = time.perf_counter()
    coster.cost_batch(indices[:args.num])
    cold = args.num / (time.perf_counter() - start)
    start = time.perf_counter()
    out = coster.cost_batch(indices[args.num:])
    warm = args.num / (time.perf_counter() - start)
    n_single = min(2000, args.num)
    start = time.perf_counter()
    for idx in indices[:n_single]:
        coster.cost(idx)
    single = n_single / (time.perf_counter() - start)

    print(f"space {args.space}, target {args.target}, one core")
    print(f"simulate(describe(decode(idx)))   {ref_rate:10.0f} archs/s")
    print(f"cost_batch cold ({args.num} archs)  {cold:10.0f} archs/s")
    print(f"cost_batch warm ({args.num} archs)  {warm:10.0f} archs/s")
    print(f"cost() one at a time (warm)      {single:10.0f} archs/s")
    print(f"cache entries {coster.cache_size}; latency_ms range "
          f"{out['latency_ms'].min():.3f}..{out['latency_ms'].max():.3f}")


if __name__ == "__main__":
    main()
