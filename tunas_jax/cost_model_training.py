"""Train the learned latency regressor: dataset, training loop, checkpoint, metadata, plot.

`train_cost_model(config, workdir)` is what `tunas-jax train-cost-model`
runs. It simulates the dataset when its file is missing (all cores, see
`cost_models.dataset`), or, for the measured target `host_cpu`, measures it
on this machine (`tunas_jax.host_dataset`: resumable), splits off a held-out set, fits the model of
`cost_models.regressor` with optax on the log-latency (squared error in log
space = relative error), and writes
into the workdir:
- `checkpoint/` (orbax) and `cost_model.json` (space name and fingerprint,
  target, dataset size, model, normalization and the `heldout` metrics),
- `scatter.png`: predicted vs simulated latency of the held-out set.

Held-out metrics: Spearman and Kendall rank correlations (what a search's
ranking of architectures needs), mean absolute percentage error and the
percentage of architectures within 5% and 10% of the simulator.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from cost_models import dataset as dataset_lib
from cost_models import regressor
from cost_models.features import encoder_for
from cost_models.hardware import HardwareTarget, get_target
from search_spaces import SearchSpace, SpecError, get_space
from search_spaces.fileio import atomic_write
from tasks import task_from_json
from tunas_jax.checkpointing import make_workdir
from tunas_jax.errors import UsageError
from tunas_jax.host_latency import HOST_TARGET
from tunas_jax.progress import progress

DATASET_FILE = "dataset.npz"
PLOT_FILE = "scatter.png"
# Steps run per jitted call: amortizes dispatch, and the bar moves per call.
STEPS_PER_CALL = 100


# ---- configs -----------------------------------------------------------------
# ---- metrics ---------------------------------------------------------------------
def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank), as Spearman's rho needs."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x))
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


def kendall_tau_b(x: np.ndarray, y: np.ndarray, block: int = 1024) -> float:
    """Kendall's tau-b over all pairs, in row blocks (O(n^2) time, O(n * block) memory)."""
    n = len(x)
    concordance = tied_x = tied_y = 0.0
    for s in range(0, n, block):
        dx = np.sign(x[s:s + block, None] - x[None, :])
        dy = np.sign(y[s:s + block, None] - y[None, :])
        concordance += float((dx * dy).sum())
        tied_x += float((dx == 0).sum())
        tied_y += float((dy == 0).sum())
    pairs = n * n - n  # ordered pairs, excluding i == j (which count as ties above)
    denominator = np.sqrt((pairs - (tied_x - n)) * (pairs - (tied_y - n)))
    return float(concordance / denominator) if denominator > 0 else 0.0


def latency_metrics(predicted_ms: np.ndarray, simulated_ms: np.ndarray) -> dict[str, float]:
    """Held-out quality: rank correlations and relative errors (percentages 0-100)."""
    predicted_ms = np.asarray(predicted_ms, np.float64)
    simulated_ms = np.asarray(simulated_ms, np.float64)
    relative_error = np.abs(predicted_ms - simulated_ms) / simulated_ms
    rp, rs = _ranks(predicted_ms), _ranks(simulated_ms)
    spearman = float(np.corrcoef(rp, rs)[0, 1]) if len(rp) > 1 else float("nan")
    return {
        "spearman": spearman,
        "kendall_tau": kendall_tau_b(predicted_ms, simulated_ms),
        "mape_percent": float(100 * relative_error.mean()),
        "within_5_percent": float(100 * (relative_error <= 0.05).mean()),
        "within_10_percent": float(100 * (relative_error <= 0.10).mean()),
        "max_error_percent": float(100 * relative_error.max()),
        "num": len(simulated_ms),
    }


