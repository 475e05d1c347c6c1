"""The host-side cost interface: one protocol every caller costs architectures through.

    cost_model.cost(items, targets) -> {target: CostBatch}

`items` are index vectors of the cost model's space ([N, D]) or network
descriptions; `targets` a list of hardware target names (one target = a list
of one). A `CostBatch` has per-item `latency_ms` and, where the cost model
knows them, `energy_mj`, `params`, `macs` and a per-layer breakdown.

What a network is costed *for* is a `Workload`: the input resolution and the
task whose head is deployed on top of the backbone (its class count for
classification). Every call site builds one from its task and config, so the
search, the random baseline, training and the report cost the same network
the same way.

Implementations, looked up by name (`get_cost_model`):
- `analytical`: the simulator (`cost_models.simulator`; index vectors through
  the fast exact per-unit coster `cost_models.arch_cost`).
- `regressor`: the learned latency regressor (`cost_models.regressor`), one
  per target; latency only. `in_jit(target)` is the pure-JAX predictor the
  one-shot reward calls inside the jitted step.
- `cycle_accurate`: the simulator with SCALE-Sim's compute cycles on conv /
  matmul layers (`cost_models.scalesim_runner`; SCALE-Sim in its own
  environment, edgetpu targets only).
- `remote`: the same simulator behind the `tunas_jax.ppe.v1` gRPC service
  (`cost_service.client.RemoteCostModel(addresses, space, workload)`; the
  `service` extra), equal to `analytical` to the last bit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from cost_models.arch_cost import ArchitectureCoster
from cost_models.hardware import get_target
from cost_models.simulator import simulate
from search_spaces import NetworkDescription, SearchSpace, SpecError
from tasks import Classification, Task


@dataclasses.dataclass(frozen=True)
class Workload:
    """What networks are costed for: input size, channels, and the task's head."""

    image_size: int
    task: Task
    input_channels: int = 3

    @classmethod
    def default(cls, space: SearchSpace) -> Workload:
        """The space's deployment default (e.g. 224 px, 1001 classes for ImageNet spaces)."""
        return cls(space.default_image_size, Classification(space.default_num_classes))

    def to_json(self) -> dict[str, Any]:
        return {"image_size": self.image_size, "input_channels": self.input_channels,
                "task": self.task.to_json()}


@dataclasses.dataclass
class CostBatch:
    """Costs of N items on one target; None where the cost model does not give it."""

    target: str
    latency_ms: np.ndarray
    energy_mj: np.ndarray | None = None
    params: np.ndarray | None = None
    macs: np.ndarray | None = None
    layers: list[list[dict[str, Any]]] | None = None  # per item, per layer

    def item(self, i: int) -> dict[str, Any]:
        """Item i as plain numbers (absent quantities left out)."""
        out: dict[str, Any] = {"latency_ms": float(self.latency_ms[i])}
        for key, cast in (("energy_mj", float), ("params", int), ("macs", int)):
            value = getattr(self, key)
            if value is not None:
                out[key] = cast(value[i])
        return out

    @classmethod
    def from_results(cls, target: str, results: Sequence[Any],
                     networks: Sequence[NetworkDescription], per_layer: bool = False
                     ) -> CostBatch:
        """One target's `SimulationResult`s of `networks` (in order) as a batch."""
        return cls(target, np.array([r.latency_ms for r in results]),
                   np.array([r.energy_mj for r in results]),
                   np.array([net.params for net in networks], np.int64),
                   np.array([net.macs for net in networks], np.int64),
                   [[dataclasses.asdict(layer) for layer in r.layers] for r in results]
                   if per_layer else None)


Items = np.ndarray | Sequence[NetworkDescription]


class CostModel(Protocol):
    name: str

    def cost(self, items: Items, targets: Sequence[str]) -> dict[str, CostBatch]: ...


