"""Measurement noise of the `host_cpu` target (`tunas_jax.host_latency`).

    PYTHONPATH=. python benchmarks/bench_host_cpu_noise.py [--space micro] [--count 6]
        [--repeats 30] [--rounds 2] [--presets mobilenet_multi_avg,mobilenet_multi_max]

Measures `count` random architectures of `space` (at its default size) and
the given presets (224 px) in `rounds` rounds, architectures interleaved
within a round (so a burst of load on the machine hits all of them alike).
Prints, per architecture, each round's median and relative IQR, and the
round-to-round change of the median: the two numbers that say how far one
`host_cpu` latency can be trusted.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from search_spaces import get_preset, get_space
from tunas_jax.host_latency import measure_latency


def run(space_name: str = "micro", count: int = 6, repeats: int = 30, rounds: int = 2,
        presets: tuple[str, ...] = ("mobilenet_multi_avg", "mobilenet_multi_max"),
        warmup: int = 5, seed: int = 0) -> dict:
    space = get_space(space_name)
    items = [(":".join(map(str, idx)), space.decode(idx), space.default_image_size,
              space.default_num_classes)
             for idx in space.sample(np.random.default_rng(seed), count)]
    items += [(name, get_preset(name), 224, 1001) for name in presets]
    by_item: dict[str, list] = {name: [] for name, *_ in items}
    for _ in range(rounds):
        for name, spec, size, classes in items:
            by_item[name].append(measure_latency(spec, size, classes, name=name,
                                                 warmup=warmup, repeats=repeats))
    rows = []
    for name, ms in by_item.items():
        medians, minima = [m.median_ms for m in ms], [m.min_ms for m in ms]
        rows.append({"name": name, "image_size": ms[0].image_size, "medians_ms": medians,
                     "min_ms": minima, "relative_iqr": [m.relative_iqr for m in ms],
                     "round_change": _change(medians), "round_change_min": _change(minima)})
    return {"space": space_name, "repeats": repeats, "warmup": warmup, "rounds": rounds,
            "rows": rows,
            "median_relative_iqr": float(np.median([r for row in rows
                                                    for r in row["relative_iqr"]])),
            "median_round_change": float(np.median([row["round_change"] for row in rows])),
            "max_round_change": float(max(row["round_change"] for row in rows)),
            "median_round_change_min": float(np.median([row["round_change_min"]
                                                        for row in rows]))}


def _change(values: list[float]) -> float:
    """(largest - smallest) / mean: how far a repeated measurement moves."""
    return (max(values) - min(values)) / float(np.mean(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="micro")
    parser.add_argument("--count", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--presets", default="mobilenet_multi_avg,mobilenet_multi_max")
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args()
    result = run(args.space, args.count, args.repeats, args.rounds,
                 tuple(p for p in args.presets.split(",") if p))
    print(f"{'architecture':<30} {'px':>4} {'medians_ms':>16} {'rel_IQR':>10} {'change':>7} "
          f"{'min_ms':>16} {'change':>7}")
    for r in result["rows"]:
        medians = "/".join(f"{m:.3f}" for m in r["medians_ms"])
        minima = "/".join(f"{m:.3f}" for m in r["min_ms"])
        iqr = "/".join(f"{q:.2f}" for q in r["relative_iqr"])
        print(f"{r['name'][:30]:<30} {r['image_size']:>4} {medians:>16} {iqr:>10} "
              f"{100 * r['round_change']:6.1f}% {minima:>16} {100 * r['round_change_min']:6.1f}%")
    print(f"median relative IQR {result['median_relative_iqr']:.3f}; round-to-round change: "
          f"of the median {100 * result['median_round_change']:.1f}% (median over "
          f"architectures; max {100 * result['max_round_change']:.1f}%), of the minimum "
          f"{100 * result['median_round_change_min']:.1f}%")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
