"""A thin wrapper over a usearch HNSW index with integer keys (its scores are the
metric's similarities, :mod:`engram_worker.core.similarity`)."""

from __future__ import annotations

import numpy as np
from usearch.index import Index

from engram_contract.messages import Metric
from engram_worker.core.similarity import from_distances

# Keys at or above this are scratch keys used by :meth:`VectorIndex.scrub`; the
# fold hands out keys from 1 upwards and never gets near it.
_SCRUB_KEYS = 1 << 63


EXACT_SEARCH_BELOW = 2048  # vectors; exhaustive search costs ~0.1 ms there


class VectorIndex:
    """HNSW index of one space. Not thread-safe: callers serialise mutations and
    searches (see :class:`engram_worker.host.SpaceHost`)."""

    def __init__(self, dim: int, metric: Metric = "cos", dtype: str = "f32") -> None:
        self.dim = dim
        self.metric = metric
        self.dtype = dtype
        self._index = Index(ndim=dim, metric=metric, dtype=dtype)
        self._view: bytes | bytearray | memoryview | None = None  # see from_bytes
        self._dirty = False  # a removed vector may still sit in a free slot
        # bytes of its vectors and graph links as of the last change (read while no
        # insert runs); usearch's own ``memory_usage`` counts whole reserved arenas
        # (16 MiB for a 10-vector index whose pages hold ~60 KiB)
        self.memory_bytes = 0

    @classmethod
    def from_bytes(
        cls, data: bytes | bytearray | memoryview, dim: int, metric: Metric, *, view: bool = False
    ) -> VectorIndex:
        """Restore an index saved by :meth:`to_bytes`; raises ``ValueError`` when the
        bytes are not an index of this shape.

        ``view``: serve searches from ``data`` itself (usearch's view: no copy, a
        few milliseconds at 100k where a restore takes 0.15 s), and make the
        index's own copy only before its first change (:meth:`_own`). ``data``
        must then be checked bytes of a usearch index (a snapshot's verified
        section) that nothing else changes; the index keeps a reference to it."""
        try:
            index = Index.restore(data, view=view)
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
        restored._view = data if view else None
        restored._dirty = index.stats.nodes > len(index)
        # a view's pages are the snapshot's bytes: the same size, counted once
        restored.memory_bytes = int(index.serialized_length)
        return restored

    @property
    def viewed(self) -> bool:
        """Searches are served from the snapshot's bytes (no change made yet)."""
        return self._view is not None

    def _own(self) -> None:
        """Before a change: an index of its own in place of the view (usearch
        cannot change a viewed index), restored from the same bytes."""
        if self._view is None:
            return
        index = Index.restore(self._view)
        assert index is not None, "the viewed bytes restore"
        index.expansion_search = self._index.expansion_search  # type: ignore[misc]
        self._index, self._view = index, None
        self.memory_bytes = int(index.serialized_length)

    def __len__(self) -> int:
        return len(self._index)

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        if len(keys):
            self._own()
            self._index.add(keys, vectors, threads=0)
            # read here, in the inserting thread: usearch's allocator may not be
            # read while another thread inserts (a metrics scrape crashed so)
            self.memory_bytes = int(self._index.serialized_length)

    def remove(self, keys: list[int]) -> None:
        if keys:
            self._own()
        for key in keys:
            self._index.remove(int(key))
        if keys:
            self._dirty = True

    @property
    def dirty(self) -> bool:
        """A removed vector may still sit in a free slot (until :meth:`scrub`)."""
        return self._dirty

    def scrub(self) -> int:
        """Overwrite the vectors of removed entries; returns how many slots were scrubbed.

        usearch's ``remove`` only unmaps a key: the vector stays in its slot (and in
        ``save()``'s bytes) until an insert reuses the slot. Inserting random scratch
        vectors into every free slot and removing them again leaves no forgotten
        vector in memory or in a snapshot. The scratch vectors are seeded (by how
        many there are): the same state scrubs to the same bytes, replicas and
        replays alike.
        """
        if not self._dirty:
            return 0
        free = int(self._index.stats.nodes) - len(self._index)
        if free > 0:
            self._own()
            keys = np.arange(_SCRUB_KEYS, _SCRUB_KEYS + free, dtype=np.uint64)
            noise = np.random.default_rng(free).standard_normal((free, self.dim)).astype(np.float32)
            self._index.add(keys, noise, threads=0)
            self._index.remove(keys)
        self._dirty = False
        return free

    def to_bytes(self) -> bytearray:
        """The serialised index (scrub first so removed vectors are not in it)."""
        if self._view is not None:  # unchanged since restored: the same bytes
            return bytearray(self._view)
        data = self._index.save()
        assert data is not None  # save() without a path returns the bytes
        return bytearray(data) if isinstance(data, bytes) else data

    def search(self, vector: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``count`` nearest keys and their similarities (higher is closer)."""
        if len(self._index) == 0 or count <= 0:
            return np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.float32)
        # small spaces are searched exhaustively: exact answers, and no different
        # ranking after a restart rebuilt the HNSW graph in other batches
        size = len(self._index)
        matches = self._index.search(vector, min(count, size), exact=size <= EXACT_SEARCH_BELOW)
        return np.asarray(matches.keys), from_distances(self.metric, np.asarray(matches.distances))

    def search_many(
        self, vectors: np.ndarray, count: int, *, exact: bool = False, expansion: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """For each row of ``vectors``: up to ``count`` nearest keys and their
        similarities, as 2-D arrays (rows padded with similarity ``-inf``).
        ``expansion``: a narrower HNSW search than queries use (cheaper, a little
        less exact); the caller must hold the index alone meanwhile."""
        rows = len(vectors)
        count = min(count, len(self._index))
        if rows == 0 or count <= 0:
            return (
                np.zeros((rows, 0), dtype=np.uint64),
                np.zeros((rows, 0), dtype=np.float32),
            )
        default = self._index.expansion_search
        if expansion:
            self._index.expansion_search = expansion  # type: ignore[misc]  # untyped setter
        try:
            found = self._index.search(vectors, count, threads=0, exact=exact)
        finally:
            self._index.expansion_search = default  # type: ignore[misc]
        keys = np.asarray(found.keys, dtype=np.uint64).reshape(rows, -1)
        sims = from_distances(self.metric, np.asarray(found.distances).reshape(rows, -1))
        counts = np.asarray(getattr(found, "counts", [keys.shape[1]])).reshape(rows)
        sims[np.arange(sims.shape[1])[None, :] >= counts[:, None]] = -np.inf
        return keys, sims

    def contains_all(self, keys: list[int] | np.ndarray) -> bool:
        """Whether every key has a vector here."""
        if not len(keys):
            return True
        found = self._index.contains(np.asarray(keys, dtype=np.uint64))
        return bool(np.all(found))

    def get_many(self, keys: list[int]) -> list[np.ndarray | None]:
        """The vectors of ``keys`` (``None`` for a key not here), in one call."""
        if not keys:
            return []
        found = self._index.get(np.asarray(keys, dtype=np.uint64))
        if found is None:
            return [None] * len(keys)
        if isinstance(found, np.ndarray) and found.ndim == 2:
            return list(found.astype(np.float32, copy=False))
        return [None if v is None else np.asarray(v, dtype=np.float32) for v in found]

    def get(self, key: int) -> np.ndarray | None:
        vec = self._index.get(int(key))
        return None if vec is None else np.asarray(vec, dtype=np.float32)
