"""Vectors on their way into the HNSW index, in batches.

HNSW insert is the ingest ceiling, and a batch insert uses every core. The fold
buffers each new vector (``pending``); :meth:`Indexing.take` detaches a batch
(finding its temporal links as it goes, in stream order) and :meth:`Indexing.run`
inserts it, finding its semantic links first. ``run`` may run in a thread while
the fold goes on: anything the fold replaces meanwhile is ``stale`` and removed
by the next batch. Links found while indexing wait in ``derived`` until a reader
absorbs them into the association graph.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from engram_worker.core.graph import AssociationGraph
from engram_worker.core.index import VectorIndex
from engram_worker.core.links import Found, LinkFinder
from engram_worker.core.records import Records


@dataclass(slots=True)
class FlushBatch:
    keys: np.ndarray
    vectors: np.ndarray
    stale: list[int] = field(default_factory=list)
    # derived links found while indexing: (key, other key, weight, kind)
    links: list[Found] = field(default_factory=list)


class Indexing:
    """The vectors not yet in ``index``, and the links found while indexing."""

    def __init__(self, index: VectorIndex, links: LinkFinder, records: Records) -> None:
        self.index = index
        self.links = links
        self.records = records
        self.pending: dict[int, np.ndarray] = {}
        self.inflight: dict[int, np.ndarray] = {}  # taken by take(), not yet indexed
        self.stale: list[int] = []
        # appended by the inserting thread, absorbed by a reader
        self.derived: list[list[Found]] = []

    def discard(self, key: int) -> None:
        """A record left: its vector is dropped from the buffer, or from the index
        by the next batch."""
        if self.pending.pop(key, None) is None:
            self.stale.append(key)

    def vector(self, key: int) -> np.ndarray | None:
        vec = self.pending.get(key)
        if vec is None:
            vec = self.inflight.get(key)
        if vec is None:
            vec = self.index.get(key)
        return vec

    def take(self, limit: int | None = None) -> FlushBatch | None:
        """Detach up to ``limit`` buffered vectors (and the stale keys) for
        :meth:`run`; ``None`` when there is nothing to do."""
        if not self.pending and not self.stale:
            return None
        if limit is None or len(self.pending) <= limit:
            taken, self.pending = self.pending, {}
        else:
            keys = list(itertools.islice(self.pending, limit))
            taken = {k: self.pending.pop(k) for k in keys}
        batch = FlushBatch(
            links=self.links.temporal(taken, self.records.by_key),
            keys=np.fromiter(taken.keys(), dtype=np.uint64, count=len(taken)),
            vectors=(
                np.stack(list(taken.values()))
                if taken
                else np.empty((0, self.index.dim), dtype=np.float32)
            ),
            stale=self.stale,
        )
        self.inflight = taken
        self.stale = []
        return batch

    def run(self, batch: FlushBatch) -> None:
        """Insert a detached batch (safe to run in a thread; serialise with searches),
        finding its semantic links first."""
        self.index.remove(batch.stale)
        batch.links += self.links.semantic(batch.keys, batch.vectors, self.index)
        self.index.add(batch.keys, batch.vectors)
        self.derived.append(batch.links)
        self.inflight = {}

    def absorb(self, graph: AssociationGraph) -> None:
        """Add the links found while indexing to the graph (those whose memories
        are still there)."""
        by_key = self.records.by_key
        while self.derived:
            for a, b, weight, kind in self.derived.pop(0):
                if a in by_key and b in by_key:
                    graph.link(a, b, weight, kind)
