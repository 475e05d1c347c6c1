"""Runs SCALE-Sim on a batch of layers; executed by `cost_models.scalesim_runner` in a subprocess.

This file runs under the SCALE-Sim virtual environment's Python (`.venv-scalesim`,
see README), not the project's: it imports only the standard library and
`scalesim`, never project modules. Protocol: one JSON object on stdin

    {"array_rows": R, "array_cols": C, "dataflow": "ws",
     "ifmap_sram_kb": .., "filter_sram_kb": .., "ofmap_sram_kb": ..,
     "layers": [[ifmap_h, ifmap_w, filter_h, filter_w, channels, num_filters,
                 stride], ...]}

and one JSON object on stdout: {"scalesim_version": ..., "layers": [{"cycles": ..,
"stall_cycles": .., "cycles_with_prefetch": .., "wall_s": ..}, ...]} in
request order; with `--check` instead, only whether SCALE-Sim can run here
(exit status 3 and the reason on stderr if not). `cycles` is SCALE-Sim's
"Total Cycles" (compute including stalls, its COMPUTE_REPORT column),
`cycles_with_prefetch` adds the initial DRAM fetch. Anything SCALE-Sim prints goes to stderr.

SCALE-Sim is driven layer by layer through `single_layer_sim` (the class its
own `simulator.run` loops over) with traces and reports off: it writes no
trace or report files. It is still run with a temporary working directory
that is removed afterwards, in case a version writes anything.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time


def run(request: dict) -> dict:
    from importlib.metadata import version

    from scalesim.layout_utils import layouts
    from scalesim.scale_config import scale_config
    from scalesim.single_layer_sim import single_layer_sim
    from scalesim.topology_utils import topologies

    config = scale_config()
    config.set_arr_dims(rows=request["array_rows"], cols=request["array_cols"])
    config.set_dataflow(request["dataflow"])
    config.set_buffer_sizes_kb(request["ifmap_sram_kb"], request["filter_sram_kb"],
                               request["ofmap_sram_kb"])
    config.set_bw_mode_to_calc()  # estimate DRAM bandwidth: no stalls from a made-up link
    config.force_valid()
    out = []
    with tempfile.TemporaryDirectory(prefix="scalesim-") as tmp:
        # The topology goes through SCALE-Sim's own CSV reader (it adds the
        # width-stride and sparsity columns its layer objects expect, so one
        # stride column only). Names avoid "DP": the reader would split such a
        # layer into per-channel layers.
        topo_path = os.path.join(tmp, "topology.csv")
        with open(topo_path, "w") as f:
            f.write("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, "
                    "Channels, Num Filter, Strides,\n")
            for i, row in enumerate(request["layers"]):
                f.write(f"layer{i}, " + ", ".join(str(int(v)) for v in row) + ",\n")
        topo = topologies()
        topo.load_arrays(topofile=topo_path)
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            for i in range(len(request["layers"])):
                start = time.perf_counter()
                sim = single_layer_sim()
                sim.set_params(layer_id=i, config_obj=config, topology_obj=topo,
                               layout_obj=layouts(), verbose=False)
                sim.run()
                with_prefetch, cycles, stalls = sim.get_compute_report_items()[:3]
                out.append({"cycles": int(cycles), "stall_cycles": int(stalls),
                            "cycles_with_prefetch": int(with_prefetch),
                            "wall_s": time.perf_counter() - start})
        finally:
            os.chdir(cwd)
    return {"scalesim_version": version("scalesim"), "layers": out}


def check() -> str | None:
    """Why SCALE-Sim cannot run in this Python, or None."""
    try:
        import numpy
        import scalesim  # noqa: F401
    except ImportError as err:
        return f"{sys.executable} cannot import scalesim ({err})"
    major, minor = (int(x) for x in numpy.__version__.split(".")[:2])
    if (major, minor) >= (2, 4):
        # scalesim 3.0.0 calls int() on one-element arrays, an error from numpy 2.4 on.
        return f"{sys.executable} has numpy {numpy.__version__}; SCALE-Sim needs numpy<2.4"
    return None


def main(argv: list[str]) -> int:
    problem = check()
    if problem is not None:
        print(problem, file=sys.stderr)
        return 3
    if "--check" in argv:
        return 0
    request = json.load(sys.stdin)
    with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the one JSON answer
        answer = run(request)
    json.dump(answer, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
