"""The learned latency regressor: Flax models, a pure JAX predictor, save and load.

Three models read the feature slots of `cost_models.features` and predict
log(latency / scale), scale being the training set's geometric-mean latency:
- `linear`: TuNAS's cost model (Bender et al. 2020): latency is a sum of one weight
  per one-hot feature (with the Kronecker features, per-layer-group terms).
  Additive in milliseconds, not in log space: latencies of layers add up.
  The baseline.
- `mlp`: that additive model times exp(a ReLU MLP over the decisions'
  one-hots); the MLP learns what a sum cannot express.
- `cache_aware` (default): per-segment additive costs, cached or streamed
  according to a learned model of the on-chip weight cache (see the class).

Models are written with `flax.nnx`; the predictor splits the module into a
graph definition and a state once and applies `nnx.merge` inside a pure
function, so `LatencyPredictor` is a JAX pytree (its weights are its leaves)
that can be passed into `jax.jit` or called inside it. Training on log-latency
makes the squared loss a relative-error loss, which is what a latency target
cares about.

A trained model lives in a workdir: `cost_model.json` (what it was trained
for, normalization, metrics) and `checkpoint/` (orbax). `load_cost_model`
refuses a model trained for another space definition or another target.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cost_models.features import FeatureEncoder, encoder_for
from cost_models.latency_metric import metric_offset_ms
from search_spaces import SearchSpace, SpecError, write_json_atomic
from tasks import get_task

FORMAT = "tunas-jax/cost-model"
FORMAT_VERSION = 1
METADATA_FILE = "cost_model.json"
CHECKPOINT_DIR = "checkpoint"
MODEL_KINDS = ("linear", "mlp", "cache_aware")
# Floor of the additive model's latency ratio before the log (it starts at 1).
MIN_RATIO = 1e-3


class LinearCostModel(nnx.Module):
    """TuNAS's additive model: latency / scale = sum of one weight per active slot + bias."""

    def __init__(self, vocab_size: int, num_fields: int, *, rngs: nnx.Rngs) -> None:
        del num_fields, rngs
        # Start at the geometric-mean latency (ratio 1); weights grow from zero.
        self.weights = nnx.Param(jnp.zeros((vocab_size,), jnp.float32))
        self.bias = nnx.Param(jnp.ones((), jnp.float32))

    def ratio(self, slots: jax.Array) -> jax.Array:
        return self.weights[slots].sum(axis=-1) + self.bias

    def __call__(self, slots: jax.Array) -> jax.Array:
        """log(latency / scale), [B]."""
        return jnp.log(jnp.maximum(self.ratio(slots), MIN_RATIO))


class MlpCostModel(nnx.Module):
    """The additive model times exp(ReLU MLP): log latency = log(additive) + MLP.

    The additive part (all features, Kronecker ones included) carries what a
    sum of per-layer costs explains, which is most of it; the MLP learns the
    multiplicative corrections a sum cannot express, such as weights spilling
    out of the on-chip cache. The MLP reads the per-decision one-hots only
    (first layer as an embedding sum): given the thousands of Kronecker slots
    too, a wide first layer memorizes the training set (measured: 0.01% train
    vs 2.6% held-out error). Its output layer starts at zero, so training
    starts from the additive model.
    """

    def __init__(self, vocab_size: int, num_fields: int, hidden_sizes: Sequence[int],
                 mlp_fields: int, mlp_vocab_size: int, *, rngs: nnx.Rngs) -> None:
        if not hidden_sizes:
            raise SpecError("hidden_sizes: empty; give at least one hidden width or use 'linear'")
        self.additive = LinearCostModel(vocab_size, num_fields, rngs=rngs)
        self.mlp_fields = mlp_fields
        # Each example sums `mlp_fields` rows: scale so the sum has unit variance.
        init = nnx.initializers.normal(stddev=1.0 / np.sqrt(mlp_fields))
        self.embed = nnx.Embed(mlp_vocab_size, hidden_sizes[0], embedding_init=init, rngs=rngs)
        self.embed_bias = nnx.Param(jnp.zeros((hidden_sizes[0],), jnp.float32))
        self.hidden = nnx.List([nnx.Linear(a, b, rngs=rngs)
                                for a, b in itertools.pairwise(hidden_sizes)])
        self.out = nnx.Linear(hidden_sizes[-1], 1, kernel_init=nnx.initializers.zeros,
                              rngs=rngs)

    def __call__(self, slots: jax.Array) -> jax.Array:
        """log(latency / scale), [B]."""
        x = self.embed(slots[..., :self.mlp_fields]).sum(axis=-2)
        x = nnx.relu(x + self.embed_bias)
        for layer in self.hidden:
            x = nnx.relu(layer(x))
        return self.additive(slots) + self.out(x)[..., 0]


