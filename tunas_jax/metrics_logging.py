"""Search metrics: a JSON-lines file and TensorBoard event files (tensorboardX).

`W/metrics.jsonl` holds one object per logged step (scalars only);
`W/controller_probabilities.jsonl` one `{"step", "probabilities"}` per logged
search step (per decision, its choices' probabilities: what the report's
heatmap draws). TensorBoard (`W/tensorboard/`) gets the same scalars plus
every decision's choice probabilities (`probabilities/<decision>/<value>`).
On resume the JSON-lines files are cut back to the restored step so that no
step appears twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from search_spaces import SearchSpace

METRICS_FILE = "metrics.jsonl"
PROBABILITIES_FILE = "controller_probabilities.jsonl"
TENSORBOARD_DIR = "tensorboard"


class MetricsLogger:
    def __init__(self, workdir: str, space: SearchSpace, resume_step: int = 0,
                 tensorboard: bool = True) -> None:
        self.path = os.path.join(workdir, METRICS_FILE)
        self.probabilities_path = os.path.join(workdir, PROBABILITIES_FILE)
        self.space = space
        _truncate(self.path, resume_step)
        _truncate(self.probabilities_path, resume_step)
        self._file = open(self.path, "a")  # noqa: SIM115 (closed in close())
        self._probabilities_file = None  # opened on the first probabilities logged
        self._writer = None
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._writer = SummaryWriter(os.path.join(workdir, TENSORBOARD_DIR),
                                         purge_step=resume_step + 1 if resume_step else None)

    def log(self, step: int, scalars: Mapping[str, Any], probabilities: Any = None) -> None:
        row = {"step": int(step), **{k: float(v) for k, v in scalars.items()}}
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        if probabilities is not None:
            probabilities = np.asarray(probabilities)
            if self._probabilities_file is None:
                self._probabilities_file = open(self.probabilities_path, "a")  # noqa: SIM115
            per_decision = [[round(float(p), 6) for p in probabilities[d.position, :len(d.choices)]]
                            for d in self.space.decisions]
            self._probabilities_file.write(
                json.dumps({"step": int(step), "probabilities": per_decision}) + "\n")
            self._probabilities_file.flush()
        if self._writer is None:
            return
        for key, value in row.items():
            if key != "step":
                self._writer.add_scalar(key, value, step)
        if probabilities is not None:
            for d in self.space.decisions:
                for i, choice in enumerate(d.choices):
                    self._writer.add_scalar(f"probabilities/{d.name}/{choice}",
                                            float(probabilities[d.position, i]), step)

    def close(self) -> None:
        self._file.close()
        if self._probabilities_file is not None:
            self._probabilities_file.close()
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


def read_metrics(workdir: str, name: str = METRICS_FILE) -> list[dict[str, Any]]:
    """The rows of one of the JSON-lines files (`METRICS_FILE`, `PROBABILITIES_FILE`)."""
    with open(os.path.join(workdir, name)) as f:
        return [json.loads(line) for line in f if line.strip()]
