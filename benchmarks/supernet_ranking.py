"""Does the supernet rank architectures as standalone training does? (Kendall's tau)

    python benchmarks/supernet_ranking.py --search W --out DIR [--num 20] \
        [--recipe full|proxy] [--train-override num_epochs=10 ...] [--json FILE]

The standard weight-sharing diagnostic: after a search (W, e.g. from
`tunas-jax search --config experiments/search/micro_digits.py --workdir W`),
`--num` architectures spread evenly over the space's simulated latency range
are each scored
  (a) with the supernet's final shared weights (`supernet.apply` on the
      search's validation split, batch statistics as during the search), and
  (b) trained standalone and evaluated on the same validation split: with
      experiments/train/micro_digits.py (`--recipe full`, 40 epochs) or the
      multi-trial proxy of it (`--recipe proxy`: `config.proxy` of
      experiments/multi_trial/micro_digits.py, 8 epochs at 32 per batch), each
      overridable with `--train-override`;
Kendall's tau-b between (a) and (b) is the supernet's ranking quality
(`run_all.py --supernet-ranking W` key `supernet_rank_kendall_tau`). Trainings run as
`tunas-jax train` workdirs under DIR and resume: rerunning redoes nothing finished.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

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
from tunas_jax.config_files import load_config  # noqa: E402
from tunas_jax.cost_model_training import kendall_tau_b  # noqa: E402
from tunas_jax.data import create_eval_data, sources  # noqa: E402

TRAIN_CONFIG = "experiments/train/micro_digits.py"
PROXY_CONFIG = "experiments/multi_trial/micro_digits.py"  # its config.proxy
RECIPES = ("full", "proxy")


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
    valid = sources.load_source(config.dataset, config.dataset.valid_split, "valid_split")
    # The supernet's batch norm uses the batch's statistics: a batch padded with zero
    # images would skew them. So the whole split in one batch (digits: 144 images),
    # or full batches of 256 of a large split (the padded last one left out).
    size = len(valid) if len(valid) <= 2048 else 256
    batches = [b for b in create_eval_data(config.dataset, batch_size=size,
                                           split=config.dataset.valid_split, num_threads=1)
               if b["mask"].all()]
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


def train_recipe(recipe: str, overrides: dict[str, str]) -> ml_collections.ConfigDict:
    """The standalone training config: the digits recipe or the multi-trial proxy of it."""
    if recipe == "full":
        return train.load_train_config(os.path.join(REPO, TRAIN_CONFIG), overrides)
    return load_config(os.path.join(REPO, PROXY_CONFIG),
                       {f"proxy.{key}": value for key, value in overrides.items()}).proxy


def run(search_dir: str, out_dir: str, num: int = 20, recipe: str = "full",
        overrides: dict[str, str] | None = None, log=print,
        partial_json: str | None = None) -> dict:
    """Kendall's tau-b between supernet and standalone quality of `num` architectures;
    the figures as a dict (also the per-architecture qualities), also written to
    `partial_json` after each training."""
    if recipe not in RECIPES:
        raise ValueError(f"recipe {recipe!r}: use one of {RECIPES}")
    overrides = dict(overrides or {})
    search_config = read_json(os.path.join(search_dir, search.CONFIG_FILE), "search config")
    space = get_space(search_config["space"])
    target = search_config["targets"][0]
    train_config = train_recipe(recipe, overrides)
    # Scored on the search's validation split (held out of both trainings).
    train_config.dataset.eval_split = search_config["dataset"]["valid_split"]
    train_config.dataset.train_split = search_config["dataset"]["train_split"]
    workload = Workload(int(train_config.dataset.image_size),
                        train.make_task(train_config, space.default_num_classes))
    indices = spread_architectures(space, SimulatorCostModel(space, workload), target, num)
    start = time.perf_counter()
    inherited = supernet_quality(search_dir, indices)
    supernet_s = time.perf_counter() - start
    standalone: dict[int, float] = {}
    figures: dict = {}
    for i in spread_order(len(indices)):
        arch_path = os.path.join(out_dir, "architectures", f"arch_{i:02d}.json")
        os.makedirs(os.path.dirname(arch_path), exist_ok=True)
        Architecture.from_indices(space, indices[i], name=f"rank_{i:02d}").save(arch_path)
        train_config.architecture = arch_path
        result = train.run_training(train_config, os.path.join(out_dir, f"arch_{i:02d}"),
                                    log=lambda _: None)
        standalone[i] = result["quality"]
        log(f"arch {i:02d}: supernet {inherited[i]:.4f}, standalone {standalone[i]:.4f}")
        done = sorted(standalone)
        figures = {
            "supernet_rank_kendall_tau": kendall_tau_b(
                np.asarray([inherited[j] for j in done]),
                np.asarray([standalone[j] for j in done])) if len(done) > 1 else None,
            "num_architectures": len(done), "trained": done,
            "supernet_quality": inherited, "standalone_quality": [
                standalone.get(j) for j in range(len(indices))],
            "indices": indices.tolist(), "search": os.path.abspath(search_dir),
            "recipe": recipe, "train_overrides": overrides,
            "wall_s": time.perf_counter() - start, "supernet_eval_s": supernet_s}
        if partial_json:  # a run cut short still leaves its figures
            write_json_atomic(partial_json, figures)
    return figures


def spread_order(num: int) -> list[int]:
    """0..num-1 in an order whose every prefix spreads over the range (ends first,
    then midpoints): a ranking cut short has trained a spread of latencies."""
    order, gaps = [0, num - 1][:num], [(0, num - 1)]
    while gaps:
        lo, hi = gaps.pop(0)
        if hi - lo > 1:
            mid = (lo + hi) // 2
            order.append(mid)
            gaps += [(lo, mid), (mid, hi)]
    return order


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--search", required=True, help="a finished search workdir")
    parser.add_argument("--out", required=True, help="folder for the standalone trainings")
    parser.add_argument("--num", type=int, default=20)
    parser.add_argument("--recipe", choices=RECIPES, default="full",
                        help="standalone training: the digits recipe or its multi-trial proxy")
    parser.add_argument("--train-override", action="append", default=[],
                        metavar="FIELD=VALUE")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.train_override)
    figures = run(args.search, args.out, args.num, args.recipe, overrides,
                  partial_json=args.json)
    print(f"Kendall tau-b (supernet vs standalone), {figures['num_architectures']} "
          f"architectures: {figures['supernet_rank_kendall_tau']:.3f} "
          f"({figures['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
