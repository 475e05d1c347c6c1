"""The task interface: everything that depends on what the network is trained to do.

A task owns the batch format, the head on top of the backbone's endpoints,
the loss, the quality signal the search's reward uses, and the evaluation
metrics. The search (`tunas_jax.search_step`), standalone training
(`tunas_jax.train_step`), the random baseline and the report go through it
and never mention labels, logits or top-1 themselves; the cost models take
the head's layers from it (`head_layers`), so a network is costed with the
head it is deployed with.

The same head exists in two forms, as the backbone does: a pure function over
a plain pytree for the supernet (`init_head` / `apply_head`, reading the
zero-padded endpoints) and an nnx module for the standalone model
(`build_head`); `inherit_head` cuts the first into the second's shapes.
A new task is a subclass in its own module and one `register_task` call.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import jax
from flax import nnx

from search_spaces import Layer

Batch = Mapping[str, jax.Array]
Endpoints = Mapping[str, jax.Array]


class Task:
    """Base class; subclasses set `name` and implement the methods."""

    name: str = ""
    # The batch key of the network input, and the metric `evaluate` reports first.
    input_key: str = "image"
    primary_metric: str = ""

    # ---- head -----------------------------------------------------------------------
    def head_layers(self, endpoints: Mapping[str, tuple[str, tuple[int, int, int]]]
                    ) -> list[Layer]:
        """The head's network-description layers, given each endpoint's (layer name,
        shape [H, W, C])."""
        raise NotImplementedError

    def init_head(self, key: jax.Array, endpoint_widths: Mapping[str, int]) -> Any:
        """Supernet head weights for endpoints of (largest) widths `endpoint_widths`."""
        raise NotImplementedError

    def apply_head(self, params: Any, endpoints: Endpoints, *, train: bool) -> jax.Array:
        """The output of the supernet head (endpoints zero-padded to their largest width)."""
        raise NotImplementedError

    def inherit_head(self, params: Any, endpoint_widths: Mapping[str, int]
                     ) -> dict[str, dict[str, Any]]:
        """{description layer name: its weights} of the child's head, cut from `params`."""
        raise NotImplementedError

    def build_head(self, endpoint_widths: Mapping[str, int], *, rngs: nnx.Rngs,
                   dropout_rate: float = 0.0) -> nnx.Module:
        """The standalone head: called as `head(endpoints, rngs=None)`; `named_layers()`
        yields (description layer name, module) for its parametrized layers."""
        raise NotImplementedError

    def with_head(self, settings: Mapping[str, Any]) -> Task:
        """This task with the head settings an architecture picked (`ModelSpec.task_head`,
        from a space's `head_task` decisions); a task without searchable head settings
        accepts none."""
        if settings:
            from search_spaces import SpecError

            raise SpecError(f"task {self.name!r} has no searchable head settings; the "
                            f"architecture gives {sorted(settings)}")
        return self

    def with_head_choices(self, choices: Mapping[str, tuple[Any, ...]]) -> Task:
        """The supernet's task for a space whose head decisions take `choices` (setting
        -> its values, in index order): `init_head` then holds every choice's weights and
        `apply_head(..., head_indices=[one index per setting, in `choices` order])` runs
        the picked one."""
        return self.with_head(choices)

    # ---- objective ------------------------------------------------------------------
    def loss(self, output: jax.Array, batch: Batch, *, label_smoothing: float = 0.0
             ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """(scalar training loss, per-batch training metrics)."""
        raise NotImplementedError

    def quality(self, output: jax.Array, batch: Batch) -> jax.Array:
        """The scalar the one-shot reward maximizes (validation batch)."""
        raise NotImplementedError

    def eval_sums(self, output: jax.Array, batch: Batch, mask: jax.Array
                  ) -> dict[str, jax.Array]:
        """Per-batch sums over the examples where `mask` (padding excluded)."""
        raise NotImplementedError

    def finish_eval(self, sums: Mapping[str, float]) -> dict[str, float]:
        """Metrics of a whole evaluation pass from the added-up `eval_sums`."""
        raise NotImplementedError

    def output_values(self, image_size: int) -> int:
        """Values the network's output holds at `image_size` px (what the cost models'
        I/O term moves off the device): the logits by default."""
        return int(self.num_classes)

    def to_json(self) -> dict[str, Any]:
        """The task's name and settings (what `get_task(**to_json())` rebuilds)."""
        return {"name": self.name}

    # Tasks compare by what they are, so a Workload (and a cache keyed by one) built
    # twice from the same config is the same.
    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.to_json() == self.to_json()

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_json(), sort_keys=True))


_TASKS: dict[str, Callable[..., Task]] = {}


def register_task(name: str, factory: Callable[..., Task], *, replace: bool = False) -> None:
    """Make `get_task(name, **settings)` build tasks with `factory(**settings)`."""
    if name in _TASKS and not replace and _TASKS[name] is not factory:
        raise ValueError(f"task {name!r} is already registered; pick another name or pass "
                         "replace=True")
    _TASKS[name] = factory


def get_task(name: str, **settings: Any) -> Task:
    """The task called `name` (e.g. `get_task('classification', num_classes=10)`)."""
    if name not in _TASKS:
        from search_spaces import SpecError

        raise SpecError(f"task {name!r} is unknown; choose one of {task_names()}")
    try:
        return _TASKS[name](**settings)
    except TypeError as err:  # an unknown setting
        from search_spaces import SpecError

        raise SpecError(f"task {name!r}: {err}") from None


def task_from_json(text: str, num_classes: int) -> Task:
    """The task a JSON `to_json()` text describes; '' = classification of `num_classes`."""
    if not text:
        return get_task("classification", num_classes=num_classes)
    return get_task(**json.loads(text))


def task_names() -> list[str]:
    return sorted(_TASKS)
