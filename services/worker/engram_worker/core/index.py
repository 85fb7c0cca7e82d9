"""A thin wrapper over a usearch HNSW index with integer keys."""

from __future__ import annotations

import numpy as np
from usearch.index import Index

from engram_common.messages import Metric


class VectorIndex:
    """HNSW index of one space. Not thread-safe: callers serialise mutations and
    searches (see :class:`engram_worker.host.SpaceHost`)."""

    def __init__(self, dim: int, metric: Metric = "cos", dtype: str = "f32") -> None:
        self.dim = dim
        self.metric = metric
        self._index = Index(ndim=dim, metric=metric, dtype=dtype)

    def __len__(self) -> int:
        return len(self._index)

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        if len(keys):
            self._index.add(keys, vectors, threads=0)

    def remove(self, keys: list[int]) -> None:
        for key in keys:
            self._index.remove(int(key))

    def search(self, vector: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``count`` nearest keys and their similarities (higher is closer)."""
        if len(self._index) == 0 or count <= 0:
            return np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.float32)
        matches = self._index.search(vector, min(count, len(self._index)))
        return np.asarray(matches.keys), self.similarity(np.asarray(matches.distances))

    def similarity(self, distances: np.ndarray) -> np.ndarray:
        if self.metric == "l2sq":
            return (1.0 / (1.0 + distances)).astype(np.float32)
        # usearch's cos and ip distances are 1 - cosine / 1 - dot product
        return (1.0 - distances).astype(np.float32)

    def get(self, key: int) -> np.ndarray | None:
        vec = self._index.get(int(key))
        return None if vec is None else np.asarray(vec, dtype=np.float32)
