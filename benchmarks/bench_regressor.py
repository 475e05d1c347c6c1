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


def run(workdir: str | None = None, space_name: str = "mobilenet_edgetpu_v2",
        target: str = "pixel6_edgetpu", model: str | None = None, batch: int = 4096,
        repeats: int = 50) -> dict:
    """Median ms per `batch` predictions of the jitted predictor, once compiled."""
    space = get_space(space_name)
    if workdir:
        predictor = load_cost_model(workdir, space, target)
        label = f"trained {predictor.metadata['model']['kind']} from {workdir}"
    else:
        config = base.get_config()
        model = model or config.model
        encoder = encoder_for(space, config.kronecker_features)
        predictor = make_predictor(build_model(model, encoder, config.hidden_sizes), encoder, 1.0)
        label = f"untrained {model} {tuple(config.hidden_sizes)}"
    indices = jnp.asarray(space.sample(np.random.default_rng(0), batch), jnp.int32)
    predict = jax.jit(lambda p, x: p(x))
    start = time.perf_counter()
    predict(predictor, indices).block_until_ready()
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predict(predictor, indices).block_until_ready()
        times.append(time.perf_counter() - start)
    ms = 1e3 * statistics.median(times)
    return {"model": label, "space": space_name, "batch": batch,
            "fields": predictor.encoder.num_fields, "slots": predictor.encoder.vocab_size,
            "platform": jax.devices()[0].platform, "ms_per_batch": ms,
            "regressor_ms_per_4096": ms * 4096 / batch, "min_ms": 1e3 * min(times),
            "compile_seconds": compile_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", help="a trained cost model's workdir")
    parser.add_argument("--space", default="mobilenet_edgetpu_v2")
    parser.add_argument("--target", default="pixel6_edgetpu")
    parser.add_argument("--model", default=base.get_config().model, choices=MODEL_KINDS)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    r = run(args.workdir, args.space, args.target, args.model, args.batch, args.repeats)
    print(f"{r['model']} on {r['space']} ({r['fields']} fields, {r['slots']} slots), "
          f"{r['platform']}: {r['ms_per_batch']:.3f} ms per {r['batch']} architectures "
          f"({r['regressor_ms_per_4096']:.3f} ms per 4096; min {r['min_ms']:.3f}), "
          f"first call incl. compile {r['compile_seconds']:.2f} s")


if __name__ == "__main__":
    main()
