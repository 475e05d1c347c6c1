"""Tasks (what a network is trained to do), looked up by name: the batch format, the
head on the backbone's endpoints, the loss, the reward's quality signal and the
evaluation metrics (`tasks.base.Task`). Imports `search_spaces` only.

Shipped: `classification` (`tasks.classification`) and `segmentation`
(`tasks.segmentation`, its heads DeepLabv3+ in `tasks.deeplab` and BiFPN in
`tasks.bifpn`, their shared layer code in `tasks.head_parts`). A new task is a module with
a `Task` subclass and a `register_task(name, factory)` call.
"""

from tasks.base import Task, get_task, register_task, task_from_json, task_names
from tasks.classification import Classification, ClassificationHead
from tasks.describe import describe, describe_graph
from tasks.segmentation import Segmentation

__all__ = ["Classification", "ClassificationHead", "Segmentation", "Task", "describe",
           "describe_graph", "get_task", "register_task", "task_from_json", "task_names"]
