"""The `cycle_accurate` fidelity: compute cycles of conv / matmul layers from SCALE-Sim.

SCALE-Sim (`scalesim` on PyPI, a cycle-accurate systolic-array simulator) needs
numpy < 2.4 and pulls in numba, pandas and matplotlib, so it lives in its own
virtual environment (default `<repo>/.venv-scalesim`, see README) and runs in a
subprocess (`cost_models/scalesim_worker.py`, stdlib + scalesim only). Which
Python runs it: `ScaleSimRunner(python=...)`, else `$TUNAS_SCALESIM_PYTHON`,
else `<repo>/.venv-scalesim/bin/python`.

What SCALE-Sim models here (`scalesim_layer`), the rest stays analytical:
- `conv2d` (any groups, dilation): SCALE-Sim has no grouped or depthwise conv,
  so a conv with g groups is emulated as g independent convs of
  (C/g -> N/g) channels: one simulation, cycles times g. Unlike the
  analytical mapper, which packs small groups block-diagonally into one
  pass, the emulation runs every group as its own pass over the full array,
  so grouped/depthwise layers come out slower (BENCHMARKS.md reports the two
  kinds apart). SCALE-Sim convolves without padding: the ifmap is given as
  (out - 1) * stride + kernel pixels so that its output has exactly our
  layer's output pixels. Dilation changes which pixels a tap reads, not the
  work, so it is dropped (as in the analytical model). SCALE-Sim takes one
  stride for both axes: a layer with unequal strides is given stride 1 and an
  ifmap with the same output pixels (the compute cycles depend on the pixel
  count, not on the stride).
- `fully_connected`: a 1x1 conv on one pixel. `matmul` [B, M, K] x [B, K, N]:
  B groups of a 1x1 conv of K -> N channels over M pixels.
- `conv2d_transpose` and `attention` are not modelled (analytical cycles).

Array: `HardwareTarget.pe_rows` rows x `pe_cols * simd_lanes` columns, weight
stationary (`ws`): the analytical model's mapping (rows take the reduction
depth K = kernel taps x input channels per group, columns and the lanes of a
PE the output channels; output pixels stream through), so the two models
differ in timing detail, not in the mapping. SRAM sizes: the target's
activation memory split evenly between ifmap and ofmap, the parameter memory
as filter SRAM. DRAM bandwidth is SCALE-Sim's CALC mode (estimated, no
stalls): memory time is the analytical model's business.

Cache: cycles per (array, layer signature) as one small JSON file each under
`cache_dir` (default `$TUNAS_SCALESIM_CACHE`, else `~/.cache/tunas-jax/scalesim`),
written atomically; a repeated layer (within a network, across networks and
processes) is simulated once. Entries record the SCALE-Sim version; delete
the folder after changing it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from cost_models.hardware import HardwareTarget, get_target
from cost_models.simulator import SimulationResult, assemble, edgetpu_layer_cost, weights_cached
from search_spaces import NetworkDescription, SpecError
from search_spaces.network import Layer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "cost_models", "scalesim_worker.py")
PYTHON_ENV = "TUNAS_SCALESIM_PYTHON"
CACHE_ENV = "TUNAS_SCALESIM_CACHE"
DEFAULT_PYTHON = os.path.join(ROOT, ".venv-scalesim", "bin", "python")
INSTALL = ("python3 -m venv .venv-scalesim && .venv-scalesim/bin/pip install "
           "scalesim==3.0.0 'numpy<2.4'")
# Bump when the worker protocol or the layer translation changes (old entries then miss).
CACHE_FORMAT = 1
KIB = 1024


class ScaleSimUnavailable(SpecError):
    """No Python with SCALE-Sim where the runner looks; the message says how to get one."""


@dataclasses.dataclass(frozen=True)
class ArrayConfig:
    """A SCALE-Sim architecture: array dims, dataflow, SRAM sizes in KiB."""

    rows: int
    cols: int
    dataflow: str = "ws"
    ifmap_sram_kb: int = 2048
    filter_sram_kb: int = 8192
    ofmap_sram_kb: int = 2048

    @classmethod
    def from_target(cls, target: HardwareTarget) -> ArrayConfig:
        half_activation_kb = max(1, target.activation_memory_bytes // 2 // KIB)
        return cls(target.pe_rows, target.pe_cols * target.simd_lanes, "ws",
                   half_activation_kb, max(1, target.param_memory_bytes // KIB),
                   half_activation_kb)


@dataclasses.dataclass(frozen=True)
class ConvSignature:
    """One SCALE-Sim topology row (one group of a layer; no padding, one stride)."""

    ifmap_h: int
    ifmap_w: int
    filter_h: int
    filter_w: int
    channels: int
    num_filters: int
    stride: int

    def row(self) -> list[int]:
        return [self.ifmap_h, self.ifmap_w, self.filter_h, self.filter_w, self.channels,
                self.num_filters, self.stride]


def _conv(out_h: int, out_w: int, kh: int, kw: int, cin: int, cout: int,
          stride_hw: tuple[int, int]) -> ConvSignature:
    sh, sw = stride_hw
    stride = sh if sh == sw else 1
    return ConvSignature((out_h - 1) * stride + kh, (out_w - 1) * stride + kw, kh, kw, cin, cout,
                         stride)


def scalesim_layer(layer: Layer) -> tuple[ConvSignature, int] | None:
    """(one group's topology row, how many times it runs), or None: not modelled."""
    if layer.op == "conv2d":
        out_h, out_w, cout = layer.output_shape
        kh, kw = layer.kernel_hw
        g = layer.groups
        return _conv(out_h, out_w, kh, kw, layer.input_shape[2] // g, cout // g,
                     layer.stride_hw), g
    if layer.op == "fully_connected":
        return _conv(1, 1, 1, 1, layer.input_shape[2], layer.output_shape[2], (1, 1)), 1
    if layer.op == "matmul":
        batch, m, n = layer.output_shape
        return _conv(1, m, 1, 1, layer.matmul_depth, n, (1, 1)), batch
    return None


class ScaleSimRunner:
    """SCALE-Sim in a subprocess with an on-disk cycle cache; thread-safe.

    `simulations` counts layers actually simulated, `cache_hits` those read
    from the cache; `wall_s` maps a simulated signature to SCALE-Sim's time.
    """

    def __init__(self, python: str | None = None, cache_dir: str | None = None,
                 timeout_s: float = 900.0) -> None:
        self.python = python or os.environ.get(PYTHON_ENV) or DEFAULT_PYTHON
        self.cache_dir = cache_dir or os.environ.get(CACHE_ENV) or os.path.join(
            os.path.expanduser("~"), ".cache", "tunas-jax", "scalesim")
        self.timeout_s = timeout_s
        self.simulations = 0
        self.cache_hits = 0
        self.wall_s: dict[ConvSignature, float] = {}
        self._lock = threading.Lock()
        self._checked = False

    def _unavailable(self, problem: str) -> ScaleSimUnavailable:
        return ScaleSimUnavailable(
            f"scalesim python: {problem}; the cycle_accurate fidelity runs SCALE-Sim in its "
            f"own environment. Create it in the repository root ({INSTALL}) or point "
            f"${PYTHON_ENV} at a Python that has scalesim==3.0.0 and numpy<2.4")

    def check(self) -> None:
        """Raise ScaleSimUnavailable (naming the setting and the fix) unless SCALE-Sim runs
        in `python` (asked once per runner, by the worker's `--check`)."""
        if self._checked:
            return
        if not (os.path.isfile(self.python) and os.access(self.python, os.X_OK)):
            raise self._unavailable(f"{self.python} does not exist")
        proc = subprocess.run([self.python, WORKER, "--check"], capture_output=True, text=True,
                              timeout=120, check=False)
        if proc.returncode != 0:
            raise self._unavailable(proc.stderr.strip()[-500:] or f"exit {proc.returncode}")
        self._checked = True

    # ---- cache ------------------------------------------------------------------
    def _path(self, array: ArrayConfig, sig: ConvSignature) -> str:
        key = json.dumps([CACHE_FORMAT, dataclasses.astuple(array), sig.row()])
        return os.path.join(self.cache_dir, hashlib.sha256(key.encode()).hexdigest()[:32]
                            + ".json")

    def _read(self, path: str) -> int | None:
        try:
            with open(path) as f:
                return int(json.load(f)["cycles"])
        except (OSError, ValueError, KeyError, TypeError):
            return None  # absent or unreadable: simulate again (and overwrite)

    def _write(self, path: str, entry: dict[str, Any]) -> None:
        os.makedirs(self.cache_dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.cache_dir, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(entry, f)
        os.replace(tmp, path)  # atomic: a reader sees the old file or the whole new one

    # ---- simulating -------------------------------------------------------------
    def cycles(self, signatures: Sequence[ConvSignature], array: ArrayConfig) -> list[int]:
        """SCALE-Sim cycles of each signature (one group, once); uncached ones in one run."""
        with self._lock:
            found: dict[ConvSignature, int] = {}
            missing = []
            for sig in dict.fromkeys(signatures):
                value = self._read(self._path(array, sig))
                if value is None:
                    missing.append(sig)
                else:
                    found[sig] = value
                    self.cache_hits += 1
            if missing:
                answer = self._run(missing, array)
                for sig, entry in zip(missing, answer["layers"], strict=True):
                    found[sig] = entry["cycles"]
                    self.wall_s[sig] = entry["wall_s"]
                    self._write(self._path(array, sig), {
                        "array": dataclasses.asdict(array), "layer": sig.row(),
                        "scalesim_version": answer["scalesim_version"], **entry})
                self.simulations += len(missing)
            return [found[sig] for sig in signatures]

    def _run(self, signatures: Sequence[ConvSignature], array: ArrayConfig) -> dict[str, Any]:
        self.check()
        request = {"array_rows": array.rows, "array_cols": array.cols,
                   "dataflow": array.dataflow, "ifmap_sram_kb": array.ifmap_sram_kb,
                   "filter_sram_kb": array.filter_sram_kb, "ofmap_sram_kb": array.ofmap_sram_kb,
                   "layers": [s.row() for s in signatures]}
        try:
            proc = subprocess.run([self.python, WORKER], input=json.dumps(request),
                                  capture_output=True, text=True, timeout=self.timeout_s,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"SCALE-Sim took over {self.timeout_s} s for "
                               f"{len(signatures)} layers") from None
        if proc.returncode == 3:  # the worker's own check failed (see scalesim_worker.check)
            raise self._unavailable(proc.stderr.strip()[-500:])
        if proc.returncode != 0:
            raise RuntimeError(f"SCALE-Sim ({self.python}) failed with exit code "
                               f"{proc.returncode}: {proc.stderr[-2000:]}")
        return json.loads(proc.stdout)

    # ---- networks ---------------------------------------------------------------
    def layer_cycles(self, network: NetworkDescription, target: HardwareTarget
                     ) -> dict[str, int]:
        """SCALE-Sim compute cycles of every layer it models, by layer name."""
        rows = {layer.name: row for layer in network.layers
                if (row := scalesim_layer(layer)) is not None}
        cycles = self.cycles([sig for sig, _ in rows.values()], ArrayConfig.from_target(target))
        return {name: c * repeats
                for (name, (_, repeats)), c in zip(rows.items(), cycles, strict=True)}


def check_target(target: Any, field: str = "targets") -> HardwareTarget:
    """The target if it is a systolic array SCALE-Sim can model (SpecError naming `field`)."""
    target = get_target(target)
    if not isinstance(target, HardwareTarget):
        raise SpecError(f"{field}: {target.name!r} is a {target.kind} target; the "
                        "cycle_accurate fidelity models systolic-array (edgetpu) targets only")
    return target


def simulate_cycle_accurate(network: NetworkDescription, target: HardwareTarget | str,
                            runner: ScaleSimRunner) -> tuple[SimulationResult, tuple[str, ...]]:
    """`simulate` with SCALE-Sim's compute cycles on the layers it models; also their names."""
    target = check_target(target)
    cycles = runner.layer_cycles(network, target)
    costs = tuple(edgetpu_layer_cost(layer, target, cached, cycles.get(layer.name))
                  for layer, cached in zip(network.layers, weights_cached(network, target),
                                           strict=True))
    return assemble(network, target, costs), tuple(cycles)



class CycleAccurateCostModel:
    """The cycle-accurate fidelity behind the cost interface (`get_cost_model("cycle_accurate")`).

    Items are network descriptions, or index vectors of `space` (decoded and
    described for `workload`). Targets must be edgetpu targets. Slow on cold
    caches (SCALE-Sim takes seconds per new layer signature): meant for
    checking a handful of candidates, not for a search's inner loop.
    """

    name = "cycle_accurate"

    def __init__(self, space: Any = None, workload: Any = None,
                 runner: ScaleSimRunner | None = None) -> None:
        self.space, self.workload = space, workload
        self.runner = runner or ScaleSimRunner()

    def networks(self, items: Any) -> list[NetworkDescription]:
        if len(items) and isinstance(items[0], NetworkDescription):
            return list(items)
        if self.space is None or self.workload is None:
            raise SpecError("cost model 'cycle_accurate': index vectors need a space and a "
                            "workload; build it with them or pass network descriptions")
        from tasks import describe

        w = self.workload
        return [describe(self.space.decode(np.asarray(idx)), w.image_size, w.task,
                         name=self.space.name, input_channels=w.input_channels)
                for idx in np.asarray(items)]

    def cost(self, items: Any, targets: Sequence[str], per_layer: bool = False) -> dict:
        from cost_models.interface import CostBatch, check_targets

        names = check_targets(targets)
        for name in names:
            check_target(name)
        nets = self.networks(items)
        out = {}
        for name in names:
            results = [simulate_cycle_accurate(net, name, self.runner)[0] for net in nets]
            out[name] = CostBatch.from_results(name, results, nets, per_layer)
        return out