class CacheAwareCostModel(nnx.Module):
    """Additive per-segment costs, cached or streamed by a learned weight-cache model.

    The one non-additive effect of the simulated Edge TPU (and the real one) is
    the on-chip parameter cache: weights are cached in network order while
    their running total fits; the rest stream from off chip on every
    inference. This model learns three numbers per one-hot slot: latency if
    the segment's weights are cached, latency if streamed, and weight bytes
    (in units of the cache size; an auxiliary loss fits their sum to the
    architecture's parameter count, which the dataset has). Per segment
    (stem, each block, head) it sums them, takes the running weight total,
    and mixes cached and streamed latency by the fraction of the segment that
    fits (the segment straddling the capacity is interpolated). TuNAS's linear
    model is the special case of a cache that never fills.
    """

    def __init__(self, vocab_size: int, field_segment: np.ndarray, num_segments: int, *,
                 rngs: nnx.Rngs) -> None:
        del rngs
        # Per slot: (latency if cached, latency if streamed, weight bytes), one table
        # so that prediction is one gather.
        self.table = nnx.Param(jnp.zeros((vocab_size, 3), jnp.float32))
        # The same three per half-segment, for what no decision changes (the classifier).
        self.segment_constants = nnx.Param(jnp.zeros((num_segments, 3), jnp.float32))
        self.bias = nnx.Param(jnp.ones((), jnp.float32))
        # [F, S] 0/1: which segment each field's value adds to (a constant, not trained);
        # fields of no single segment (-1) add to none.
        # Only those fields are read at all (a static index: 42 of 145 fields for
        # mobilenet_edgetpu_v2, which keeps the predictor's gather small).
        self.used_fields = tuple(int(f) for f in np.nonzero(field_segment >= 0)[0])
        matrix = np.zeros((len(self.used_fields), num_segments), np.float32)
        matrix[np.arange(len(self.used_fields)), field_segment[list(self.used_fields)]] = 1.0
        self.segment_matrix = nnx.Variable(jnp.asarray(matrix))

    def total_weight(self, slots: jax.Array) -> jax.Array:
        """Learned weight bytes / cache bytes of the whole network, [B]."""
        return self.segment_weights(slots).sum(axis=-1)

    def segment_weights(self, slots: jax.Array) -> jax.Array:
        """Learned weight bytes / cache bytes per half-segment, [B, S]."""
        return self._per_segment(slots)[..., 2]

    def _per_segment(self, slots: jax.Array) -> jax.Array:
        """[B, S, 3]: the table's three columns summed per segment."""
        slots = slots[..., np.asarray(self.used_fields)]
        return (jnp.einsum("bfk,fs->bsk", self.table[...][slots], self.segment_matrix[...])
                + self.segment_constants[...])

    def __call__(self, slots: jax.Array) -> jax.Array:
        """log(latency / scale), [B]."""
        per_segment = self._per_segment(slots)
        cached, streamed = per_segment[..., 0], per_segment[..., 1]
        # The weight bytes learn from the auxiliary loss alone: they are additive,
        # so that is a linear fit, and for fixed cache fractions the latency loss
        # is linear in the cached and streamed costs.
        weight = jax.lax.stop_gradient(jnp.maximum(per_segment[..., 2], 0.0))
        before = jnp.cumsum(weight, axis=-1) - weight
        # Weight is in units of the cache size: the capacity is 1. A half-segment
        # counts as cached only if all of it fits. With the simulator's exact
        # per-half costs this rule is off by 0.10% MAPE on pixel6 and 0.40% on
        # Coral, interpolating the straddling half by 1.9% and 8.3% (3,000
        # mobilenet_edgetpu_v2 architectures each).
        fits = (before + weight <= 1.0).astype(weight.dtype)
        ratio = (fits * cached + (1.0 - fits) * streamed).sum(axis=-1) + self.bias
        return jnp.log(jnp.maximum(ratio, MIN_RATIO))


