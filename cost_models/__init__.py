"""Hardware cost models: Edge TPU targets, the analytical simulator, the fast
per-architecture coster, calibration against published latencies, and the
single-block analyzer. Imports `search_spaces` only."""

from cost_models.arch_cost import ArchitectureCoster
from cost_models.calibration import NETWORKS_DIR, FitReport, calibrate, evaluate, reference_network
from cost_models.hardware import HardwareTarget, get_target, target_names
from cost_models.simulator import LayerCost, SimulationResult, layer_cost, simulate

__all__ = [
    "NETWORKS_DIR", "ArchitectureCoster", "FitReport", "HardwareTarget", "LayerCost",
    "SimulationResult", "calibrate", "evaluate", "get_target", "layer_cost", "reference_network",
    "simulate", "target_names",
]
