"""Image classification: global average pool of the backbone features, dropout, a
fully connected layer with bias; label-smoothed cross-entropy; top-1 accuracy.

Batches are `{'image': float [N, H, W, C], 'label': int [N]}`. The reward's
quality signal is the validation batch's top-1 accuracy (TuNAS).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from search_spaces import Layer
from tasks import initializers
from tasks.base import Batch, Endpoints, Task, register_task


class ClassificationHead(nnx.Module):
    """features -> global average pool -> dropout -> logits (with bias)."""

    def __init__(self, width: int, num_classes: int, *, rngs: nnx.Rngs,
                 dropout_rate: float = 0.0) -> None:
        if not 0.0 <= dropout_rate < 1.0:
            raise ValueError(f"dropout_rate={dropout_rate} must be in [0, 1)")
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)
        self.logits = nnx.Linear(width, num_classes, kernel_init=initializers.classifier_init,
                                 bias_init=nnx.initializers.zeros_init(), rngs=rngs)

    def named_layers(self):
        yield "logits", self.logits

    def __call__(self, endpoints: Endpoints, rngs: Any = None) -> jax.Array:
        pooled = jnp.mean(endpoints["features"], axis=(1, 2))
        return self.logits(self.dropout(pooled, rngs=rngs))


class Classification(Task):
    name = "classification"
    primary_metric = "top1"

    def __init__(self, num_classes: int) -> None:
        if int(num_classes) < 1:
            raise ValueError(f"num_classes={num_classes} must be >= 1")
        self.num_classes = int(num_classes)

    def head_layers(self, endpoints: Mapping[str, tuple[str, tuple[int, int, int]]]
                    ) -> list[Layer]:
        features, features_shape = endpoints["features"]
        h, _, c = features_shape
        pool = Layer(name="pool", op="pool", inputs=(features,), input_shape=features_shape,
                     output_shape=(1, 1, c), kernel_size=h, stride=1, padding="valid",
                     pool_type="avg", global_pool=True)
        logits = Layer(name="logits", op="fully_connected", inputs=("pool",),
                       input_shape=(1, 1, c), output_shape=(1, 1, self.num_classes),
                       use_bias=True)
        return [pool, logits]

    def init_head(self, key: jax.Array, endpoint_widths: Mapping[str, int]) -> Any:
        width = endpoint_widths["features"]
        return {"logits": {
            "kernel": initializers.classifier_init(key, (width, self.num_classes)),
            "bias": jnp.zeros((self.num_classes,))}}

    def apply_head(self, params: Any, endpoints: Endpoints, *, train: bool) -> jax.Array:
        del train  # no dropout in the supernet (TuNAS)
        # Padded channels are zero, so a full-width dense layer is exact.
        pooled = jnp.mean(endpoints["features"], axis=(1, 2))
        return pooled @ params["logits"]["kernel"] + params["logits"]["bias"]

    def inherit_head(self, params: Any, endpoint_widths: Mapping[str, int]
                     ) -> dict[str, dict[str, Any]]:
        width = endpoint_widths["features"]
        return {"logits": {"kernel": params["logits"]["kernel"][:width],
                           "bias": params["logits"]["bias"]}}

    def build_head(self, endpoint_widths: Mapping[str, int], *, rngs: nnx.Rngs,
                   dropout_rate: float = 0.0) -> ClassificationHead:
        return ClassificationHead(endpoint_widths["features"], self.num_classes, rngs=rngs,
                                  dropout_rate=dropout_rate)

    def loss(self, output: jax.Array, batch: Batch, *, label_smoothing: float = 0.0
             ) -> tuple[jax.Array, dict[str, jax.Array]]:
        targets = optax.smooth_labels(jax.nn.one_hot(batch["label"], output.shape[-1]),
                                      label_smoothing)
        loss = optax.softmax_cross_entropy(output, targets).mean()
        return loss, {"accuracy": self.quality(output, batch)}

    def quality(self, output: jax.Array, batch: Batch) -> jax.Array:
        return jnp.mean(jnp.argmax(output, -1) == batch["label"])

    def eval_sums(self, output: jax.Array, batch: Batch, mask: jax.Array
                  ) -> dict[str, jax.Array]:
        loss = optax.softmax_cross_entropy_with_integer_labels(output, batch["label"])
        correct = (jnp.argmax(output, -1) == batch["label"]) & mask
        return {"correct": correct.sum(), "loss_sum": jnp.where(mask, loss, 0.0).sum(),
                "count": mask.sum()}

    def finish_eval(self, sums: Mapping[str, float]) -> dict[str, float]:
        count = max(float(sums["count"]), 1.0)
        return {"top1": float(sums["correct"]) / count, "loss": float(sums["loss_sum"]) / count,
                "num_examples": int(sums["count"])}

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "num_classes": self.num_classes}


register_task("classification", Classification)
