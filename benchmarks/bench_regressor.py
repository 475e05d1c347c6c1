"""Speed of the learned latency predictor: ms per 4,096 architectures, once compiled.

    /work/venv/bin/python benchmarks/bench_regressor.py [--workdir W] \
        [--space mobilenet_edgetpu_v2] [--model mlp] [--batch 4096]

With `--workdir`, times the trained model there (`tunas-jax train-cost-model`);
without, an untrained model of the default config's shape (speed does not
depend on the weights). Prints the median of repeated calls of the jitted
predictor on device-resident indices. Target: under 5 ms per 4,096 on CPU.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from cost_models.features import encoder_for
from cost_models.regressor import MODEL_KINDS, build_model, load_cost_model, make_predictor
from experiments.cost_models import base
from search_spaces import get_space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", help="a trained cost model's workdir")
    parser.add_argument("--space", default="mobilenet_edgetpu_v2")
    parser.add_argument("--target", default="pixel6_edgetpu")
    parser.add_argument("--model", default=base.get_config().model, choices=MODEL_KINDS)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()

    space = get_space(args.space)
    if args.workdir:
        predictor = load_cost_model(args.workdir, space, args.target)
        label = f"trained {predictor.metadata['model']['kind']} from {args.workdir}"
    else:
        config = base.get_config()
        encoder = encoder_for(space, config.kronecker_features)
        model = build_model(args.model, encoder, config.hidden_sizes)
        predictor = make_predictor(model, encoder, 1.0)
        label = f"untrained {args.model} {tuple(config.hidden_sizes)}"
    indices = jnp.asarray(space.sample(np.random.default_rng(0), args.batch), jnp.int32)
    predict = jax.jit(lambda p, x: p(x))
    start = time.perf_counter()
    predict(predictor, indices).block_until_ready()
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        predict(predictor, indices).block_until_ready()
        times.append(time.perf_counter() - start)
    ms = 1e3 * statistics.median(times)
    print(f"{label} on {space.name} ({predictor.encoder.num_fields} fields, "
          f"{predictor.encoder.vocab_size} slots), {jax.devices()[0].platform}: "
          f"{ms:.3f} ms per {args.batch} architectures ({ms * 4096 / args.batch:.3f} ms per 4096;"
          f" min {1e3 * min(times):.3f}), first call incl. compile {compile_s:.2f} s")


if __name__ == "__main__":
    main()
