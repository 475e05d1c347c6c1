"""Cross-check: SCALE-Sim's compute cycles vs the analytical model's, layer by layer.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_scalesim.py \
        [--network mobilenet_v2] [--targets coral_edgetpu pixel6_edgetpu] [--json FILE]

For every layer both model (conv2d, fully_connected, matmul; see
`cost_models.scalesim_runner`) of a shipped network
(`cost_models/networks/NAME.json`), on each target: SCALE-Sim's cycles
(weight stationary, the target's array; groups emulated as independent convs)
and the analytical mapper's (`cost_models.simulator.mapping_cycles`). Reports
the Pearson and Spearman correlation over the layers and the median / min /
max ratio SCALE-Sim / analytical, for all layers and apart for dense
(groups = 1) and grouped/depthwise ones (the group emulation cannot pack
groups as the analytical mapper does), plus SCALE-Sim's wall time per
simulated layer signature. Starts from an empty cycle cache (a temporary
folder, removed afterwards) so the wall times are real; targets with the same
SCALE-Sim array share its simulations. Needs `.venv-scalesim` (README).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np
from scipy import stats

from cost_models.hardware import get_target
from cost_models.scalesim_runner import ArrayConfig, ScaleSimRunner, scalesim_layer
from cost_models.simulator import simulate
from search_spaces.network import load

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _summary(sim: list[int], ana: list[int]) -> dict:
    ratios = [s / a for s, a in zip(sim, ana, strict=True)]
    out = {"layers": len(sim), "ratio_median": statistics.median(ratios),
           "ratio_min": min(ratios), "ratio_max": max(ratios)}
    if len(sim) > 2:
        out["pearson"] = float(stats.pearsonr(sim, ana)[0])
        out["spearman"] = float(stats.spearmanr(sim, ana)[0])
    return out


def run(network: str = "mobilenet_v2",
        targets: tuple[str, ...] = ("coral_edgetpu", "pixel6_edgetpu")) -> dict:
    net = load(os.path.join(ROOT, "cost_models", "networks", f"{network}.json"))
    result: dict = {"network": network, "network_layers": len(net.layers), "targets": {}}
    with tempfile.TemporaryDirectory(prefix="bench-scalesim-") as cache:
        runner = ScaleSimRunner(cache_dir=cache)
        for name in targets:
            target = get_target(name)
            start = time.perf_counter()
            sim = runner.layer_cycles(net, target)
            elapsed = time.perf_counter() - start
            analytical = {c.name: c.compute_cycles for c in simulate(net, target).layers}
            groups = {layer.name: layer.groups for layer in net.layers
                      if scalesim_layer(layer) is not None}
            rows = [{"layer": n, "groups": groups[n], "scalesim_cycles": c,
                     "analytical_cycles": analytical[n]} for n, c in sim.items()]
            part = {"array": ArrayConfig.from_target(target).__dict__,
                    "wall_s_with_subprocess": elapsed, "rows": rows}
            for kind, keep in (("all", lambda r: True), ("dense", lambda r: r["groups"] == 1),
                               ("grouped", lambda r: r["groups"] > 1)):
                sel = [r for r in rows if keep(r)]
                if sel:
                    part[kind] = _summary([r["scalesim_cycles"] for r in sel],
                                          [r["analytical_cycles"] for r in sel])
            result["targets"][name] = part
        walls = list(runner.wall_s.values())
        result["scalesim"] = {"signatures_simulated": runner.simulations,
                              "wall_s_per_signature_median": float(np.median(walls)),
                              "wall_s_per_signature_max": max(walls),
                              "wall_s_total": sum(walls)}
    return result


def markdown(result: dict) -> str:
    lines = ["| target | layers | Pearson | Spearman | ratio median (min-max) |",
             "|---|---|---|---|---|"]
    for name, part in result["targets"].items():
        for kind in ("all", "dense", "grouped"):
            s = part.get(kind)
            if s is None:
                continue
            corr = (f"{s['pearson']:.3f} | {s['spearman']:.3f}" if "pearson" in s
                    else "- | -")
            lines.append(f"| `{name}` {kind} | {s['layers']} | {corr} | "
                         f"{s['ratio_median']:.2f} ({s['ratio_min']:.2f}-{s['ratio_max']:.2f}) |")
    w = result["scalesim"]
    lines.append(f"\nSCALE-Sim: {w['signatures_simulated']} layer signatures simulated, "
                 f"{w['wall_s_per_signature_median']:.2f} s median per signature "
                 f"(max {w['wall_s_per_signature_max']:.1f} s, total {w['wall_s_total']:.0f} s).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="mobilenet_v2")
    parser.add_argument("--targets", nargs="+", default=["coral_edgetpu", "pixel6_edgetpu"])
    parser.add_argument("--json", help="also write the full result (every layer) here")
    args = parser.parse_args(argv)
    result = run(args.network, tuple(args.targets))
    if args.json:
        from search_spaces import write_json_atomic

        write_json_atomic(args.json, result)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
