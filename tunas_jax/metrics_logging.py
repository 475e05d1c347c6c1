"""Search metrics: a JSON-lines file and TensorBoard event files (tensorboardX).

`W/metrics.jsonl` holds one object per logged step (scalars only); TensorBoard
(`W/tensorboard/`) gets the same scalars plus every decision's choice
probabilities (`probabilities/<decision>/<value>`). On resume the JSON-lines
file is cut back to the restored step so that no step appears twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from search_spaces import SearchSpace

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


class MetricsLogger:
    def __init__(self, workdir: str, space: SearchSpace, resume_step: int = 0,
                 tensorboard: bool = True) -> None:
        self.path = os.path.join(workdir, METRICS_FILE)
        self.space = space
        _truncate(self.path, resume_step)
        self._file = open(self.path, "a")  # noqa: SIM115 (closed in close())
        self._writer = None
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._writer = SummaryWriter(os.path.join(workdir, TENSORBOARD_DIR),
                                         purge_step=resume_step + 1 if resume_step else None)

    def log(self, step: int, scalars: Mapping[str, Any], probabilities: Any = None) -> None:
        row = {"step": int(step), **{k: float(v) for k, v in scalars.items()}}
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        if self._writer is None:
            return
        for key, value in row.items():
            if key != "step":
                self._writer.add_scalar(key, value, step)
        if probabilities is not None:
            probabilities = np.asarray(probabilities)
            for d in self.space.decisions:
                for i, choice in enumerate(d.choices):
                    self._writer.add_scalar(f"probabilities/{d.name}/{choice}",
                                            float(probabilities[d.position, i]), step)

    def close(self) -> None:
        self._file.close()
        if self._writer is not None:
            self._writer.close()


def _truncate(path: str, step: int) -> None:
    """Keep only lines with step <= `step` (all of them gone when step is 0)."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        kept = [line for line in f if line.strip() and json.loads(line)["step"] <= step]
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(kept)
    os.replace(tmp, path)


def read_metrics(workdir: str) -> list[dict[str, float]]:
    with open(os.path.join(workdir, METRICS_FILE)) as f:
        return [json.loads(line) for line in f if line.strip()]