# ---- dataset -----------------------------------------------------------------
def ensure_dataset(config: ml_collections.ConfigDict, workdir: str, space: SearchSpace,
                   target: HardwareTarget | str, log: Callable[[str], Any] = print
                   ) -> tuple[dataset_lib.SimulatorDataset, str]:
    """Read the config's dataset, or simulate (measure, for `host_cpu`) and write it when
    the file is missing."""
    path = config.dataset_path or os.path.join(workdir, DATASET_FILE)
    if target == HOST_TARGET:
        return _measured_dataset(config, path, space, log), path
    if os.path.exists(path):
        log(f"dataset: reading {path}")
        return dataset_lib.read_dataset(path, space, target), path
    dataset_lib.check_executor(config.executor, "config.executor")
    log(f"dataset: simulating {config.num_architectures} architectures of {space.name} on "
        f"{target.name} ({config.cost_service or config.executor}) -> {path}")
    data = simulate_to_file(space, target, config.num_architectures, path,
                            seed=config.dataset_seed, image_size=config.image_size,
                            num_classes=config.num_classes, task=config.task,
                            workers=config.workers or None,
                            executor=config.executor, ray_address=config.ray_address or None,
                            cost_service=config.cost_service or None)
    return data, path


def _measured_dataset(config: ml_collections.ConfigDict, path: str, space: SearchSpace,
                      log: Callable[[str], Any]) -> dataset_lib.SimulatorDataset:
    """`host_cpu`'s dataset: read (its latency column as `config.measure_statistic`), or
    measured on this machine when the file is missing."""
    from tunas_jax import host_dataset

    task = task_from_json(config.task, 2).name  # only its name matters here
    if task != "classification":
        # host_dataset times the standalone classifier; a segmentation head's latency
        # would be missing from every label, and the search would not say so.
        raise UsageError(f"config.task: {HOST_TARGET} measures classification networks "
                         f"only, not {task!r}; cost this task on a simulated target "
                         "(e.g. config.target='pixel6_edgetpu')")
    statistic = config.measure_statistic
    try:
        host_dataset.check_statistic(statistic, "config.measure_statistic")
        if os.path.exists(path):
            log(f"dataset: reading {path} ({statistic} of each architecture's repeats)")
            return host_dataset.with_statistic(
                dataset_lib.read_dataset(path, space, HOST_TARGET), statistic)
    except SpecError as err:
        raise UsageError(str(err)) from None
    log(f"dataset: measuring {config.num_architectures} architectures of {space.name} on "
        f"this CPU ({config.measure_warmup} warm-up + {config.measure_repeats} timed runs "
        f"each, {statistic}) -> {path}")
    return host_dataset.measure_dataset(
        space, config.num_architectures, path, seed=config.dataset_seed,
        image_size=config.image_size, num_classes=config.num_classes,
        warmup=config.measure_warmup, repeats=config.measure_repeats, statistic=statistic,
        log=log)


def simulate_to_file(space: SearchSpace, target: HardwareTarget, num: int, path: str,
                     seed: int = 0, image_size: int | None = None,
                     num_classes: int | None = None, task: str = "",
                     workers: int | None = None,
                     executor: str = "local", ray_address: str | None = None,
                     cost_service: str | None = None) -> dataset_lib.SimulatorDataset:
    """Sample and simulate `num` architectures (with a progress bar) on `executor`
    ('local' processes or 'ray') or a cost service, and write the dataset file
    atomically."""
    with progress(total=num, desc="simulate", unit="arch") as bar:
        data = dataset_lib.simulate_dataset(space, target, num, seed=seed,
                                            image_size=image_size, num_classes=num_classes,
                                            task=task,
                                            workers=workers, on_progress=bar.update,
                                            executor=executor, ray_address=ray_address,
                                            cost_service=cost_service)
    dataset_lib.write_dataset(path, data)
    return data


