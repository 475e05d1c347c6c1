"""Run every benchmark and write BENCHMARKS.md (and, with --json, a JSON file).

    python benchmarks/run_all.py [--json FILE] [--quick] [--supernet-ranking W]

Benchmarks (all on this machine's CPU unless JAX sees an accelerator):
- supernet training step vs the same child's standalone step, averaged over
  20 random `micro` architectures, and the supernet's compile time
  (`bench_supernet_step.py`);
- the whole jitted search step of the default search
  (`bench_search_step.py`): with op warmup on (K = 1), each program's trace +
  lower + compile on a cold cache (the warm one during the warmup, the plain
  one after; `search_step_compile_seconds` is their sum, what such a search
  pays) and step time; with K = 4 architectures per device (op warmup off,
  skipped by `--quick`), the step time per architecture;
- controller and reward overhead per search step: the jitted controller
  sample + regressor prediction + reward + REINFORCE update, as a fraction of
  the supernet step measured in the same run;
- simulator throughput on `mobilenet_edgetpu_v2` per core (`bench_simulator.py`);
- learned regressor: ms per 4,096 predictions once compiled (`bench_regressor.py`);
- cost service: batch architectures/s through `tunas-jax serve-costs` and the
  p99 latency of single-network requests at 64 clients (`bench_service.py`,
  which also has the 1/8-client figures, the fuzz run and Ray scaling);
- cycle-accurate fidelity: SCALE-Sim vs analytical compute cycles on
  MobileNetV2's conv layers, Spearman and median ratio on `coral_edgetpu`
  (`bench_scalesim.py`; needs `.venv-scalesim`, README);
- opt-in, `--supernet-ranking W` (a finished search workdir, e.g. the default
  search's): Kendall's tau between the supernet's and standalone training's
  ranking of 20 architectures (`supernet_ranking.py`, the multi-trial proxy
  recipe; 40 min on 2 shared cores, its trainings resume in W_ranking/).
Not part of CI; about 25 minutes on 2 quiet cores (`--quick`: fewer architectures).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_regressor
import bench_scalesim
import bench_search_step
import bench_service
import bench_simulator
import bench_supernet_step
import supernet_ranking

import controllers
from cost_models.features import encoder_for
from cost_models.regressor import build_model, make_predictor
from experiments.cost_models import base as cost_base
from search_spaces import get_space, write_json_atomic
from search_spaces.fileio import atomic_write

HERE = os.path.dirname(os.path.abspath(__file__))
# The ranking's standalone recipe: the multi-trial proxy as it is (8 epochs; at 3 the
# first trained architectures stayed at chance: EXPERIMENTS.md section 9).
RANKING_OVERRIDES: dict[str, str] = {}
SEARCH_CONFIG = "experiments/search/micro_digits.py"


def controller_step_ms(space_name: str = "micro", repeats: int = 50) -> float:
    """Median ms of one jitted controller step: sample, predict latency, reward, update."""
    space = get_space(space_name)
    config = cost_base.get_config()
    encoder = encoder_for(space, config.kronecker_features)
    predictor = make_predictor(build_model(config.model, encoder, config.hidden_sizes),
                               encoder, 1.0)
    state = controllers.init(space, {"total_steps": 1000})
    reward_fn = controllers.make_reward_fn("abs", target_latency_ms=1.0)

    @jax.jit
    def step(state, key, predictor):
        indices = controllers.sample(state, key, num=1)
        reward = reward_fn(jnp.full((1,), 0.5), predictor(indices))
        return controllers.update(state, indices, reward)[0]

    key = jax.random.key(0)
    jax.block_until_ready(step(state, key, predictor))
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        state = jax.block_until_ready(step(state, jax.random.fold_in(key, i), predictor))
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


NOTES_MARKER = "<!-- notes: kept by run_all.py -->"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--quick", action="store_true", help="5 architectures, fewer samples")
    parser.add_argument("--supernet-ranking", metavar="W",
                        help="also rank 20 architectures with the supernet of search W and "
                             "with standalone training (~40 min; trainings kept in W_ranking)")
    args = parser.parse_args()
    num_archs = 5 if args.quick else 20
    command = "python benchmarks/run_all.py" + (" --quick" if args.quick else "")

    step = bench_supernet_step.run("micro", num_archs, 64, 9)
    controller_ms = controller_step_ms()
    search_steps = [bench_search_step.measure(SEARCH_CONFIG, 1, True, 3)]
    if not args.quick:
        search_steps.append(bench_search_step.measure(SEARCH_CONFIG, 4, False, 3))
    regressor = bench_regressor.run(repeats=30)
    simulator = bench_simulator.run(num=5000 if args.quick else 20000, one_core=True)
    service = {"batch": bench_service.batch(5000 if args.quick else 20000),
               "single": bench_service.single(128 if args.quick else 640)}
    scalesim = bench_scalesim.run("mobilenet_v2", ("coral_edgetpu",))
    scalesim_all = scalesim["targets"]["coral_edgetpu"]["all"]
    ranking = None
    if args.supernet_ranking:
        search_dir = os.path.abspath(args.supernet_ranking)
        ranking = supernet_ranking.run(search_dir, search_dir + "_ranking", 20, "proxy",
                                       dict(RANKING_OVERRIDES))
        command += f" --supernet-ranking {args.supernet_ranking}"

    figures = {
        "supernet_vs_standalone_step_ratio": step["supernet_vs_standalone_step_ratio"],
        "compile_seconds": step["supernet_compile_seconds"],
        "search_step_compile_seconds": search_step_compile_s(search_steps[0]),
        "search_step_ms_per_architecture": {
            f"k{s['architectures_per_device']}": s["plain_step_ms_per_architecture"]
            for s in search_steps},
        "controller_overhead_fraction": controller_ms / step["supernet_step_ms_mean"],
        "simulator_archs_per_second": simulator["simulator_archs_per_second"],
        "regressor_ms_per_4096": regressor["regressor_ms_per_4096"],
        "service_archs_per_second": service["batch"]["service_cold_archs_per_second"],
        "service_p99_ms_64_clients": service["single"]["clients_64"]["p99_ms"],
        "scalesim_vs_analytical_spearman": scalesim_all["spearman"],
        "scalesim_vs_analytical_ratio_median": scalesim_all["ratio_median"],
        "supernet_rank_kendall_tau": ranking and ranking["supernet_rank_kendall_tau"],
        "details": {"supernet_ranking": ranking, "supernet_step": step,
                    "search_step": search_steps,
                    "controller_step_ms": controller_ms, "regressor": regressor,
                    "simulator": simulator, "service": service, "scalesim": scalesim},
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores, "
                   f"jax {jax.__version__} on {jax.devices()[0].platform}",
        "date": datetime.date.today().isoformat(),
        "command": command,
    }
    if args.json:
        write_json_atomic(args.json, figures)
    path = os.path.join(os.path.dirname(HERE), "BENCHMARKS.md")
    notes = ""  # hand-written measurements below the marker survive a rerun
    if os.path.exists(path):
        with open(path) as f:
            old = f.read()
        if NOTES_MARKER in old:
            notes = "\n" + old[old.index(NOTES_MARKER):]
    with atomic_write(path) as f:
        f.write(render(figures, step, simulator, regressor, controller_ms) + notes)
    print(json.dumps({k: v for k, v in figures.items() if k != "details"}, indent=2))


def render(fig: dict, step: dict, sim: dict, reg: dict, controller_ms: float) -> str:
    rows = [
        (f"supernet step / standalone step of the same child (mean over "
         f"{step['architectures']} random `micro` archs of each one's median of "
         f"{step['repeats']} alternating calls, batch {step['batch']}, {step['image_size']} px)",
         f"**{fig['supernet_vs_standalone_step_ratio']:.2f}x** "
         f"({step['supernet_step_ms_mean']:.0f} ms vs {step['standalone_step_ms_mean']:.0f} ms;"
         f" median per-arch ratio {step['median_per_architecture_ratio']:.2f}; with each "
         f"architecture's fastest call {step['min_supernet_vs_standalone_step_ratio']:.2f}x)",
         "<= 1.3x"),
        ("supernet compile (grad step, `micro`)", f"{fig['compile_seconds']:.0f} s", "-"),
        *search_step_rows(fig),
        ("controller + regressor + reward + REINFORCE update per step",
         f"{controller_ms:.2f} ms = {100 * fig['controller_overhead_fraction']:.1f}% of a "
         "supernet step", "-"),
        (f"simulator, `{sim['space']}` on `{sim['target']}`, cold cache, one core",
         f"{fig['simulator_archs_per_second']:,.0f} archs/s (warm "
         f"{sim['cost_batch_warm_archs_per_second']:,.0f}/s; `simulate(describe(decode))` "
         f"{sim['simulate_describe_decode_archs_per_second']:,.0f}/s)", ">= 2,000/s"),
        (f"learned regressor ({reg['model']}), per 4,096 architectures once compiled",
         f"{fig['regressor_ms_per_4096']:.2f} ms", "< 5 ms"),
        *service_rows(fig["details"]["service"]),
        scalesim_row(fig["details"]["scalesim"]),
        ranking_row(fig["details"]["supernet_ranking"]),
    ]
    table = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    return (f"# Benchmarks\n\nMachine: {fig['machine']}. Date: {fig['date']}. "
            f"Command: `{fig['command']}`.\nCPU timings on a shared 2-core machine are noisy: "
            "compare ratios measured in one run.\n\n| benchmark | figure | target |\n"
            f"|---|---|---|\n{table}\n")

def program_compile_s(result: dict, program: str) -> float:
    """Trace + lower + compile of one program ('warm' or 'plain'; 0 if not run)."""
    return sum(result.get(f"{program}_{part}_s", 0.0) for part in ("trace", "lower", "compile"))


def search_step_compile_s(result: dict) -> float:
    """Trace + lower + compile of every program a search of `result`'s settings runs."""
    return program_compile_s(result, "warm") + program_compile_s(result, "plain")


