"""What the OSS Vizier back-end adds to a multi-trial study, per algorithm.

    python benchmarks/bench_vizier.py [--trials 20] [--space micro]

For each algorithm of `controllers.vizier_strategy.ALGORITHMS`: the time to
start a Vizier server child over a fresh SQLite file and create the study,
then `--trials` rounds of propose(1) + observe (a synthetic objective instead
of training: this measures Vizier, not the trainer), then the server's stop.
Compare with the seconds a trained candidate takes (`W/trials.jsonl`
timestamps of a `tunas-jax multi-trial` run).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import controllers
import search_spaces
from controllers.vizier_strategy import ALGORITHMS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--space", default="micro")
    args = parser.parse_args()
    space = search_spaces.get_space(args.space)
    print("| algorithm | server start + study (s) | propose+observe per trial (ms) | stop (s) |")
    print("|---|---|---|---|")
    for algorithm in ALGORITHMS:
        objectives = ("quality", "latency_ms") if algorithm == "NSGA2" else ("reward",)
        with tempfile.TemporaryDirectory(prefix="bench_vizier_") as folder:
            start = time.perf_counter()
            strategy = controllers.get_strategy(
                "vizier", space, algorithm=algorithm, objectives=objectives,
                database_url=f"sqlite:///{folder}/vizier.db")
            started = time.perf_counter()
            for _ in range(args.trials):
                for trial in strategy.propose(1):
                    total = float(sum(trial.indices))  # synthetic: larger = better, slower
                    strategy.observe(trial, {"reward": total, "quality": total,
                                             "latency_ms": 1.0 + total})
            done = time.perf_counter()
            strategy.close()
            print(f"| {algorithm} | {started - start:.1f} | "
                  f"{1000 * (done - started) / args.trials:.0f} | "
                  f"{time.perf_counter() - done:.1f} |", flush=True)


if __name__ == "__main__":
    main()
