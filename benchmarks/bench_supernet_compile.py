"""Trace and compile time of a space's supernet gradient step, per branch limit.

    python benchmarks/bench_supernet_compile.py --space mobilenet_edgetpu_v2 --limit 1 16

For each `max_branches_per_layer` (0 = every layer exact) this counts the
plan's switch branches, then lowers and compiles one jitted gradient of the
cross-entropy of `supernet.apply` (weights as shape structs: nothing is
allocated) at `--image-size` px and batch 2, and prints a JSON line per
limit. Why it exists: `mobilenet_edgetpu_v2` asks for 6,165 exact layer
configurations, and that number, not the weights, decides whether its
supernet compiles at all (`supernet/plan.py`). Not part of CI; minutes per
limit on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import optax

import search_spaces
import supernet
from tasks import Classification


def measure(space_name: str, limit: int, image_size: int, num_classes: int = 1000) -> dict:
    space = search_spaces.get_space(space_name)
    plan = supernet.make_plan(space, limit or None)
    branches = sum(len(b) for unit in plan.blocks for b in unit.branches)
    task = Classification(num_classes)
    shapes = jax.eval_shape(lambda: supernet.init_params(plan, task, jax.random.key(0)))

    def loss(params, indices, images, labels):
        logits, _ = supernet.apply(plan, task, params, indices, images)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    start = time.perf_counter()
    lowered = jax.jit(jax.grad(loss)).lower(
        shapes, jax.ShapeDtypeStruct((space.num_decisions,), jnp.int32),
        jax.ShapeDtypeStruct((2, image_size, image_size, 3), jnp.float32),
        jax.ShapeDtypeStruct((2,), jnp.int32))
    lower_s = time.perf_counter() - start
    start = time.perf_counter()
    lowered.compile()
    return {"space": space_name, "max_branches_per_layer": limit, "branches": branches,
            "weights": sum(int(a.size) for a in jax.tree_util.tree_leaves(shapes)),
            "image_size": image_size, "lower_s": round(lower_s, 1),
            "compile_s": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="mobilenet_edgetpu_v2")
    parser.add_argument("--limit", type=int, nargs="+", default=[1, 16],
                        help="max_branches_per_layer values (0 = exact everywhere)")
    parser.add_argument("--image-size", type=int, default=32)
    args = parser.parse_args()
    for limit in args.limit:
        print(json.dumps(measure(args.space, limit, args.image_size)), flush=True)


if __name__ == "__main__":
    main()