def search_step_rows(fig: dict) -> list[tuple[str, str, str]]:
    """Table rows of the whole search step (`bench_search_step.measure`)."""
    warm = fig["details"]["search_step"][0]
    rows = [("default search step with op warmup (K = 1): trace + lower + compile, cold "
             "cache, of the warm and the plain program",
             f"{fig['search_step_compile_seconds']:.0f} s (warm "
             f"{program_compile_s(warm, 'warm'):.0f} s, plain "
             f"{program_compile_s(warm, 'plain'):.0f} s); steps: warm at p ~1 "
             f"{warm['warm_step_ms']:.0f} ms, plain "
             f"{warm['plain_step_ms']:.0f} ms", "<= 60 s")]
    rows += [(f"search step per architecture, K = {s['architectures_per_device']} "
              "(op warmup off)", f"{s['plain_step_ms_per_architecture']:.0f} ms", "-")
             for s in fig["details"]["search_step"][1:]]
    return rows


def ranking_row(ranking: dict | None) -> tuple[str, str, str]:
    """Table row of the supernet's ranking quality (`supernet_ranking.run`), opt-in."""
    name = "Kendall's tau, supernet vs standalone ranking of 20 `micro` archs"
    if ranking is None:
        return name, "not run (opt-in: `--supernet-ranking W`; EXPERIMENTS.md)", "-"
    return (f"{name} (standalone: {ranking['recipe']} recipe, "
            f"{ranking['train_overrides']})",
            f"{ranking['supernet_rank_kendall_tau']:.2f} ({ranking['wall_s']:.0f} s)", "-")


