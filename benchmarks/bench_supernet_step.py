"""Supernet training step vs the same child's standalone training step (CPU).

For 20 random architectures of a space, times one SGD training step of the
weight-sharing supernet (one compiled program for all of them, the
architecture passed as traced indices) against one step of the same child
built as a standalone flax.nnx model (compiled per architecture). The two
steps alternate call by call and donate their state, as the search and
training loops do. Reports the ratio of the mean step times (each
architecture's median call; also with its fastest call) and the median
per-architecture ratio, and the supernet's compile time.

    python benchmarks/bench_supernet_step.py [--space micro] [--num 20] [--batch 64]
        [--max-branches-per-layer 64]
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from search_spaces import get_space
from supernet import apply, build_model, init_params, make_plan
from supernet.plan import DEFAULT_MAX_BRANCHES_PER_LAYER
from tasks import Classification


def _loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


class _Timed:
    """A step run as a training loop runs it, `state = step(*state)`, timed call by call.

    The state is donated, so XLA writes the new weights into the old buffers
    instead of allocating fresh ones every step.
    """

    def __init__(self, step, state: tuple) -> None:
        self.step, self.state, self.seconds = step, step(*state), []  # warm-up (and compile)
        jax.block_until_ready(self.state)

    def __call__(self) -> None:
        start = time.perf_counter()
        self.state = self.step(*self.state)
        jax.block_until_ready(self.state)
        self.seconds.append(time.perf_counter() - start)


def run(space_name: str, num: int, batch: int, repeats: int, seed: int = 0,
        max_branches_per_layer: int | None = DEFAULT_MAX_BRANCHES_PER_LAYER) -> dict:
    space = get_space(space_name)
    size, classes = space.default_image_size, space.default_num_classes
    images = jax.random.normal(jax.random.key(1), (batch, size, size, 3))
    labels = jnp.arange(batch) % classes
    opt = optax.sgd(0.01, momentum=0.9)

    plan = make_plan(space, max_branches_per_layer)
    task = Classification(classes)
    params = init_params(plan, task, jax.random.key(0))
    opt_state = opt.init(params)

    def supernet_step(params, opt_state, indices):
        grads = jax.grad(lambda p: _loss(apply(plan, task, p, indices, images)[0], labels))(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, indices

    archs = space.sample(np.random.default_rng(seed), num)
    start = time.perf_counter()
    compiled_step = jax.jit(supernet_step, donate_argnums=(0, 1)).lower(
        params, opt_state, jnp.asarray(archs[0], jnp.int32)).compile()
    compile_s = time.perf_counter() - start

    supernet_s, standalone_s = [], []   # per architecture: all timed calls
    state = (params, opt_state)
    for indices in archs:
        model = build_model(space.decode(indices), classes, rngs=nnx.Rngs(0))
        graphdef, model_params, rest = nnx.split(model, nnx.Param, ...)

        @functools.partial(jax.jit, donate_argnums=(0, 1, 2))
        def standalone_step(model_params, rest, opt_state, graphdef=graphdef):
            def loss_fn(model_params, rest):
                # Fresh Variables at this trace level: batch norm writes its running
                # averages into them (nnx refuses writes across trace levels).
                model = nnx.merge(graphdef, model_params, jax.tree.map(lambda x: x, rest))
                return _loss(model(images)[0], labels), nnx.state(model, nnx.Not(nnx.Param))
            (_, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(model_params, rest)
            updates, opt_state = opt.update(grads, opt_state, model_params)
            return optax.apply_updates(model_params, updates), rest, opt_state

        supernet = _Timed(compiled_step, (*state, jnp.asarray(indices, jnp.int32)))
        standalone = _Timed(standalone_step, (model_params, rest, opt.init(model_params)))
        # Alternate the two, so that a slow spell of this shared machine (single calls
        # measured here at 2x their usual time, for seconds on end) hits both alike.
        for _ in range(repeats):
            supernet()
            standalone()
        supernet_s.append(supernet.seconds)
        standalone_s.append(standalone.seconds)
        state = supernet.state[:2]
    return {
        "space": space_name, "architectures": num, "batch": batch, "image_size": size,
        "repeats": repeats, "supernet_compile_seconds": compile_s,
        **_summary(np.array(supernet_s), np.array(standalone_s)),
        "machine": f"{platform.machine()} {platform.processor() or ''} "
                   f"{jax.devices()[0].platform} x{jax.device_count()}".strip(),
    }


def _summary(supernet_s: np.ndarray, standalone_s: np.ndarray) -> dict:
    """[architectures, repeats] seconds -> the figures. The headline uses each
    architecture's median call; the minimum (the machine's undisturbed time) is
    reported beside it."""
    out = {}
    for stat, fn in (("median", np.median), ("min", np.min)):
        sup, std = 1e3 * fn(supernet_s, axis=1), 1e3 * fn(standalone_s, axis=1)
        prefix = "" if stat == "median" else "min_"
        out.update({
            f"{prefix}supernet_step_ms_mean": float(sup.mean()),
            f"{prefix}standalone_step_ms_mean": float(std.mean()),
            f"{prefix}supernet_vs_standalone_step_ratio": float(sup.mean() / std.mean()),
            f"{prefix}median_per_architecture_ratio": float(np.median(sup / std)),
        })
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="micro")
    parser.add_argument("--num", type=int, default=20)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--max-branches-per-layer", type=int,
                        default=DEFAULT_MAX_BRANCHES_PER_LAYER,
                        help="the plan's branch limit (0: exact everywhere)")
    args = parser.parse_args()
    print(json.dumps(run(args.space, args.num, args.batch, args.repeats,
                         max_branches_per_layer=args.max_branches_per_layer or None),
                     indent=2))


if __name__ == "__main__":
    main()
