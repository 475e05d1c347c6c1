"""Hardware cost models: Edge TPU and mobile CPU/GPU/DSP targets, the analytical
simulator, the fast per-architecture coster, calibration against published
latencies, and the single-block analyzer. Imports `search_spaces` only."""

from cost_models.arch_cost import ArchitectureCoster
from cost_models.calibration import NETWORKS_DIR, FitReport, calibrate, evaluate, reference_network
from cost_models.hardware import HardwareTarget, LatencyModel, get_target, target_names
from cost_models.latency_metric import (
    LATENCY_METRICS,
    check_latency_metric,
    fixed_latency_ms,
    metric_offset_ms,
)
from cost_models.processor import ProcessorTarget
from cost_models.simulator import LayerCost, SimulationResult, layer_cost, simulate

__all__ = [
    "LATENCY_METRICS", "NETWORKS_DIR", "ArchitectureCoster", "FitReport", "HardwareTarget",
    "LatencyModel", "LayerCost", "ProcessorTarget", "SimulationResult", "calibrate",
    "check_latency_metric", "evaluate",
    "fixed_latency_ms", "get_target", "layer_cost", "metric_offset_ms", "reference_network",
    "simulate", "target_names",
]
