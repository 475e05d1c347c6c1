"""Found architectures on `host_cpu`: measured several times vs the host regressor.

Each architecture file is measured `--runs` times (each run its own compile,
warm-up and timed repeats, with the regressor dataset's settings and
statistic: `tunas_jax.host_latency`) and predicted by the `host_cpu`
regressor in CM_DIR (`experiments/cost_models/micro_host_cpu.py`). The
spread of the runs is the measurement noise at that moment; on a shared
machine say so beside the numbers (EXPERIMENTS.md section 5).

    PYTHONPATH=. python benchmarks/host_cpu_check.py CM_DIR ARCH.json [ARCH.json ...] \
        [--runs 3] [--json OUT]
"""

from __future__ import annotations

import argparse

import numpy as np

from cost_models.interface import Workload
from cost_models.regressor import load_cost_model, read_metadata
from search_spaces import architecture as architecture_lib
from search_spaces.fileio import write_json_atomic
from tasks import Classification
from tunas_jax.host_latency import HOST_TARGET, HostCpuCostModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cost_model_dir")
    parser.add_argument("architectures", nargs="+")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()
    meta = read_metadata(args.cost_model_dir)
    settings = meta["measured"]
    rows = []
    for path in args.architectures:
        arch = architecture_lib.load(path)
        predictor = load_cost_model(args.cost_model_dir, arch.space, HOST_TARGET)
        host = HostCpuCostModel(arch.space, Workload(int(meta["image_size"]),
                                                     Classification(int(meta["num_classes"]))),
                                warmup=settings["warmup"], repeats=settings["repeats"],
                                statistic=settings["statistic"])
        idx = np.asarray([arch.indices], np.int32)
        measured = [float(host.cost(idx, [HOST_TARGET])[HOST_TARGET].latency_ms[0])
                    for _ in range(args.runs)]
        row = {"architecture": path, "indices": ":".join(map(str, arch.indices)),
               "statistic": settings["statistic"], "predicted_ms": float(predictor(idx)[0]),
               "measured_ms": measured}
        rows.append(row)
        print(f"{path}: predicted {row['predicted_ms']:.3f} ms, measured "
              f"{', '.join(f'{m:.3f}' for m in measured)} ms ({settings['statistic']})",
              flush=True)
    if args.json:
        write_json_atomic(args.json, rows)


if __name__ == "__main__":
    main()
