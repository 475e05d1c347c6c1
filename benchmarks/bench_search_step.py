"""Compile time and cost per architecture of the whole jitted search step (CPU).

    python benchmarks/bench_search_step.py [--config experiments/search/micro_digits.py]
        [--k 1 4] [--op-warmup on off] [--repeats 5]

For each (architectures_per_device K, op warmup on/off) this builds the step a
search of `--config` runs (`tunas_jax.search_step.make_step`: K supernet
training passes, the shared-weight update, K validation passes, latency
prediction, rewards, the REINFORCE update) with an untrained regressor of the
config's kind (its numbers do not change the program). For each program the
search runs (op warmup on: the warm one during the warmup, then the plain one;
off: the plain one) it reports the jaxpr's size (equations, sub-jaxprs
included), the bytes its scans stack per step (`*_scan_outputs_mb`), the
trace, lower and compile times (`*_compile_s`: what a search pays on a cold
compilation cache) and the median of `--repeats` steps at the config's batch
sizes (warm: the warmup's second step, probability ~1, and the same program
past the warmup; plain: past the warmups), also per architecture.
Prints one JSON line each.
Not part of CI; minutes per line on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import supernet
from cost_models.features import encoder_for
from cost_models.regressor import build_model, make_predictor
from experiments.cost_models import base as cost_base
from search_spaces import get_space
from tasks import get_task
from tunas_jax import search, search_step


def measure(config_path: str, k: int, op_warmup: bool, repeats: int) -> dict:
    config = search.load_search_config(config_path, {"architectures_per_device": str(k)})
    if not op_warmup:
        config.controller.op_warmup_fraction = 0.0
    elif not config.controller.op_warmup_fraction:
        config.controller.op_warmup_fraction = config.controller.delay_fraction
    space = get_space(config.space)
    size, classes = int(config.dataset.image_size), 10
    plan = supernet.make_plan(space, int(config.max_branches_per_layer) or None)
    task = get_task(config.task, num_classes=classes)
    steps, batch = int(config.steps), int(config.batch_size)
    valid_batch = int(config.valid_batch_size) or 4 * batch
    optimizer, schedule = search_step.make_optimizer(config.optimizer, steps, batch)
    cm = cost_base.get_config()
    encoder = encoder_for(space, cm.kronecker_features)
    predictor = make_predictor(build_model(cm.model, encoder, cm.hidden_sizes), encoder, 1.0)
    mesh = search_step.make_mesh(1)
    reward_params = search_step.RewardParams.create(float(config.target_latency_ms),
                                                    float(config.reward_beta))
    step = search_step.make_step(
        space, plan, task, optimizer, schedule, predictor, config.reward, reward_params,
        float(config.optimizer.label_smoothing), mesh,
        weight_decay=search_step.masked_weight_decay(config.optimizer),
        architectures_per_device=k)
    state = search_step.replicate(search_step.init_state(
        space, plan, task, optimizer, search.controller_config(config), 0), mesh)
    rng = np.random.default_rng(0)

    def batch_of(n: int) -> dict:
        return {"image": jnp.asarray(rng.standard_normal((n, size, size, 3)), jnp.float32),
                "label": jnp.asarray(rng.integers(0, classes, n), jnp.int32)}

    train, valid = batch_of(batch), batch_of(valid_batch)
    out = {"config": config_path, "architectures_per_device": k, "op_warmup": op_warmup,
           "batch_size": batch, "valid_batch_size": valid_batch}
    # A search with op warmup runs the warm program during the warmup, the plain one
    # after; without, the plain one only. Each: traced, lowered, compiled, then timed.
    for warm in ((True, False) if op_warmup else (False,)):
        name = "warm" if warm else "plain"
        start = time.perf_counter()
        traced = step.trace(warm, state, train, valid)
        out[f"{name}_trace_s"] = round(time.perf_counter() - start, 1)
        out[f"{name}_jaxpr_eqns"] = count_equations(traced.jaxpr.jaxpr)
        out[f"{name}_scan_outputs_mb"] = round(scan_output_bytes(traced.jaxpr.jaxpr) / 2**20, 1)
        start = time.perf_counter()
        lowered = traced.lower()
        out[f"{name}_lower_s"] = round(time.perf_counter() - start, 1)
        start = time.perf_counter()
        compiled = lowered.compile()
        out[f"{name}_compile_s"] = round(time.perf_counter() - start, 1)
        # Warm: the warmup's second step (op warmup probability ~1); plain: past the
        # warmups (one architecture per supernet pass).
        state = search_step.replicate(state.replace(
            step=jnp.int32(1 if warm else steps // 2)), mesh)
        assert step.uses_warm_program(state) == warm

        def median_step_s(state, compiled=compiled):
            times = []
            for _ in range(repeats + 1):  # the first untimed
                start = time.perf_counter()
                state, metrics = compiled(state, (predictor,), reward_params, train, valid)
                jax.block_until_ready(metrics)
                times.append(time.perf_counter() - start)
            return float(np.median(times[1:])), state

        step_s, state = median_step_s(state)
        out[f"{name}_step_ms"] = round(1e3 * step_s, 1)
        out[f"{name}_step_ms_per_architecture"] = round(1e3 * step_s / k, 1)
        if warm:  # what every step after the warmup cost before the plain program
            step_s, state = median_step_s(search_step.replicate(
                state.replace(step=jnp.int32(steps // 2)), mesh))
            out["warm_program_after_warmup_step_ms"] = round(1e3 * step_s, 1)
    out["machine"] = f"{jax.devices()[0].platform} x{jax.device_count()}"
    return out


def scan_output_bytes(jaxpr: Any) -> int:
    """Bytes the `lax.scan`s of a jaxpr write as stacked outputs (nested ones included):
    under differentiation, the residuals each iteration saves for the backward pass."""
    total = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "scan":
            total += sum(int(np.prod(v.aval.shape)) * v.aval.dtype.itemsize
                         for v in eqn.outvars)
        for param in eqn.params.values():
            for sub in (param if isinstance(param, (list, tuple)) else (param,)):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    total += scan_output_bytes(inner)
    return total


def count_equations(jaxpr: Any) -> int:
    """Equations of a jaxpr, those of every sub-jaxpr (scan, cond, custom_vjp) included."""
    total = 0
    for eqn in jaxpr.eqns:
        total += 1
        for param in eqn.params.values():
            for sub in (param if isinstance(param, (list, tuple)) else (param,)):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    total += count_equations(inner)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/search/micro_digits.py")
    parser.add_argument("--k", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--op-warmup", nargs="+", default=["on", "off"], choices=["on", "off"])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    for k in args.k:
        for warm in args.op_warmup:
            print(json.dumps(measure(args.config, k, warm == "on", args.repeats)), flush=True)


if __name__ == "__main__":
    main()