# ---- training -----------------------------------------------------------------
def train_cost_model(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
                     log: Callable[[str], Any] = print) -> dict[str, Any]:
    """Fit the latency regressor of `config`; write checkpoint, metadata and plot.

    Returns the metadata written to `cost_model.json`.
    """
    start = time.perf_counter()
    workdir = make_workdir(workdir)
    space = get_space(config.space)
    measured = config.target == HOST_TARGET
    # A measured target has no simulator numbers: the dataset's host description stands in.
    target = HOST_TARGET if measured else get_target(config.target)
    target_name = HOST_TARGET if measured else target.name
    if config.model not in regressor.MODEL_KINDS:
        raise UsageError(f"config.model: {config.model!r}; use one of {regressor.MODEL_KINDS}")
    if measured and config.model == "cache_aware":
        raise UsageError(f"config.model: 'cache_aware' models a simulated target's weight "
                         f"cache; {HOST_TARGET} is measured: use 'mlp' or 'linear'")
    data, dataset_path = ensure_dataset(config, workdir, space, target, log)
    if len(data) < 2:
        raise UsageError(f"config.num_architectures: {len(data)}; need at least 2 (train and "
                         "held-out)")

    # Held-out split, fixed by the seed.
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(len(data))
    num_heldout = min(len(data) - 1, max(1, round(config.heldout_fraction * len(data))))
    heldout, train = order[:num_heldout], order[num_heldout:]

    encoder = encoder_for(space, config.kronecker_features)
    slots = encoder.field_ids(data.indices)
    log_latency = np.log(data.latency_ms)
    latency_scale_ms = float(np.exp(log_latency[train].mean()))
    targets = log_latency - np.log(latency_scale_ms)

    model = regressor.build_model(config.model, encoder, config.hidden_sizes, seed=config.seed)
    # Train the Params only; other variables (the cache model's segment map) are constants.
    graphdef, params, constants = nnx.split(model, nnx.Param, ...)
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, config.learning_rate, max(1, int(config.warmup_fraction * config.num_steps)),
        max(1, config.num_steps))
    tx = optax.adamw(schedule, weight_decay=config.weight_decay)
    opt_state = tx.init(params)
    train_slots = jnp.asarray(slots[train])
    train_targets = jnp.asarray(targets[train], jnp.float32)
    batch_size = min(config.batch_size, len(train))

    # The cache-aware model also fits its learned weight bytes to the parameter count.
    # Per-half-segment weight bytes when the dataset has them (pins down where the
    # cache fills), else the total parameter count; in units of the cache size.
    cache_bytes = 1.0 if measured else target.param_memory_bytes
    per_block = data.segment_weight_bytes is not None
    if per_block and data.segment_weight_bytes.shape[1] != encoder.num_segments:
        raise UsageError(f"dataset {dataset_path}: segment_weight_bytes has "
                         f"{data.segment_weight_bytes.shape[1]} columns, this tunas-jax uses "
                         f"{encoder.num_segments}; delete the file to re-simulate it")
    train_weight = jnp.asarray(
        (data.segment_weight_bytes[train] if per_block else data.params[train, None])
        / cache_bytes, jnp.float32)

    def loss_fn(params, batch_slots, batch_targets, batch_weight):
        model = nnx.merge(graphdef, params, constants)
        loss = jnp.mean((model(batch_slots) - batch_targets) ** 2)
        if isinstance(model, regressor.CacheAwareCostModel):
            learned = (model.segment_weights(batch_slots) if per_block
                       else model.total_weight(batch_slots)[:, None])
            loss += config.weight_loss_scale * jnp.mean(
                jnp.sum((learned - batch_weight) ** 2, axis=-1))
        return loss

    @jax.jit
    def train_steps(params, opt_state, key, num_steps_static):
        def step(carry, key):
            params, opt_state = carry
            rows = jax.random.randint(key, (batch_size,), 0, train_slots.shape[0])
            loss, grads = jax.value_and_grad(loss_fn)(params, train_slots[rows],
                                                      train_targets[rows], train_weight[rows])
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        keys = jax.random.split(key, num_steps_static.shape[0])
        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), keys)
        return params, opt_state, losses.mean()

    key = jax.random.key(config.seed)
    loss = float("nan")
    done = 0
    with progress(total=config.num_steps, desc="train", unit="step") as bar:
        while done < config.num_steps:
            n = min(STEPS_PER_CALL, config.num_steps - done)
            key, sub = jax.random.split(key)
            # The step count rides in a shape so the last, shorter call compiles once.
            params, opt_state, loss = train_steps(params, opt_state, sub, jnp.zeros((n,)))
            done += n
            bar.update(n)
            bar.set_postfix(loss=f"{float(loss):.4g}")
    train_seconds = time.perf_counter() - start

    metadata: dict[str, Any] = {
        "format": regressor.FORMAT, "format_version": regressor.FORMAT_VERSION,
        "space": space.name, "space_fingerprint": space.fingerprint, "target": target_name,
        "target_config": (data.metadata["target_config"] if measured else target.to_json()),
        **({"measured": {k: v for k, v in data.metadata["measured"].items()
                         if not isinstance(v, list)}} if measured else {}),
        "image_size": data.metadata.get("image_size"),
        "num_classes": data.metadata.get("num_classes"),
        **({"task": data.metadata["task"]} if data.metadata.get("task") else {}),
        "model": {"kind": config.model, "hidden_sizes": list(config.hidden_sizes),
                  "kronecker": bool(config.kronecker_features),
                  "vocab_size": encoder.vocab_size, "num_fields": encoder.num_fields},
        "normalization": {"latency_scale_ms": latency_scale_ms},
        "dataset": {"path": os.path.abspath(dataset_path), "size": len(data),
                    "num_train": len(train), "num_heldout": len(heldout),
                    "seed": data.metadata.get("seed")},
        "training": {"num_steps": config.num_steps, "batch_size": batch_size,
                     "learning_rate": config.learning_rate,
                     "weight_decay": config.weight_decay, "seed": config.seed,
                     "final_train_loss": float(loss)},
        "config": config.to_dict(),
    }
    predictor = regressor.make_predictor(nnx.merge(graphdef, params, constants), encoder,
                                         latency_scale_ms, metadata)
    predicted_ms = predict_in_batches(predictor, data.indices)
    metadata["heldout"] = latency_metrics(predicted_ms[heldout], data.latency_ms[heldout])
    metadata["train"] = latency_metrics(predicted_ms[train], data.latency_ms[train])
    metadata["presets"] = {
        name: {"simulated_ms": float(data.latency_ms[row]),
               "predicted_ms": float(predicted_ms[row]),
               "split": "heldout" if row in set(heldout.tolist()) else "train"}
        for name, row in data.metadata.get("presets", {}).items()}
    metadata["training"]["wall_time_s"] = round(time.perf_counter() - start, 2)
    metadata["training"]["fit_time_s"] = round(train_seconds, 2)
    regressor.save_cost_model(workdir, predictor)
    save_scatter(os.path.join(workdir, PLOT_FILE), predicted_ms[heldout],
                 data.latency_ms[heldout], metadata)
    return metadata