def build_model(kind: str, encoder: FeatureEncoder, hidden_sizes: Sequence[int] = (),
                seed: int = 0) -> nnx.Module:
    rngs = nnx.Rngs(seed)
    if kind == "linear":
        return LinearCostModel(encoder.vocab_size, encoder.num_fields, rngs=rngs)
    if kind == "mlp":
        return MlpCostModel(encoder.vocab_size, encoder.num_fields, tuple(hidden_sizes),
                            encoder.num_decision_fields, encoder.decision_vocab_size, rngs=rngs)
    if kind == "cache_aware":
        return CacheAwareCostModel(encoder.vocab_size, encoder.field_segment,
                                   encoder.num_segments, rngs=rngs)
    raise SpecError(f"model: {kind!r} is unknown; use one of {MODEL_KINDS}")


@jax.tree_util.register_pytree_node_class
class LatencyPredictor:
    """latency_ms [B] = predictor(indices [B, D] int32); pure, jit-able, a pytree.

    `metadata` is the trained model's `cost_model.json` (space, target,
    held-out metrics).
    """

    def __init__(self, encoder: FeatureEncoder, graphdef: Any, state: Any,
                 latency_scale_ms: float, metadata: dict[str, Any] | None = None) -> None:
        self.encoder, self.graphdef, self.state = encoder, graphdef, state
        self.latency_scale_ms = float(latency_scale_ms)
        self.metadata = metadata or {}

    @property
    def space(self) -> SearchSpace:
        return self.encoder.space

    @property
    def target_name(self) -> str | None:
        return self.metadata.get("target")

    def metric_offset_ms(self, metric: str) -> float:
        """What to subtract from this predictor's (end-to-end) latency to get `metric`
        (`cost_models.latency_metric`), at the resolution and class count it was trained
        for."""
        space = self.space
        image_size = int(self.metadata.get("image_size") or space.default_image_size)
        task = self.metadata.get("task")
        outputs = (get_task(**task).output_values(image_size) if task
                   else int(self.metadata.get("num_classes") or space.default_num_classes))
        return metric_offset_ms(metric, self.target_name, image_size, outputs)

    def log_latency(self, indices: jax.Array) -> jax.Array:
        slots = self.encoder.field_ids(jnp.asarray(indices), xp=jnp)
        model = nnx.merge(self.graphdef, self.state)
        return jnp.log(self.latency_scale_ms) + model(slots)

    def __call__(self, indices: jax.Array) -> jax.Array:
        return jnp.exp(self.log_latency(indices))

    # Pytree: the weights are leaves; everything else is static (compared by identity).
    def tree_flatten(self):
        return (self.state,), _Static(self)

    @classmethod
    def tree_unflatten(cls, static: _Static, children):
        p = static.predictor
        return cls(p.encoder, p.graphdef, children[0], p.latency_scale_ms, p.metadata)


class _Static:
    def __init__(self, predictor: LatencyPredictor) -> None:
        self.predictor = predictor

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Static):
            return False
        a, b = self.predictor, other.predictor
        return (a.encoder is b.encoder and a.graphdef == b.graphdef
                and a.latency_scale_ms == b.latency_scale_ms)

    def __hash__(self) -> int:
        p = self.predictor
        return hash((id(p.encoder), p.graphdef, p.latency_scale_ms))


def make_predictor(model: nnx.Module, encoder: FeatureEncoder, latency_scale_ms: float,
                   metadata: dict[str, Any] | None = None) -> LatencyPredictor:
    graphdef, state = nnx.split(model)
    return LatencyPredictor(encoder, graphdef, state, latency_scale_ms, metadata)