def check_targets(targets: Sequence[str] | str, field: str = "targets") -> tuple[str, ...]:
    """Target names as a tuple (a single name is a list of one); SpecError naming `field`
    for an empty list or an unknown target."""
    names = (targets,) if isinstance(targets, str) else tuple(targets)
    if not names:
        raise SpecError(f"{field}: empty; name at least one hardware target")
    for name in names:
        try:
            get_target(name)
        except SpecError as err:
            raise SpecError(f"{field}: {err}") from None
    return names


class SimulatorCostModel:
    """The analytical simulator behind the cost interface."""

    name = "analytical"

    def __init__(self, space: SearchSpace | None, workload: Workload) -> None:
        self.space = space
        self.workload = workload
        self._costers: dict[str, ArchitectureCoster] = {}

    def coster(self, target: str) -> ArchitectureCoster:
        if self.space is None:
            raise SpecError("cost model: index vectors need a space; build it with one")
        if target not in self._costers:
            w = self.workload
            self._costers[target] = ArchitectureCoster(self.space, target, w.image_size,
                                                       task=w.task,
                                                       input_channels=w.input_channels)
        return self._costers[target]

    def cost(self, items: Items, targets: Sequence[str], per_layer: bool = False
             ) -> dict[str, CostBatch]:
        out = {}
        for target in check_targets(targets):
            if isinstance(items, np.ndarray) or (items and not isinstance(
                    items[0], NetworkDescription)):
                c = self.coster(target).cost_batch(np.asarray(items))
                out[target] = CostBatch(target, c["latency_ms"], c["energy_mj"], c["params"],
                                        c["macs"])
                continue
            out[target] = CostBatch.from_results(
                target, [simulate(net, target) for net in items], items, per_layer)
        return out


class RegressorCostModel:
    """Learned latency regressors (one per target) behind the cost interface."""

    name = "regressor"

    def __init__(self, predictors: Mapping[str, Any]) -> None:
        self.predictors = dict(predictors)

    def in_jit(self, target: str) -> Any:
        """The pure-JAX predictor of `target` (a pytree: pass it into the jitted step)."""
        if target not in self.predictors:
            raise SpecError(f"targets: no regressor for {target!r}; have "
                            f"{sorted(self.predictors)}")
        return self.predictors[target]

    def cost(self, items: Items, targets: Sequence[str]) -> dict[str, CostBatch]:
        indices = np.asarray(items)
        if indices.ndim != 2:
            raise SpecError("cost model 'regressor': costs index vectors [N, D] only; use "
                            "'analytical' for network descriptions")
        names = (targets,) if isinstance(targets, str) else tuple(targets)
        if not names:
            raise SpecError("targets: empty; name at least one hardware target")
        # The targets are the regressors' (`in_jit` names what is missing), not the
        # simulator's: a measured target such as host_cpu has a regressor and no model.
        return {t: CostBatch(t, np.asarray(self.in_jit(t)(indices), np.float64))
                for t in names}


def _remote(*args: Any, **kwargs: Any) -> CostModel:
    # Imported on use: grpc is an optional dependency (the `service` extra).
    from cost_service.client import RemoteCostModel

    return RemoteCostModel(*args, **kwargs)


def _cycle_accurate(*args: Any, **kwargs: Any) -> CostModel:
    # Imported on use: it runs SCALE-Sim from its own environment (README).
    from cost_models.scalesim_runner import CycleAccurateCostModel

    return CycleAccurateCostModel(*args, **kwargs)


COST_MODELS: dict[str, Callable[..., CostModel]] = {
    "analytical": SimulatorCostModel,
    "cycle_accurate": _cycle_accurate,
    "regressor": RegressorCostModel,
    "remote": _remote,
}


def get_cost_model(name: str, *args: Any, **kwargs: Any) -> CostModel:
    """The cost model called `name`, built with the class's own arguments."""
    if name not in COST_MODELS:
        raise SpecError(f"cost model {name!r} is unknown; choose one of {sorted(COST_MODELS)}")
    return COST_MODELS[name](*args, **kwargs)
