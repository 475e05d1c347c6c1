"""`host_cpu`: latency measured on this machine's CPU, the standalone model through XLA.

Where the other targets are models of a device (`cost_models.targets`), this
one is a measurement: the architecture's standalone `flax.nnx` model
(`supernet.standalone`, eval mode: batch norm on running averages) is jitted
for the CPU backend, compiled once (the compile time is reported, never
counted), run `warmup` times untimed, then `repeats` times, each timed with
`time.perf_counter` around the call and `block_until_ready`. The latency is
the median of the repeats; `relative_iqr` (interquartile range / median) is
the spread of one measurement, and `min_ms` the fastest repeat. Medians are
used because on a shared machine the slow tail comes from other processes,
not from the model; under heavy load the minimum moves less between runs
(BENCHMARKS.md), so both are kept.

    from tunas_jax.host_latency import measure_latency
    m = measure_latency(get_preset("mobilenet_multi_avg"), 224, 1001)
    print(m.median_ms, m.relative_iqr)

`tunas-jax measure` runs it from the command line; BENCHMARKS.md has the
measurement noise on the 2-core machine and the command that measured it.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import numpy as np

from search_spaces import ModelSpec, SpecError

HOST_TARGET = "host_cpu"
# What a measurement's latency may be: the median of its timed repeats, or the fastest.
STATISTICS = ("median", "min")


def check_statistic(statistic: str, field: str = "statistic") -> str:
    if statistic not in STATISTICS:
        raise SpecError(f"{field}: {statistic!r}; use one of {list(STATISTICS)}")
    return statistic


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One architecture's measured latency: every timed repeat, in ms."""

    name: str
    image_size: int
    batch_size: int
    warmup: int
    samples_ms: tuple[float, ...]
    compile_s: float
    device: str

    @property
    def median_ms(self) -> float:
        return float(np.median(self.samples_ms))

    @property
    def min_ms(self) -> float:
        """The fastest repeat: what the model costs when nothing else runs."""
        return float(min(self.samples_ms))

    @property
    def relative_iqr(self) -> float:
        """(75th - 25th percentile) / median of the repeats."""
        q25, q75 = np.percentile(self.samples_ms, [25, 75])
        return float((q75 - q25) / self.median_ms)

    def to_json(self) -> dict[str, Any]:
        return {"target": HOST_TARGET, "name": self.name, "image_size": self.image_size,
                "batch_size": self.batch_size, "warmup": self.warmup,
                "repeats": len(self.samples_ms), "median_ms": self.median_ms, "min_ms": self.min_ms,
                "relative_iqr": self.relative_iqr, "samples_ms": list(self.samples_ms),
                "compile_s": self.compile_s, "device": self.device,
                "cpu_count": os.cpu_count()}


def measure_latency(spec: ModelSpec, image_size: int, num_classes: int | Any, *, name: str = "",
                    warmup: int = 3, repeats: int = 10, batch_size: int = 1,
                    input_channels: int = 3, seed: int = 0) -> Measurement:
    """The host CPU latency of one inference of `spec` (see the module docstring), with a
    classifier of `num_classes` (or a `tasks.Task`'s head) on top."""
    for field, value, low in (("warmup", warmup, 0), ("repeats", repeats, 1),
                              ("batch_size", batch_size, 1), ("image_size", image_size, 1)):
        if not isinstance(value, int) or value < low:
            raise SpecError(f"{field}: {value!r} must be an integer >= {low}")
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from supernet.standalone import build_model

    cpu = jax.devices("cpu")[0]
    with jax.default_device(cpu):
        model = build_model(spec, num_classes, rngs=nnx.Rngs(seed),
                            input_channels=input_channels)
        model.eval()
        graphdef, state = nnx.split(model)

        @jax.jit
        def forward(state: Any, x: jax.Array) -> jax.Array:
            return nnx.merge(graphdef, state)(x)[0]

        x = jnp.zeros((batch_size, image_size, image_size, input_channels), jnp.float32)
        start = time.perf_counter()
        compiled = forward.lower(state, x).compile()
        compile_s = time.perf_counter() - start
        for _ in range(warmup):
            compiled(state, x).block_until_ready()
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            compiled(state, x).block_until_ready()
            samples.append((time.perf_counter() - start) * 1e3)
    return Measurement(name=name, image_size=image_size, batch_size=batch_size, warmup=warmup,
                       samples_ms=tuple(samples), compile_s=compile_s, device=str(cpu))


def measure_sample(space_name: str, count: int, *, seed: int = 0, image_size: int | None = None,
                   num_classes: int | None = None, **settings: Any) -> list[Measurement]:
    """Host latencies of `count` architectures sampled uniformly from a space."""
    from search_spaces import get_space

    if not isinstance(count, int) or count < 1:
        raise SpecError(f"--sample: {count!r} must be a positive number of architectures")
    space = get_space(space_name)
    image_size = image_size or space.default_image_size
    num_classes = num_classes or space.default_num_classes
    return [measure_latency(space.decode(idx), image_size, num_classes,
                            name=":".join(map(str, idx)), **settings)
            for idx in space.sample(np.random.default_rng(seed), count)]


class HostCpuCostModel:
    """`host_cpu` behind the cost interface (`cost_models.interface`): each index vector
    of `space` measured at the workload (`measure_latency`; `latency_ms` the `statistic`
    of its repeats, 'median' or 'min')."""

    name = "measured"

    def __init__(self, space: Any, workload: Any, warmup: int = 3, repeats: int = 10,
                 statistic: str = "median") -> None:
        check_statistic(statistic)
        self.space, self.workload = space, workload
        self.warmup, self.repeats, self.statistic = warmup, repeats, statistic

    def cost(self, items: Any, targets: Any) -> dict[str, Any]:
        from cost_models.interface import CostBatch
        from tasks import describe

        names = (targets,) if isinstance(targets, str) else tuple(targets)
        if names != (HOST_TARGET,):
            raise SpecError(f"targets: {list(names)}; the measured cost model has only "
                            f"{HOST_TARGET!r}")
        w, specs = self.workload, [self.space.decode(idx) for idx in np.asarray(items)]
        measured = [measure_latency(spec, w.image_size, w.task, warmup=self.warmup,
                                    repeats=self.repeats, input_channels=w.input_channels)
                    for spec in specs]
        latency = [getattr(m, f"{self.statistic}_ms") for m in measured]
        nets = [describe(spec, w.image_size, w.task, input_channels=w.input_channels)
                for spec in specs]
        return {HOST_TARGET: CostBatch(HOST_TARGET, np.asarray(latency), None,
                                       np.array([n.params for n in nets], np.int64),
                                       np.array([n.macs for n in nets], np.int64))}
