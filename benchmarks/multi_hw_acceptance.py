"""Issue 16's acceptance table: multi-hardware vs single-device architectures, every device.

Each found architecture (a search workdir's architecture.json) is simulated on
every device of the multi-hardware config (experiments/search/
multi_hw_micro_digits.py) at its workload, in its latency metric; each
latency is divided by that device's target, and the worst (largest) ratio
is the architecture's worst-case normalized latency. A training workdir
given after `=` adds its top-1.

    PYTHONPATH=. python benchmarks/multi_hw_acceptance.py \
        multi=W_MULTI[=T_MULTI] pixel3_gpu=W_GPU[=T_GPU] pixel4_dsp=W_DSP ... [--json OUT]

Prints a markdown table (EXPERIMENTS.md section 5).
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from cost_models import metric_offset_ms
from cost_models.interface import SimulatorCostModel, Workload
from experiments.search import multi_hw_micro_digits
from search_spaces import architecture as architecture_lib
from search_spaces.fileio import write_json_atomic
from tasks import Classification


def evaluate(label: str, search_dir: str, train_dir: str | None) -> dict:
    config = multi_hw_micro_digits.get_config()
    targets, t0 = tuple(config.targets), tuple(config.target_latencies_ms)
    arch = architecture_lib.load(os.path.join(search_dir, "architecture.json"))
    with open(os.path.join(search_dir, "architecture.json")) as f:
        found = json.load(f)
    workload = Workload(found["workload"]["image_size"],
                        Classification(found["workload"]["task"]["num_classes"]))
    costs = SimulatorCostModel(arch.space, workload).cost(
        np.asarray([arch.indices], np.int32), targets)
    metric = config.latency_metric
    ms = {t: float(costs[t].latency_ms[0]) - metric_offset_ms(
        metric, t, workload.image_size, workload.task.num_classes) for t in targets}
    ratios = {t: ms[t] / t0[i] for i, t in enumerate(targets)}
    row = {"label": label, "indices": ":".join(map(str, arch.indices)),
           "params": int(costs[targets[0]].params[0]), "latency_ms": ms, "ratio": ratios,
           "worst_ratio": max(ratios.values()), "worst_device": max(ratios, key=ratios.get),
           "searched_for": found.get("targets", [found.get("target")])}
    if train_dir:
        with open(os.path.join(train_dir, "result.json")) as f:
            row["top1"] = float(json.load(f)["top1"])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="LABEL=SEARCH_WORKDIR[=TRAIN_WORKDIR]")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    rows = []
    for run in args.runs:
        label, search_dir, *train = run.split("=")
        rows.append(evaluate(label, search_dir, train[0] if train else None))
    targets = list(rows[0]["latency_ms"])
    print("| searched for | " + " | ".join(f"{t} ms (ratio)" for t in targets)
          + " | worst ratio | params | top-1 |")
    print("|---" * (len(targets) + 4) + "|")
    for r in rows:
        cells = [f"{r['latency_ms'][t]:.4g} ({r['ratio'][t]:.3f})" for t in targets]
        top1 = f"{r['top1']:.4f}" if "top1" in r else "-"
        print(f"| {r['label']} | " + " | ".join(cells)
              + f" | **{r['worst_ratio']:.3f}** ({r['worst_device']}) | {r['params']:,} | {top1} |")
    if args.json:
        write_json_atomic(args.json, rows)


if __name__ == "__main__":
    main()