def predict_in_batches(predictor: regressor.LatencyPredictor, indices: np.ndarray,
                       batch_size: int = 4096) -> np.ndarray:
    """latency_ms of many architectures, a fixed-size batch at a time (one compile)."""
    predict = jax.jit(lambda p, x: p(x))
    out = []
    for s in range(0, len(indices), batch_size):
        chunk = np.asarray(indices[s:s + batch_size], np.int32)
        padded = np.concatenate([chunk, np.zeros((batch_size - len(chunk), chunk.shape[1]),
                                                 np.int32)])
        out.append(np.asarray(predict(predictor, padded))[:len(chunk)])
    return np.concatenate(out).astype(np.float64)


def save_scatter(path: str, predicted_ms: np.ndarray, simulated_ms: np.ndarray,
                 metadata: Mapping[str, Any]) -> None:
    """Predicted vs simulated latency (held out), with the +/-5% band; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = metadata["heldout"]
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=120)
    ax.scatter(simulated_ms, predicted_ms, s=4, alpha=0.4, linewidths=0)
    lo = float(min(simulated_ms.min(), predicted_ms.min()))
    hi = float(max(simulated_ms.max(), predicted_ms.max()))
    line = np.linspace(lo, hi, 2)
    ax.plot(line, line, "k-", lw=0.8, label="y = x")
    ax.fill_between(line, 0.95 * line, 1.05 * line, color="k", alpha=0.08, label="±5%")
    ax.set_xlabel("simulated latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    ax.set_title(f"{metadata['model']['kind']} on {metadata['space']} / {metadata['target']}\n"
                 f"held out n={m['num']}: Spearman {m['spearman']:.4f}, "
                 f"MAPE {m['mape_percent']:.2f}%, ±5% {m['within_5_percent']:.1f}%",
                 fontsize=8)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    try:
        with atomic_write(path, "wb", ".png") as f:
            fig.savefig(f, format="png")
    finally:
        plt.close(fig)


def format_metrics(metadata: Mapping[str, Any]) -> str:
    m = metadata["heldout"]
    return (f"held-out ({m['num']} architectures): Spearman {m['spearman']:.4f}  "
            f"Kendall tau {m['kendall_tau']:.4f}  MAPE {m['mape_percent']:.2f}%  "
            f"within 5% {m['within_5_percent']:.1f}%  within 10% {m['within_10_percent']:.1f}%")
