"""A thin wrapper over a usearch HNSW index with integer keys."""

from __future__ import annotations

import numpy as np
from usearch.index import Index

from engram_common.messages import Metric

# Keys at or above this are scratch keys used by :meth:`VectorIndex.scrub`; the
# fold hands out keys from 1 upwards and never gets near it.
_SCRUB_KEYS = 1 << 63


class VectorIndex:
    """HNSW index of one space. Not thread-safe: callers serialise mutations and
    searches (see :class:`engram_worker.host.SpaceHost`)."""

    def __init__(self, dim: int, metric: Metric = "cos", dtype: str = "f32") -> None:
        self.dim = dim
        self.metric = metric
        self.dtype = dtype
        self._index = Index(ndim=dim, metric=metric, dtype=dtype)
        self._dirty = False  # a removed vector may still sit in a free slot

    @classmethod
    def from_bytes(
        cls, data: bytes | bytearray | memoryview, dim: int, metric: Metric
    ) -> VectorIndex:
        """Restore an index saved by :meth:`to_bytes`; raises ``ValueError`` when the
        bytes are not an index of this shape."""
        try:
            index = Index.restore(data)
        except (RuntimeError, ValueError) as exc:
            raise ValueError(f"not a usearch index: {exc}") from None
        if index is None:
            raise ValueError("not a usearch index")
        if index.ndim != dim:
            raise ValueError(f"index has dim {index.ndim}; the space has dim {dim}")
        restored = cls.__new__(cls)
        restored.dim = dim
        restored.metric = metric
        restored.dtype = str(index.dtype).rsplit(".", 1)[-1].lower()
        restored._index = index
        restored._dirty = index.stats.nodes > len(index)
        return restored

    def __len__(self) -> int:
        return len(self._index)

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        if len(keys):
            self._index.add(keys, vectors, threads=0)

    def remove(self, keys: list[int]) -> None:
        for key in keys:
            self._index.remove(int(key))
        if keys:
            self._dirty = True

    def scrub(self) -> int:
        """Overwrite the vectors of removed entries; returns how many slots were scrubbed.

        usearch's ``remove`` only unmaps a key: the vector stays in its slot (and in
        ``save()``'s bytes) until an insert reuses the slot. Inserting random scratch
        vectors into every free slot and removing them again leaves no forgotten
        vector in memory or in a snapshot.
        """
        if not self._dirty:
            return 0
        free = int(self._index.stats.nodes) - len(self._index)
        if free > 0:
            keys = np.arange(_SCRUB_KEYS, _SCRUB_KEYS + free, dtype=np.uint64)
            noise = np.random.default_rng().standard_normal((free, self.dim)).astype(np.float32)
            self._index.add(keys, noise, threads=0)
            self._index.remove(keys)
        self._dirty = False
        return free

    def to_bytes(self) -> bytearray:
        """The serialised index (scrub first so removed vectors are not in it)."""
        data = self._index.save()
        assert data is not None  # save() without a path returns the bytes
        return bytearray(data) if isinstance(data, bytes) else data

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

    def contains_all(self, keys: list[int]) -> bool:
        """Whether every key has a vector here."""
        if not keys:
            return True
        found = self._index.contains(np.asarray(keys, dtype=np.uint64))
        return bool(np.all(found))

    def get(self, key: int) -> np.ndarray | None:
        vec = self._index.get(int(key))
        return None if vec is None else np.asarray(vec, dtype=np.float32)
