"""Supernet training step vs the same child's standalone training step (CPU).

For 20 random architectures of a space, times one SGD training step of the
weight-sharing supernet (one compiled program for all of them, the
architecture passed as traced indices) against one step of the same child
built as a standalone flax.nnx model (compiled per architecture), and reports
the ratio of the means and the median per-architecture ratio. Also reports
the supernet's compile time.

    python benchmarks/bench_supernet_step.py [--space micro] [--num 20] [--batch 64]
"""

from __future__ import annotations

import argparse
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


def _loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def _time(fn, repeats: int) -> float:
    jax.block_until_ready(fn())  # warm-up (and compile, for a new function)
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / repeats


def run(space_name: str, num: int, batch: int, repeats: int, seed: int = 0) -> dict:
    space = get_space(space_name)
    size, classes = space.default_image_size, space.default_num_classes
    images = jax.random.normal(jax.random.key(1), (batch, size, size, 3))
    labels = jnp.arange(batch) % classes
    opt = optax.sgd(0.01, momentum=0.9)

    plan = make_plan(space)
    params = init_params(plan, classes, jax.random.key(0))
    opt_state = opt.init(params)

    @jax.jit
    def supernet_step(params, opt_state, indices):
        loss, grads = jax.value_and_grad(
            lambda p: _loss(apply(plan, p, indices, images), labels))(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    archs = space.sample(np.random.default_rng(seed), num)
    start = time.perf_counter()
    jax.block_until_ready(supernet_step(params, opt_state, jnp.asarray(archs[0], jnp.int32)))
    compile_s = time.perf_counter() - start

    supernet_s, standalone_s = [], []
    for indices in archs:
        idx = jnp.asarray(indices, jnp.int32)
        supernet_s.append(_time(lambda idx=idx: supernet_step(params, opt_state, idx)[2],
                                repeats))
        model = build_model(space.decode(indices), classes, rngs=nnx.Rngs(0))
        graphdef, model_params, rest = nnx.split(model, nnx.Param, ...)
        model_opt_state = opt.init(model_params)

        @jax.jit
        def standalone_step(model_params, rest, opt_state, graphdef=graphdef):
            def loss_fn(model_params, rest):
                # Fresh Variables at this trace level: batch norm writes its running
                # averages into them (nnx refuses writes across trace levels).
                model = nnx.merge(graphdef, model_params, jax.tree.map(lambda x: x, rest))
                return _loss(model(images), labels), nnx.state(model, nnx.Not(nnx.Param))
            (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(model_params, rest)
            updates, opt_state = opt.update(grads, opt_state, model_params)
            return optax.apply_updates(model_params, updates), rest, opt_state, loss

        standalone_s.append(_time(
            lambda p=model_params, r=rest, s=model_opt_state, f=standalone_step: f(p, r, s)[3],
            repeats))
    supernet_s, standalone_s = np.array(supernet_s), np.array(standalone_s)
    return {
        "space": space_name, "architectures": num, "batch": batch, "image_size": size,
        "supernet_compile_seconds": compile_s,
        "supernet_step_ms_mean": 1e3 * supernet_s.mean(),
        "standalone_step_ms_mean": 1e3 * standalone_s.mean(),
        "supernet_vs_standalone_step_ratio": float(supernet_s.mean() / standalone_s.mean()),
        "median_per_architecture_ratio": float(np.median(supernet_s / standalone_s)),
        "machine": f"{platform.machine()} {platform.processor() or ''} "
                   f"{jax.devices()[0].platform} x{jax.device_count()}".strip(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="micro")
    parser.add_argument("--num", type=int, default=20)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(run(args.space, args.num, args.batch, args.repeats), indent=2))


if __name__ == "__main__":
    main()
