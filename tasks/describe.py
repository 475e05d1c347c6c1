"""The network description of an architecture together with its task's head."""

from __future__ import annotations

from search_spaces import ModelSpec, NetworkDescription
from search_spaces.graph import describe_graph as _describe_graph
from search_spaces.graph import lower
from tasks.base import Task
from tasks.classification import Classification


def describe_graph(graph, image_size: int, task: Task, name: str = "network"
                   ) -> NetworkDescription:
    task = task.with_head(dict(graph.task_head))
    return _describe_graph(graph, image_size, task.head_layers, name)


def describe(spec: ModelSpec, image_size: int, task: Task | int, name: str = "network",
             input_channels: int = 3) -> NetworkDescription:
    """The flat description of `spec` with `task`'s head (an int: classification with that
    many classes) at `image_size` px."""
    if isinstance(task, int):
        task = Classification(task)
    return describe_graph(lower(spec, input_channels), image_size, task, name)