def service_rows(service: dict) -> list[tuple[str, str, str]]:
    """Table rows of the cost-service figures (`bench_service.batch` and `.single`)."""
    b, s = service["batch"], service["single"]
    c64 = s["clients_64"]
    return [
        (f"cost service batch, {b['num']:,} random `{b['space']}` archs, cold caches",
         f"{b['service_cold_archs_per_second']:,.0f} archs/s = {b['cold_ratio']:.2f}x in "
         f"process (warm {b['warm_ratio']:.2f}x)", ">= 0.8x"),
        (f"cost service, single `{s['network']}` requests, 64 concurrent clients",
         f"p99 {c64['p99_ms']:.0f} ms, p50 {c64['p50_ms']:.0f} ms, "
         f"{c64['requests_per_second']:.0f} req/s", "p99 < 50 ms"),
    ]


def scalesim_row(result: dict) -> tuple[str, str, str]:
    """Table row of the SCALE-Sim cross-check (`bench_scalesim.run`)."""
    s, w = result["targets"]["coral_edgetpu"]["all"], result["scalesim"]
    return (f"SCALE-Sim vs analytical compute cycles, {s['layers']} conv/FC layers of "
            f"`{result['network']}` on `coral_edgetpu`",
            f"Spearman {s['spearman']:.2f}, Pearson {s['pearson']:.2f}; ratio median "
            f"{s['ratio_median']:.2f} ({s['ratio_min']:.2f}-{s['ratio_max']:.2f}); "
            f"{w['wall_s_per_signature_median']:.1f} s per simulated layer", "-")


if __name__ == "__main__":
    main()
