"""The interface shared by the datastore's nearest-neighbour search backends.

``search(queries (N, D), k) -> (scores (N, k), ids (N, k))`` where ``ids`` index the stored
keys in insertion order and ``scores`` are *distances* for ``metric="l2"`` (squared L2,
ascending) and *similarities* for ``metric="ip"`` (inner product, descending), as faiss
returns them. Rows with fewer than ``k`` stored keys are padded with id ``-1``.
"""

from __future__ import annotations

import abc
from typing import Tuple

import numpy as np

METRICS = ("l2", "ip")


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    return metric


class SearchBackend(abc.ABC):
    """k-nearest-neighbour search over stored keys (see module docstring for conventions)."""

    metric: str
    dim: int

    @property
    @abc.abstractmethod
    def ntotal(self) -> int:
        """Number of stored keys."""

    @abc.abstractmethod
    def add(self, keys: np.ndarray) -> None:
        """Append keys ``(N, D)``; they get ids ``ntotal .. ntotal + N - 1``."""

    @abc.abstractmethod
    def search(self, queries: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        """``(scores (N, k) float32, ids (N, k) int64)`` of the ``k`` nearest keys per query."""

    def check_queries(self, queries: np.ndarray, k: int) -> np.ndarray:
        q = np.ascontiguousarray(np.asarray(queries, dtype=np.float32))
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"queries must have shape (N, {self.dim}), got {tuple(q.shape)}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        return q
