"""Measured latency datasets for `host_cpu`: the regressor's training data from a stopwatch.

The other targets' regressors learn a simulator (`cost_models.dataset`); this
one learns this machine's CPU. `measure_dataset` samples architectures of a
space exactly as a simulator dataset does (`cost_models.dataset.
sample_architectures`: in-space presets first, then uniform, from the seed),
measures each with `tunas_jax.host_latency.measure_latency` (compile, warm-up,
repeats, median) and writes the same columnar file format, so
`tunas_jax.cost_model_training` trains on it unchanged. What differs:
`target` is `host_cpu`, `energy_mj` is NaN (not measured), there are no
per-segment weight bytes (so no `cache_aware` model), and the metadata's
`measured` section holds the settings, every row's median, minimum and
relative IQR (its noise) and the host (`host_description`). The latency
column is one of the two statistics (`host_latency.STATISTICS`): the median (the
default), or the fastest repeat, which moves less when other processes load
the machine (BENCHMARKS.md); `with_statistic` switches a measured dataset to
the other without measuring again.

Measuring takes seconds per architecture (an XLA compile each), so it is
resumable: every `SAVE_EVERY` architectures the rows so far are written
atomically to `<path>.partial.npz`; a rerun with the same settings continues
from there, and the finished file replaces it. A partial file made with other
settings is refused, naming the field that differs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
from collections.abc import Callable
from typing import Any

import numpy as np

from cost_models import dataset as dataset_lib
from search_spaces import SearchSpace, SpecError
from search_spaces.fileio import atomic_write
from tasks import describe
from tunas_jax.host_latency import HOST_TARGET, check_statistic, measure_latency
from tunas_jax.progress import progress

# Architectures measured between two writes of the partial file.
SAVE_EVERY = 10
# Which statistic of an architecture's timed repeats is its latency.
_PARTIAL_KEYS = ("space_fingerprint", "seed", "num_architectures", "image_size",
                 "num_classes", "warmup", "repeats")


def host_description() -> dict[str, Any]:
    """What `host_cpu` was on this run (a regressor's `target_config`)."""
    import jax

    return {"name": HOST_TARGET, "kind": "measured", "device": str(jax.devices("cpu")[0]),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "jax": jax.__version__}


def partial_path(path: str) -> str:
    return f"{path}.partial.npz"


def measure_dataset(space: SearchSpace, num: int, path: str, *, seed: int = 0,
                    image_size: int | None = None, num_classes: int | None = None,
                    warmup: int = 5, repeats: int = 20, statistic: str = "median",
                    log: Callable[[str], Any] = print) -> dataset_lib.SimulatorDataset:
    """Sample `num` architectures of `space`, measure each on this CPU and write the
    dataset to `path` atomically (resuming from `<path>.partial.npz`)."""
    check_statistic(statistic)
    image_size = image_size or space.default_image_size
    num_classes = num_classes or space.default_num_classes
    indices, preset_rows = dataset_lib.sample_architectures(space, num, seed)
    settings = {"space_fingerprint": space.fingerprint, "seed": int(seed),
                "num_architectures": int(num), "image_size": int(image_size),
                "num_classes": int(num_classes), "warmup": int(warmup),
                "repeats": int(repeats)}
    rows = _read_partial(partial_path(path), settings)
    if rows["median_ms"]:
        log(f"dataset: resuming at {len(rows['median_ms'])} of {num} measured "
            f"architectures ({partial_path(path)})")
    with progress(total=num, initial=len(rows["median_ms"]), desc="measure",
                  unit="arch") as bar:
        for i in range(len(rows["median_ms"]), num):
            spec = space.decode(indices[i])
            m = measure_latency(spec, image_size, num_classes, warmup=warmup,
                                repeats=repeats, seed=i)
            net = describe(spec, image_size, num_classes)
            for key, value in (("median_ms", m.median_ms), ("min_ms", m.min_ms),
                               ("relative_iqr", m.relative_iqr),
                               ("params", net.params), ("macs", net.macs)):
                rows[key].append(value)
            bar.update(1)
            bar.set_postfix(ms=f"{m.median_ms:.3f}", iqr=f"{m.relative_iqr:.2f}")
            if (i + 1) % SAVE_EVERY == 0 and i + 1 < num:
                _write_partial(partial_path(path), settings, rows)
    metadata = {
        "format": dataset_lib.FORMAT, "format_version": dataset_lib.FORMAT_VERSION,
        "space": space.name, "space_fingerprint": space.fingerprint, "target": HOST_TARGET,
        "seed": int(seed), "num_architectures": int(num), "image_size": int(image_size),
        "num_classes": int(num_classes), "presets": preset_rows,
        "target_config": host_description(),
        "measured": {"warmup": int(warmup), "repeats": int(repeats), "statistic": statistic,
                     **{k: [float(x) for x in rows[k]]
                        for k in ("median_ms", "min_ms", "relative_iqr")},
                     "median_relative_iqr": float(np.median(rows["relative_iqr"]))},
    }
    data = dataset_lib.SimulatorDataset(
        indices, np.asarray(rows[f"{statistic}_ms"], np.float64), np.full(num, np.nan),
        np.asarray(rows["params"], np.int64), np.asarray(rows["macs"], np.int64), metadata)
    dataset_lib.write_dataset(path, data)
    if os.path.exists(partial_path(path)):
        os.remove(partial_path(path))
    return data


def _read_partial(path: str, settings: dict[str, Any]) -> dict[str, list]:
    rows: dict[str, list] = {"median_ms": [], "min_ms": [], "relative_iqr": [], "params": [],
                             "macs": []}
    if not os.path.exists(path):
        return rows
    with np.load(path, allow_pickle=False) as f:
        saved = {k: f[k] for k in f.files}
    meta = json.loads(str(saved.pop("settings_json")))
    for key in _PARTIAL_KEYS:
        if meta.get(key) != settings[key]:
            raise SpecError(f"dataset {path}: a partial measurement with {key}="
                            f"{meta.get(key)!r}, this run has {settings[key]!r}; delete it "
                            "to start over, or rerun with its settings")
    return {k: saved[k].tolist() for k in rows}


def _write_partial(path: str, settings: dict[str, Any], rows: dict[str, list]) -> None:
    with atomic_write(path, "wb", ".npz") as f:
        np.savez(f, settings_json=np.array(json.dumps(settings, sort_keys=True)),
                 **{k: np.asarray(v) for k, v in rows.items()})


def with_statistic(data: dataset_lib.SimulatorDataset, statistic: str
                   ) -> dataset_lib.SimulatorDataset:
    """A measured dataset whose latency column is `statistic` of each row's repeats."""
    check_statistic(statistic)
    measured = data.metadata.get("measured") or {}
    if measured.get("statistic") == statistic:
        return data
    if f"{statistic}_ms" not in measured:
        raise SpecError(f"dataset: no per-row {statistic} in its measured metadata; "
                        "delete it to measure again")
    metadata = {**data.metadata, "measured": {**measured, "statistic": statistic}}
    return dataclasses.replace(data, latency_ms=np.asarray(measured[f"{statistic}_ms"]),
                               metadata=metadata)
