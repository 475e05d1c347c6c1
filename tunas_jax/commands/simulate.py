"""`tunas-jax simulate`: a simulator dataset for a space, or the per-layer cost of one network.

    tunas-jax simulate --space mobilenet_edgetpu_v2 --target pixel6_edgetpu --num 20000 \
        --out /tmp/v2_pixel6.npz [--seed 0] [--workers 0] [--executor local|ray \
        --ray-address ADDRESS]
    tunas-jax simulate --network my_net.json --target coral_edgetpu [--format json] \
        [--service HOST:PORT[,HOST:PORT...] | --fidelity cycle_accurate]

With --network, each layer's row names what bounds it: `compute` (the
array), `memory` (on-chip traffic, spilled activations) or `streaming`
(its weights do not fit the parameter cache and cross the off-chip link
every inference). `--format json` prints the same as one JSON object.
`--service` costs the network (or the dataset) on a `tunas-jax serve-costs`
server instead of in this process (same output, to the last digit).
`--fidelity cycle_accurate` takes the compute cycles of the conv / matmul
layers from SCALE-Sim (its own environment, `.venv-scalesim`: README) on an
edgetpu target; `cycle_accurate_layers` in the JSON lists them.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from cost_models import dataset as dataset_lib
from cost_models.hardware import get_target, target_names
from cost_models.simulator import SimulationResult, simulate
from search_spaces import DEFAULT_SPACE, get_space
from search_spaces import network as network_lib
from tunas_jax import cost_model_training
from tunas_jax.errors import UsageError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "simulate", help="simulate sampled architectures to a dataset, or cost one network",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", required=True, help=f"hardware target: {target_names()}")
    parser.add_argument("--network", help="a network-description JSON: print its per-layer "
                        "costs instead of writing a dataset")
    parser.add_argument("--format", choices=("table", "json"), default="table",
                        help="with --network: a text table (default) or JSON")
    parser.add_argument("--service", help="cost the --network, or the dataset, on this cost "
                        "service (HOST:PORT, or a comma-separated list: round-robin)")
    parser.add_argument("--fidelity", choices=("analytical", "cycle_accurate"),
                        default="analytical", help="with --network: the analytical simulator "
                        "(default) or SCALE-Sim's compute cycles on conv/matmul layers "
                        "(cost_models.scalesim_runner; in this process)")
    parser.add_argument("--space", default=DEFAULT_SPACE, help="search space to sample")
    parser.add_argument("--num", type=int, help="architectures to simulate (presets included)")
    parser.add_argument("--out", help="dataset file to write (.npz)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--workers", type=int, default=0,
                        help="processes (or Ray actors); 0 = all cores")
    parser.add_argument("--executor", choices=dataset_lib.EXECUTORS, default="local",
                        help="where the dataset is simulated: this machine's processes "
                        "(default) or a Ray cluster (the 'ray' extra)")
    parser.add_argument("--ray-address", help="with --executor ray: the cluster (default: "
                        "the running one, else a local one)")
    parser.add_argument("--image-size", type=int, help="input size; default: the space's")
    parser.add_argument("--num-classes", type=int, help="classes; default: the space's")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.network:
        network = network_lib.load(args.network)
        exact = None
        if args.fidelity == "cycle_accurate":
            if args.service:
                raise UsageError("--fidelity cycle_accurate: costs in this process; drop "
                                 "--service (or send an Evaluate with CYCLE_ACCURATE)")
            from cost_models.scalesim_runner import (
                ScaleSimRunner,
                check_target,
                simulate_cycle_accurate,
            )

            target = check_target(args.target, "--target")
            result, exact = simulate_cycle_accurate(network, target, ScaleSimRunner())
        else:
            result = (remote_simulate(args.service, network, args.target) if args.service
                      else simulate(network, get_target(args.target)))
        if args.format == "json":
            doc = result.to_json()
            if exact is not None:
                doc["cycle_accurate_layers"] = list(exact)
            shapes = {layer.name: list(layer.output_shape) for layer in network.layers}
            for entry in doc["layers"]:
                entry["output_shape"] = shapes[entry["name"]]
            print(json.dumps(doc, indent=1))
        else:
            print(network_report(result, network))
            if exact is not None:
                print(f"cycle-accurate (SCALE-Sim) compute cycles: {', '.join(exact) or 'none'}")
        return 0
    if args.fidelity != "analytical":
        raise UsageError("--fidelity cycle_accurate: with --network only (datasets are "
                         "analytical)")
    if args.num is None or args.out is None:
        raise UsageError("--num and --out are required to write a dataset (or pass --network)")
    simulate_to_file(args.space, args.target, args.num, args.out, seed=args.seed,
                     workers=args.workers or None, image_size=args.image_size,
                     num_classes=args.num_classes, executor=args.executor,
                     ray_address=args.ray_address, cost_service=args.service)
    return 0


def remote_simulate(service: str, network: network_lib.NetworkDescription,
                    target: str) -> SimulationResult:
    """`simulate(network, target)` on a cost service (needs the 'service' extra)."""
    try:
        from cost_service.client import RemoteCostModel, ServiceError
    except ImportError as err:
        raise UsageError(f"--service needs the 'service' extra ({err}); "
                         "pip install 'tunas-jax[service]'") from None
    try:
        with RemoteCostModel(service) as remote:
            return remote.simulate(network, target)
    except ServiceError as err:
        raise UsageError(str(err)) from None


def simulate_to_file(space_name: str, target_name: str, num: int, out: str, seed: int = 0,
                     workers: int | None = None, image_size: int | None = None,
                     num_classes: int | None = None, executor: str = "local",
                     ray_address: str | None = None, cost_service: str | None = None
                     ) -> dataset_lib.SimulatorDataset:
    """Sample, simulate (all cores, with a progress bar) and write a dataset file."""
    space, target = get_space(space_name), get_target(target_name)
    start = time.perf_counter()
    data = cost_model_training.simulate_to_file(space, target, num, out, seed=seed,
                                                image_size=image_size,
                                                num_classes=num_classes, workers=workers,
                                                executor=executor, ray_address=ray_address,
                                                cost_service=cost_service)
    seconds = time.perf_counter() - start
    lat = data.latency_ms
    print(f"wrote {out}: {len(data)} architectures of {space.name} on {target.name} "
          f"(presets: {sorted(data.metadata['presets']) or 'none'}) in {seconds:.1f} s; "
          f"latency {lat.min():.3f}-{lat.max():.3f} ms (median {float(np.median(lat)):.3f})")
    return data


def network_report(result: SimulationResult, network: network_lib.NetworkDescription | None
                   = None) -> str:
    """Per-layer table (name, op, output shape, MACs, cycles, bound, utilization, latency)."""
    shapes = {layer.name: layer.output_shape for layer in network.layers} if network else {}
    header = (f"{'layer':28s} {'op':16s} {'shape':>14s} {'MACs':>12s} {'cycles':>9s} "
              f"{'bound':9s} {'util':>6s} {'latency_ms':>10s}")
    rows = [f"{result.network} on {result.target}", header, "-" * len(header)]
    for c in result.layers:
        shape = "x".join(map(str, shapes[c.name])) if c.name in shapes else ""
        rows.append(f"{c.name[:28]:28s} {c.op[:16]:16s} {shape:>14s} {c.macs:12,d} "
                    f"{c.compute_cycles:9d} {c.bound:9s} {100 * c.utilization:5.1f}% "
                    f"{c.latency_ms:10.4f}")
    rows.append("-" * len(header))
    streamed = result.streamed_weight_bytes / 2**20
    rows.append(f"total: latency {result.latency_ms:.4f} ms (I/O and overhead "
                f"{result.io_ms:.4f} ms), energy {result.energy_mj:.4f} mJ, "
                f"{result.params:,d} params, {result.macs:,d} MACs, "
                f"{streamed:.2f} MiB of weights streamed per inference")
    return "\n".join(rows)
