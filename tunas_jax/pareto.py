"""The latency/quality Pareto front, shared by the report and the multi-trial study."""

from __future__ import annotations

import numpy as np


def pareto_front(latency: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats (faster or equal and better), fastest
    first."""
    latency, quality = np.asarray(latency), np.asarray(quality)
    order = np.lexsort((-quality, latency))
    front, best = [], -np.inf
    for i in order:
        if quality[i] > best:
            front.append(i)
            best = quality[i]
    return np.asarray(front, np.int64)