def _this_process_only(ocp: Any) -> Any:
    """orbax options for a checkpoint this process reads or writes alone: under
    `jax.distributed` orbax would otherwise wait for every process at its barriers
    (a multi-host search's process 0 trains the cost model while the others wait)."""
    me = jax.process_index()
    return ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me})


def save_cost_model(workdir: str | os.PathLike, predictor: LatencyPredictor) -> None:
    """Write the orbax checkpoint and `cost_model.json` (both replaced if present)."""
    import orbax.checkpoint as ocp  # deferred: orbax is slow to import

    workdir = os.path.abspath(os.fspath(workdir))
    os.makedirs(workdir, exist_ok=True)
    with ocp.StandardCheckpointer(multiprocessing_options=_this_process_only(ocp)
                                  ) as checkpointer:
        # As numpy: under jax.distributed orbax refuses process-local jax.Arrays.
        checkpointer.save(os.path.join(workdir, CHECKPOINT_DIR),
                          jax.tree.map(np.asarray, predictor.state), force=True)
        checkpointer.wait_until_finished()
    write_json_atomic(os.path.join(workdir, METADATA_FILE), predictor.metadata)


def read_metadata(workdir: str | os.PathLike) -> dict[str, Any]:
    path = os.path.join(os.fspath(workdir), METADATA_FILE)
    try:
        with open(path) as f:
            metadata = json.load(f)
    except OSError:
        raise SpecError(f"cost model {path}: missing; train one with `tunas-jax "
                        f"train-cost-model --workdir {workdir}`") from None
    except json.JSONDecodeError as err:
        raise SpecError(f"cost model {path}: malformed JSON ({err})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise SpecError(f"cost model {path}.format: expected {FORMAT!r}")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise SpecError(f"cost model {path}.format_version: {metadata.get('format_version')!r}; "
                        f"this tunas-jax reads {FORMAT_VERSION}")
    return metadata


def load_cost_model(workdir: str | os.PathLike, space: SearchSpace,
                    target_name: str) -> LatencyPredictor:
    """The predictor trained in `workdir`; SpecError if it was trained for another
    space definition (fingerprint) or another hardware target."""
    import orbax.checkpoint as ocp

    metadata = read_metadata(workdir)
    if metadata.get("space_fingerprint") != space.fingerprint:
        raise SpecError(
            f"cost model {workdir}: trained for space {metadata.get('space')!r} "
            f"(fingerprint {metadata.get('space_fingerprint')}), not {space.name!r} "
            f"({space.fingerprint}); train one for this space with `tunas-jax train-cost-model`")
    if metadata.get("target") != target_name:
        raise SpecError(
            f"cost model {workdir}: trained for target {metadata.get('target')!r}, not "
            f"{target_name!r}; train one for this target with `tunas-jax train-cost-model`")
    model_info = metadata["model"]
    encoder = encoder_for(space, bool(model_info["kronecker"]))
    if model_info.get("vocab_size") != encoder.vocab_size:
        raise SpecError(f"cost model {workdir}: made with another feature encoding "
                        f"({model_info.get('vocab_size')} slots, this tunas-jax has "
                        f"{encoder.vocab_size}); re-run train-cost-model")
    abstract = nnx.eval_shape(lambda: build_model(model_info["kind"], encoder,
                                                  model_info.get("hidden_sizes", ())))
    graphdef, abstract_state = nnx.split(abstract)
    path = os.path.join(os.path.abspath(os.fspath(workdir)), CHECKPOINT_DIR)
    if not os.path.isdir(path):
        raise SpecError(f"cost model {path}: checkpoint missing; re-run train-cost-model")
    with ocp.StandardCheckpointer(multiprocessing_options=_this_process_only(ocp)
                                  ) as checkpointer:
        state = checkpointer.restore(path, jax.tree.map(
            lambda a: np.zeros(a.shape, a.dtype), abstract_state))
    state = jax.tree.map(jnp.asarray, state)
    return LatencyPredictor(encoder, graphdef, state,
                            metadata["normalization"]["latency_scale_ms"], metadata)
