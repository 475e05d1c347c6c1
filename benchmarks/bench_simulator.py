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
from search_spaces import get_space
from tasks import describe


def run(space_name: str = "mobilenet_edgetpu_v2", target: str = "pixel6_edgetpu",
        num: int = 20000, seed: int = 0, one_core: bool = True) -> dict:
    """Architectures per second (on one core when `one_core`) for each costing path."""
    if one_core and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    space = get_space(space_name)
    indices = space.sample(np.random.default_rng(seed), 2 * num)

    n_ref = min(200, num)
    start = time.perf_counter()
    for idx in indices[:n_ref]:
        simulate(describe(space.decode(idx), space.default_image_size,
                          space.default_num_classes), target)
    ref_rate = n_ref / (time.perf_counter() - start)

    coster = ArchitectureCoster(space, target)
    start = time.perf_counter()
    coster.cost_batch(indices[:num])
    cold = num / (time.perf_counter() - start)
    start = time.perf_counter()
    out = coster.cost_batch(indices[num:])
    warm = num / (time.perf_counter() - start)
    n_single = min(2000, num)
    start = time.perf_counter()
    for idx in indices[:n_single]:
        coster.cost(idx)
    single = n_single / (time.perf_counter() - start)
    return {
        "space": space_name, "target": target, "num": num,
        "simulate_describe_decode_archs_per_second": ref_rate,
        "simulator_archs_per_second": cold,  # cold cache: what a fresh dataset gets
        "cost_batch_warm_archs_per_second": warm,
        "cost_single_archs_per_second": single,
        "cache_entries": coster.cache_size,
        "latency_ms_range": [float(out["latency_ms"].min()), float(out["latency_ms"].max())],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="mobilenet_edgetpu_v2")
    parser.add_argument("--target", default="pixel6_edgetpu")
    parser.add_argument("--num", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    r = run(args.space, args.target, args.num, args.seed)
    print(f"space {args.space}, target {args.target}, one core")
    ref = r["simulate_describe_decode_archs_per_second"]
    print(f"simulate(describe(decode(idx)))   {ref:10.0f} archs/s")
    print(f"cost_batch cold ({args.num} archs)  {r['simulator_archs_per_second']:10.0f} archs/s")
    print(f"cost_batch warm ({args.num} archs)  {r['cost_batch_warm_archs_per_second']:10.0f}"
          " archs/s")
    print(f"cost() one at a time (warm)      {r['cost_single_archs_per_second']:10.0f} archs/s")
    lo, hi = r["latency_ms_range"]
    print(f"cache entries {r['cache_entries']}; latency_ms range {lo:.3f}..{hi:.3f}")


if __name__ == "__main__":
    main()
