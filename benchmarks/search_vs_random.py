"""The experiment that must hold: searched architectures beat random ones of the same latency.

    python benchmarks/search_vs_random.py --out /tmp/search_vs_random \
        [--seeds 0 1 2] [--num-random 10]

On the default task (`micro` space, digits, `pixel6_edgetpu`, 'layers' latency):
1. searches with experiments/search/micro_digits.py at its target, one per seed
   (one shared cost model);
2. trains each found architecture with experiments/train/micro_digits.py;
3. trains `--num-random` uniform architectures whose simulated latency is
   within +/-5% of the same target, with the same train config
   (`tunas-jax random-baseline`);
4. writes the report (`tunas-jax report`) and prints the table that
   EXPERIMENTS.md records, with the verdict: searched mean top1 > random median?
Every step is a plain `tunas-jax` command (printed as it runs) and resumes:
rerunning the script after an interruption redoes nothing that finished.
Extra `--search-override` / `--train-override` FIELD=VALUE pairs go to every
search / training (e.g. fewer training images: `dataset.train_split=train[:20%]`).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from search_spaces import atomic_write, read_json  # noqa: E402

SEARCH_CONFIG = "experiments/search/micro_digits.py"
TRAIN_CONFIG = "experiments/train/micro_digits.py"


def tunas(args: list[str], log: list[str]) -> None:
    command = [sys.executable, "-m", "tunas_jax.cli", *args]
    printable = "tunas-jax " + shlex.join(args)
    print(f"$ {printable}", flush=True)
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True)
    log.append(f"{printable}  # {time.perf_counter() - start:.0f} s")


def interval(values: list[float]) -> str:
    """'mean [lo, hi] (n = N)': the mean's 95% interval under Student's t."""
    from scipy import stats  # scikit-learn's dependency: installed with the core

    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return f"{mean:.4f} (n = 1)"
    sd = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5
    half = float(stats.t.ppf(0.975, n - 1)) * sd / n ** 0.5
    return f"{mean:.4f} [{mean - half:.4f}, {mean + half:.4f}] (n = {n})"


def read(path: str) -> dict:
    return read_json(path, "experiment file")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder of every workdir and the report")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--num-random", type=int, default=10)
    parser.add_argument("--search-override", action="append", default=[],
                        metavar="FIELD=VALUE")
    parser.add_argument("--train-override", action="append", default=[],
                        metavar="FIELD=VALUE")
    args = parser.parse_args(argv)
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    log: list[str] = []
    search_sets = [f"--config.cost_model.workdir={out}/cost_model"]
    search_sets += [f"--config.{item}" for item in args.search_override]
    train_sets = [f"--config.{item}" for item in args.train_override]

    trained = []
    for seed in args.seeds:
        search_dir, train_dir = f"{out}/search_s{seed}", f"{out}/train_s{seed}"
        if not os.path.exists(f"{search_dir}/search_summary.json"):  # written last
            tunas(["search", "--config", SEARCH_CONFIG, "--workdir", search_dir,
                   f"--config.seed={seed}", *search_sets], log)
        arch = read(f"{search_dir}/architecture.json")
        # Train and cost the found architecture in the metric it was searched in.
        metric = [f"--config.latency_metric={arch['latency_metric']}"]
        if not os.path.exists(f"{train_dir}/result.json"):
            tunas(["train", "--config", TRAIN_CONFIG,
                   f"--config.architecture={search_dir}/architecture.json",
                   "--workdir", train_dir, *metric, *train_sets], log)
        trained.append((seed, arch, read(f"{train_dir}/result.json")))

    target = trained[0][1]["target_latency_ms"]
    band = f"{0.95 * target:.6g},{1.05 * target:.6g}"
    random_dir = f"{out}/random"
    if not os.path.exists(f"{random_dir}/baseline.json") or \
            "summary" not in read(f"{random_dir}/baseline.json"):
        tunas(["random-baseline", "--config", TRAIN_CONFIG, "--num", str(args.num_random),
               "--latency-band", band, "--workdir", random_dir, *metric, *train_sets], log)
    baseline = read(f"{random_dir}/baseline.json")
    tunas(["report", *[f"{out}/search_s{s}" for s in args.seeds],
           *[f"{out}/train_s{s}" for s in args.seeds], random_dir, "--out", f"{out}/report"],
          log)

    lines = [f"| run | simulated latency ms ({trained[0][1]['latency_metric']}) | params | top1 |",
             "|---|---|---|---|"]
    for seed, arch, result in trained:
        lines.append(f"| searched, seed {seed} | {arch['simulated_latency_ms']:.5f} | "
                     f"{result['params']:,} | {result['top1']:.4f} |")
    for entry in baseline["architectures"]:
        result = read(f"{random_dir}/{entry['name']}/result.json")
        lines.append(f"| random {entry['name']} | {entry['simulated_latency_ms']:.5f} | "
                     f"{result['params']:,} | {result['top1']:.4f} |")
    searched = [r["top1"] for _, _, r in trained]
    randoms = [read(f"{random_dir}/{e['name']}/result.json")["top1"]
               for e in baseline["architectures"]]
    mean = sum(searched) / len(searched)
    median = baseline["summary"]["median_top1"]
    verdict = "HOLDS" if mean > median else "DOES NOT HOLD"
    lines += ["", f"Searched mean top1 {mean:.4f} vs random median {median:.4f} "
              f"(random mean {baseline['summary']['mean_top1']:.4f}, range "
              f"{baseline['summary']['min_top1']:.4f}-{baseline['summary']['max_top1']:.4f}): "
              f"the claim {verdict}.",
              f"Means with 95% intervals (Student t): searched {interval(searched)}, "
              f"random {interval(randoms)}.", "", "Commands:", "", "```", *log, "```"]
    table = "\n".join(lines)
    with atomic_write(f"{out}/table.md") as f:
        f.write(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
