"""Does the supernet rank architectures as standalone training does? (Kendall's tau)

    python benchmarks/supernet_ranking.py --search W --out DIR [--num 20] \
        [--train-override num_epochs=10 ...] [--json FILE]

The standard weight-sharing diagnostic: after a search (W, e.g. from
`tunas-jax search --config experiments/search/micro_digits.py --workdir W`),
`--num` architectures spread evenly over the space's simulated latency range
are each scored
  (a) with the supernet's final shared weights (`supernet.apply` on the
      search's validation split, batch statistics as during the search), and
  (b) trained standalone with experiments/train/micro_digits.py (overridable)
      and evaluated on the same validation split;
Kendall's tau-b between (a) and (b) is the supernet's ranking quality
(`run_all.py` key `supernet_rank_kendall_tau`). Trainings run as `tunas-jax
train` workdirs under DIR and resume: rerunning redoes nothing finished.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import supernet  # noqa: E402
from cost_models.interface import SimulatorCostModel, Workload  # noqa: E402
from search_spaces import Architecture, get_space, read_json, write_json_atomic  # noqa: E402
from tunas_jax import search, train  # noqa: E402
from tunas_jax.cost_model_training import kendall_tau_b  # noqa: E402
from tunas_jax.data import create_eval_data, sources  # noqa: E402

TRAIN_CONFIG = "experiments/train/micro_digits.py"


def spread_architectures(space, costs, target: str, num: int, seed: int = 0) -> np.ndarray:
    """`num` distinct architectures at evenly spaced quantiles of 4,096 uniform samples'
    simulated latency."""
    pool = space.sample(np.random.default_rng(seed), 4096)
    latency = costs.cost(pool, [target])[target].latency_ms
    order = np.argsort(latency)
    picks = order[np.linspace(0, len(order) - 1, num).round().astype(int)]
    return pool[picks]


def supernet_quality(search_dir: str, indices: np.ndarray) -> list[float]:
    """Each architecture's task quality with the supernet's shared weights on the search's
    validation split (batch statistics, as the search's reward)."""
    config = ml_collections.ConfigDict(read_json(os.path.join(search_dir, search.CONFIG_FILE),
                                                 "search config"))
    num_classes = sources.num_classes(sources.load_source(
        config.dataset, config.dataset.train_split, "train_split"))
    batches = list(create_eval_data(config.dataset, batch_size=256,
                                    split=config.dataset.valid_split, num_threads=1))
    channels = batches[0]["image"].shape[-1]
    config, state, _ = search.restore_search_state(search_dir, num_classes, channels)
    plan = search.make_plan(config, channels)
    task = search.make_task(config, num_classes)

    @jax.jit
    def sums(params, idx, batch, mask):
        output, _ = supernet.apply(plan, task, params, idx, batch[task.input_key], train=False)
        return task.eval_sums(output, batch, mask)

    out = []
    for idx in indices:
        total: dict[str, float] = {}
        for b in batches:
            inputs = {k: v for k, v in b.items() if k != "mask"}
            for k, v in sums(state.params, jnp.asarray(idx, jnp.int32), inputs,
                             b["mask"]).items():
                total[k] = total.get(k, 0.0) + float(v)
        out.append(task.finish_eval(total)[task.primary_metric])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--search", required=True, help="a finished search workdir")
    parser.add_argument("--out", required=True, help="folder for the standalone trainings")
    parser.add_argument("--num", type=int, default=20)
    parser.add_argument("--train-override", action="append", default=[],
                        metavar="FIELD=VALUE")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    search_config = read_json(os.path.join(args.search, search.CONFIG_FILE), "search config")
    space = get_space(search_config["space"])
    target = search_config["targets"][0]
    overrides = dict(item.split("=", 1) for item in args.train_override)
    train_config = train.load_train_config(os.path.join(REPO, TRAIN_CONFIG), overrides)
    # Scored on the search's validation split (held out of both trainings).
    train_config.dataset.eval_split = search_config["dataset"]["valid_split"]
    train_config.dataset.train_split = search_config["dataset"]["train_split"]
    workload = Workload(int(train_config.dataset.image_size),
                        train.make_task(train_config, space.default_num_classes))
    indices = spread_architectures(space, SimulatorCostModel(space, workload), target,
                                   args.num)
    inherited = supernet_quality(args.search, indices)
    standalone = []
    for i, idx in enumerate(indices):
        arch_path = os.path.join(args.out, "architectures", f"arch_{i:02d}.json")
        os.makedirs(os.path.dirname(arch_path), exist_ok=True)
        Architecture.from_indices(space, idx, name=f"rank_{i:02d}").save(arch_path)
        train_config.architecture = arch_path
        result = train.run_training(train_config, os.path.join(args.out, f"arch_{i:02d}"),
                                    log=lambda _: None)
        standalone.append(result["quality"])
        print(f"arch {i:02d}: supernet {inherited[i]:.4f}, standalone {standalone[-1]:.4f}")
    tau = kendall_tau_b(np.asarray(inherited), np.asarray(standalone))
    figures = {"supernet_rank_kendall_tau": tau, "num_architectures": len(indices),
               "supernet_quality": inherited, "standalone_quality": standalone,
               "indices": indices.tolist(), "search": os.path.abspath(args.search),
               "train_overrides": overrides}
    print(f"Kendall tau-b (supernet vs standalone), {len(indices)} architectures: {tau:.3f}")
    if args.json:
        write_json_atomic(args.json, figures)


if __name__ == "__main__":
    main()
