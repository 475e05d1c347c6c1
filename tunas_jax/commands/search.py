r"""`tunas-jax search`: the TuNAS one-shot architecture search.

    tunas-jax search --config experiments/search/micro_digits.py --workdir /tmp/search_micro \
        [--config.steps=500 --config.dataset.image_size=16 \
         --config.cost_model.overrides.num_steps=500 ...]

Trains the latency regressor first if `config.cost_model.workdir` holds none
(one per target for several `config.targets`: tunas_jax/search_targets.py),
then searches, writing `architecture.json`, `search_summary.json`,
`metrics.jsonl`, TensorBoard events and checkpoints into the workdir. Rerun
the same command after an interruption to resume from the last checkpoint.

Several processes (multi-host, `jax.distributed`): run the same command in each,
with the same workdir on a shared filesystem, adding `--coordinator HOST:PORT
--num-processes N --process-id I` (tunas_jax/distributed.py).
"""

from __future__ import annotations

import argparse

from tunas_jax import distributed, search
from tunas_jax.config_defaults import search_defaults
from tunas_jax.config_files import add_config_option, config_from_args


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "search", help="one-shot hardware-aware architecture search (TuNAS)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_option(parser, search_defaults, "experiments/search/micro_digits.py")
    parser.add_argument("--workdir", required=True,
                        help="output folder (architecture.json, metrics, checkpoints)")
    group = parser.add_argument_group("several processes (jax.distributed; all three or none)")
    group.add_argument("--coordinator", metavar="HOST:PORT",
                       help="process 0's address, the same in every process")
    group.add_argument("--num-processes", type=int, metavar="N")
    group.add_argument("--process-id", type=int, metavar="I", help="0..N-1")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    distributed.initialize(args.coordinator, args.num_processes, args.process_id)  # first
    config = config_from_args(args)
    summary = search.run_search(config, args.workdir)
    best = summary["argmax"]
    print(f"architecture {':'.join(map(str, best['indices']))}: simulated "
          f"{best['simulated_latency_ms']:.4f} ms {best['latency_metric']} (target "
          f"{best['target_latency_ms']:.4f} ms, predicted {best['predicted_latency_ms']:.4f} ms; "
          f"end to end {best['simulated_end_to_end_latency_ms']:.4f} ms), {best['params']:,} "
          f"params, {best['macs']:,} MACs")
    if len(best["targets"]) > 1:
        print(f"{best['multi_hardware_metric']} latency ratio "
              f"{best['combined_latency_ratio']:.3f} over " + ", ".join(
                  f"{t} {ms:.4f} ms / {best['target_latency_ms_by_target'][t]:.4f}"
                  for t, ms in best["latency_ms_by_target"].items()))
    if distributed.is_primary():
        print(f"wrote {args.workdir}/architecture.json and search_summary.json")
    return 0
