"""``SpaceState``: one memory space folded from its WAL.

``apply_message`` is the only way state changes, and the same function serves
live tailing and replay. The position (``applied_seq``) is part of the state, so
a message at or below it is skipped: redeliveries and replays are harmless.

Vectors are buffered and inserted into the HNSW index in batches (HNSW insert is
the ingest ceiling; a batch insert uses every core). A batch is detached from
the state by :meth:`take_flush` and inserted by :meth:`run_flush`, which may run
in a thread while the fold goes on; anything the fold replaces meanwhile is
removed by the next flush. Queries call :meth:`flush` first, so a recall sees
every applied memory.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
import numpy as np

from engram_common.embedders import Embedder
from engram_common.messages import (
    MemoriesLinked,
    Memory,
    MemoryForgotten,
    MemoryStored,
    MessageRejected,
    RecallResult,
    SpaceRecord,
    vector_problem,
)
from engram_worker.core.graph import SEMANTIC, TEMPORAL, AssociationGraph, GraphInvalid
from engram_worker.core.index import EXACT_SEARCH_BELOW, VectorIndex
from engram_worker.core.snapshot import SnapshotInvalid, columns
from engram_worker.core.wal import CommandRejected, Decoded, Forget, Link, Remember, decode

_RECENT = 16  # memories remembered for temporal links (temporal_max ≤ 16)
_MIN_WEIGHT = 0.01  # weaker derived links are not made
_LINK_EXPANSION = 16  # HNSW search width when finding semantic links
_TIE_SLACK = 8  # extra candidates when finding semantic links
_KINDS = frozenset({"episodic", "semantic"})

# -- what folding a message did ---------------------------------------------------
# Plain slotted classes, not the wire models: the fold makes one per message and
# most are never published (a replay of old history stays quiet), so the pydantic
# event is only built by ``message()`` when it is sent (saves ~3 µs a message).


class Stored(msgspec.Struct, gc=False):
    seq: int
    memory_id: str
    command_id: str
    replaced_seq: int | None = None  # the replaced version's message, to erase

    @property
    def replaced(self) -> bool:
        return self.replaced_seq is not None

    def message(self, space: str) -> MemoryStored:
        return MemoryStored(
            space=space,
            seq=self.seq,
            memory_id=self.memory_id,
            command_id=self.command_id,
            replaced=self.replaced,
            replaced_seq=self.replaced_seq,
        )


class Forgotten(msgspec.Struct, gc=False):
    seq: int
    memory_id: str
    command_id: str
    existed: bool
    erased_seq: int | None = None  # the message that stored it, to erase

    def message(self, space: str) -> MemoryForgotten:
        return MemoryForgotten(
            space=space,
            seq=self.seq,
            memory_id=self.memory_id,
            command_id=self.command_id,
            existed=self.existed,
            erased_seq=self.erased_seq,
        )


class Linked(msgspec.Struct, gc=False):
    seq: int
    command_id: str
    source: str
    target: str
    weight: float
    kind: str

    def message(self, space: str) -> MemoriesLinked:
        return MemoriesLinked(
            space=space,
            seq=self.seq,
            command_id=self.command_id,
            source=self.source,
            target=self.target,
            weight=self.weight,
            kind=self.kind,
        )


class Rejected(msgspec.Struct, gc=False):
    seq: int
    reason: str
    command_id: str | None = None

    def message(self, space: str) -> MessageRejected:
        return MessageRejected(
            space=space, seq=self.seq, reason=self.reason, command_id=self.command_id
        )


Event = Stored | Forgotten | Linked | Rejected


class StoredMemory(msgspec.Struct, gc=False):
    """One live memory. (A msgspec struct: cheaper to make than a dataclass, and
    not tracked by the cyclic GC, which a space of 100k records would otherwise
    make walk them all on every full collection.)"""

    id: str
    key: int
    seq: int
    command_id: str
    content: str
    confidence: float
    tags: list[str]
    metadata: dict[str, str]
    occurred_at: datetime
    created_at: datetime
    kind: str = "episodic"  # "semantic": made by consolidation
    recalls: int = 0  # times recall returned it (reinforcement)
    last_recall: datetime | None = None


@dataclass(slots=True)
class FlushBatch:
    keys: np.ndarray
    vectors: np.ndarray
    stale: list[int] = field(default_factory=list)
    # derived links found while indexing: (key, other key, weight, kind)
    links: list[tuple[int, int, float, str]] = field(default_factory=list)


def max_key(records: dict[str, StoredMemory]) -> int:
    return max((r.key for r in records.values()), default=0)


class SpaceState:
    """Records, vector index and position of one space."""

    def __init__(
        self,
        record: SpaceRecord,
        embedder: Embedder,
        *,
        index_dtype: str = "f32",
    ) -> None:
        self.space = record.id
        self.dim = record.dim
        self.metric = record.metric
        self.embedder = embedder
        self.index = VectorIndex(record.dim, record.metric, index_dtype)
        self.applied_seq = 0
        self.rejected = 0
        self._by_id: dict[str, StoredMemory] = {}
        self._by_key: dict[int, StoredMemory] = {}
        self._seqs: list[int] = []  # sorted seqs of live records, for paging
        self._by_seq: dict[int, str] = {}
        self._next_key = 1
        self._pending: dict[int, np.ndarray] = {}
        self._inflight: dict[int, np.ndarray] = {}  # taken by take_flush, not yet indexed
        self._stale: list[int] = []
        # the association graph; links derived while indexing wait in _derived
        # (appended by the flush thread) until a reader absorbs them
        self.links = record.links
        self._graph = AssociationGraph()
        self._derived: list[list[tuple[int, int, float, str]]] = []
        self._recent: deque[tuple[int, float]] = deque(maxlen=_RECENT)  # (key, stored at)

    # -- fold ---------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._by_id)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def apply_message(self, verb: str, data: bytes, seq: int, timestamp: datetime) -> Event | None:
        """Fold one WAL message. Returns the event to publish, or ``None`` when the
        message is at or below the position (already applied)."""
        if seq <= self.applied_seq:
            return None
        try:
            command = decode(verb, data)
            event: Event = (
                self._remember(command, seq, timestamp)
                if type(command) is Remember
                else self.apply(command, seq, timestamp)
            )
        except CommandRejected as exc:
            self.rejected += 1
            event = Rejected(seq=seq, reason=exc.reason, command_id=exc.command_id)
        self.applied_seq = seq
        return event

    def apply(self, command: Decoded, seq: int, timestamp: datetime) -> Event:
        """Fold a decoded command (does not move the position; see apply_message)."""
        if isinstance(command, Link):
            return self._link(command, seq)
        if isinstance(command, Forget):
            old = self._drop(command.memory_id)
            return Forgotten(
                seq=seq,
                memory_id=command.memory_id,
                command_id=command.command_id,
                existed=old is not None,
                erased_seq=None if old is None else old.seq,
            )
        return self._remember(command, seq, timestamp)

    def _remember(self, command: Remember, seq: int, timestamp: datetime) -> Stored:
        vector = command.vector
        if vector is None:
            vector = self.embedder.embed([command.content])[0]
        elif not command.nonzero or vector.shape != (self.dim,):
            problem = vector_problem(vector, self.dim, self.metric)
            if problem is not None:
                raise CommandRejected(f"memory.embedding: {problem}", command.command_id)
        memory_id = command.memory_id or command.command_id
        created = timestamp if timestamp.tzinfo else timestamp.replace(tzinfo=UTC)
        replaced = self._drop(memory_id)
        key = self._next_key
        self._next_key += 1
        rec = StoredMemory(
            id=memory_id,
            key=key,
            seq=seq,
            command_id=command.command_id,
            content=command.content,
            confidence=command.confidence,
            tags=command.tags,
            metadata=command.metadata,
            occurred_at=command.occurred_at or created,
            created_at=created,
        )
        self._by_id[memory_id] = rec
        self._by_key[key] = rec
        self._seqs.append(seq)  # seqs only grow, so the list stays sorted
        self._by_seq[seq] = memory_id
        self._pending[key] = vector
        return Stored(
            seq=seq,
            memory_id=memory_id,
            command_id=command.command_id,
            replaced_seq=None if replaced is None else replaced.seq,
        )

    def _link(self, command: Link, seq: int) -> Linked:
        source, target = self._by_id.get(command.source), self._by_id.get(command.target)
        for name, rec, mid in (
            ("source", source, command.source),
            ("target", target, command.target),
        ):
            if rec is None:
                raise CommandRejected(
                    f"{name}: memory {mid!r} does not exist in space {self.space!r}",
                    command.command_id,
                )
        assert source is not None and target is not None
        if command.weight > 0.0:
            self._graph.link(source.key, target.key, command.weight, command.kind, explicit=True)
        else:
            self._graph.unlink(source.key, target.key, explicit_only=True)
        return Linked(
            seq=seq,
            command_id=command.command_id,
            source=command.source,
            target=command.target,
            weight=command.weight,
            kind=command.kind,
        )

    def _drop(self, memory_id: str) -> StoredMemory | None:
        old = self._by_id.pop(memory_id, None)
        if old is None:
            return None
        self._graph.remove_node(old.key)
        del self._by_key[old.key]
        del self._by_seq[old.seq]
        i = bisect.bisect_left(self._seqs, old.seq)
        del self._seqs[i]
        if self._pending.pop(old.key, None) is None:
            self._stale.append(old.key)
        return old

    # -- index batching ----------------------------------------------------

    def take_flush(self, limit: int | None = None) -> FlushBatch | None:
        """Detach up to ``limit`` buffered vectors (and the stale keys) for
        :meth:`run_flush`; ``None`` when there is nothing to do."""
        if not self._pending and not self._stale:
            return None
        if limit is None or len(self._pending) <= limit:
            taken, self._pending = self._pending, {}
        else:
            keys = list(itertools.islice(self._pending, limit))
            taken = {k: self._pending.pop(k) for k in keys}
        batch = FlushBatch(
            links=self._temporal_links(taken),
            keys=np.fromiter(taken.keys(), dtype=np.uint64, count=len(taken)),
            vectors=(
                np.stack(list(taken.values()))
                if taken
                else np.empty((0, self.dim), dtype=np.float32)
            ),
            stale=self._stale,
        )
        self._inflight = taken
        self._stale = []
        return batch

    def _temporal_links(self, taken: dict[int, np.ndarray]) -> list[tuple[int, int, float, str]]:
        """Link each memory to up to ``temporal_max`` memories stored before it
        within ``temporal_window_s``, weight halving every ``temporal_half_life_s``.
        Runs as memories are taken for indexing, in stream order."""
        ls = self.links
        links: list[tuple[int, int, float, str]] = []
        if not taken or ls.temporal_max == 0 or ls.temporal_window_s <= 0:
            return links
        for key in taken:
            at = self._by_key[key].created_at.timestamp()
            for n, (prev, prev_at) in enumerate(reversed(self._recent)):
                gap = max(at - prev_at, 0.0)
                weight = math.exp2(-gap / ls.temporal_half_life_s)
                if n >= ls.temporal_max or gap > ls.temporal_window_s or weight < _MIN_WEIGHT:
                    break
                links.append((key, prev, weight, TEMPORAL))
            self._recent.append((key, at))
        return links

    def _semantic_links(self, batch: FlushBatch) -> list[tuple[int, int, float, str]]:
        """Link each memory of the batch to its ``semantic_k`` nearest among the
        memories indexed before it (the index, searched before the batch goes in,
        and the batch's earlier members) with similarity ≥ ``semantic_threshold``.
        Vectorised: per row, the k best of the index's and of the batch's."""
        k, floor = self.links.semantic_k, self.links.semantic_threshold
        rows = len(batch.keys)
        if k == 0 or rows == 0:
            return []
        exact = len(self.index) <= EXACT_SEARCH_BELOW
        # a narrow search: at the default width it cost half an insert (measured)
        # a few more candidates than k, so that ties at the k-th place are settled
        # by key below rather than by whichever the search returned first
        wanted = k + _TIE_SLACK
        old_keys, old_sims = self.index.search_many(
            batch.vectors, wanted, exact=exact, expansion=max(wanted, _LINK_EXPANSION)
        )
        within = self.index.pairwise(batch.vectors)
        within[np.triu_indices(rows)] = -np.inf  # only earlier members of the batch
        take = min(wanted, rows)
        best = np.argpartition(-within, take - 1, axis=1)[:, :take]
        cand_sims = np.concatenate([old_sims, np.take_along_axis(within, best, axis=1)], axis=1)
        cand_keys = np.concatenate([old_keys, batch.keys[best]], axis=1)
        ok = (cand_sims >= floor) & (cand_sims > 0.0)
        keys = batch.keys.tolist()
        links: list[tuple[int, int, float, str]] = []
        for i, row_ok in enumerate(ok.tolist()):
            if not any(row_ok):
                continue
            found = sorted(
                (-sim, other)
                for sim, other, good in zip(
                    cand_sims[i].tolist(), cand_keys[i].tolist(), row_ok, strict=True
                )
                if good
            )
            links += [(keys[i], other, min(-neg, 1.0), SEMANTIC) for neg, other in found[:k]]
        return links

    def run_flush(self, batch: FlushBatch) -> None:
        """Insert a detached batch (safe to run in a thread; serialise with searches),
        finding its semantic links first."""
        self.index.remove(batch.stale)
        batch.links += self._semantic_links(batch)
        self.index.add(batch.keys, batch.vectors)
        self._derived.append(batch.links)
        self._inflight = {}

    def _absorb(self) -> None:
        """Add the links found while indexing to the graph (those whose memories
        are still there)."""
        while self._derived:
            for a, b, weight, kind in self._derived.pop(0):
                if a in self._by_key and b in self._by_key:
                    self._graph.link(a, b, weight, kind)

    @property
    def graph(self) -> AssociationGraph:
        """The association graph with every applied memory's links in it (indexes
        what is pending first, like a query: in a host, read it under the index lock)."""
        self.flush()
        self._absorb()
        return self._graph

    def flush(self) -> None:
        batch = self.take_flush()
        if batch is not None:
            self.run_flush(batch)

    # -- snapshots ---------------------------------------------------------

    _COLUMNS = (
        "id",
        "key",
        "seq",
        "command_id",
        "content",
        "confidence",
        "tags",
        "metadata",
        "occurred_at",
        "created_at",
        "kind",
        "recalls",
        "last_recall",
    )

    def capture(self) -> dict[str, list[Any]]:
        """The live records as columns, in stream order (call with nothing pending:
        the snapshot's index must hold exactly these keys)."""
        assert not self._pending and not self._inflight and not self._stale, "flush first"
        recs = [self._by_id[self._by_seq[s]] for s in self._seqs]
        cols: dict[str, list[Any]] = {
            "id": [r.id for r in recs],
            "key": [r.key for r in recs],
            "seq": [r.seq for r in recs],
            "command_id": [r.command_id for r in recs],
            "content": [r.content for r in recs],
            "confidence": [r.confidence for r in recs],
            "tags": [r.tags for r in recs],
            "metadata": [r.metadata for r in recs],
            "occurred_at": [r.occurred_at.isoformat() for r in recs],
            "created_at": [r.created_at.isoformat() for r in recs],
            "kind": [r.kind for r in recs],
            "recalls": [r.recalls for r in recs],
            "last_recall": [
                None if r.last_recall is None else r.last_recall.isoformat() for r in recs
            ],
        }
        for name, col in self.graph.to_columns().items():
            cols[f"edge.{name}"] = col
        # the last memories stored (forgotten ones too): the next ones link to them
        cols["recent.key"] = [k for k, _ in self._recent]
        cols["recent.at"] = [at for _, at in self._recent]
        return cols

    def restore(
        self,
        records: dict[str, list[Any]],
        index: VectorIndex,
        *,
        applied_seq: int,
        next_key: int,
        rejected: int,
    ) -> None:
        """Take over a snapshot's records and index (the state must be empty)."""
        assert self.applied_seq == 0 and not self._by_id, "restore into a fresh state"
        cols = columns(records, self._COLUMNS)
        by_id: dict[str, StoredMemory] = {}
        try:
            for (
                mid,
                key,
                seq,
                cid,
                content,
                conf,
                tags,
                meta,
                occ,
                created,
                kind,
                recalls,
                last,
            ) in zip(*cols, strict=True):
                if kind not in _KINDS:
                    raise ValueError(f"memory kind {kind!r}")
                rec = StoredMemory(
                    id=str(mid),
                    key=int(key),
                    seq=int(seq),
                    command_id=str(cid),
                    content=str(content),
                    confidence=float(conf),
                    tags=list(tags),
                    metadata=dict(meta),
                    occurred_at=datetime.fromisoformat(str(occ)),
                    created_at=datetime.fromisoformat(str(created)),
                    kind=str(kind),
                    recalls=int(recalls),
                    last_recall=None if last is None else datetime.fromisoformat(str(last)),
                )
                by_id[rec.id] = rec
        except (TypeError, ValueError) as exc:
            raise SnapshotInvalid(f"unreadable record: {exc}") from None
        if len(by_id) != len(cols[0]) or len(index) != len(by_id):
            raise SnapshotInvalid(
                f"{len(cols[0])} records ({len(by_id)} distinct) but {len(index)} vectors"
            )
        seqs = [r.seq for r in by_id.values()]
        if any(a >= b for a, b in itertools.pairwise(seqs)) or (
            seqs and (seqs[-1] > applied_seq or max_key(by_id) >= next_key)
        ):
            raise SnapshotInvalid("records are out of order or beyond the snapshot's position")
        by_key = {r.key: r for r in by_id.values()}
        if len(by_key) != len(by_id):
            raise SnapshotInvalid("two records share an index key")
        if not index.contains_all(list(by_key)):
            raise SnapshotInvalid("a record's vector is missing from the index")
        edge_cols = {name[5:]: col for name, col in records.items() if name.startswith("edge.")}
        try:
            graph = AssociationGraph.from_columns(edge_cols, set(by_key))
        except GraphInvalid as exc:
            raise SnapshotInvalid(f"association graph: {exc}") from None
        try:
            recent = [
                (int(k), float(at))
                for k, at in zip(records["recent.key"], records["recent.at"], strict=True)
            ]
        except (KeyError, TypeError, ValueError):
            raise SnapshotInvalid("unreadable recent memories") from None
        if len(recent) > _RECENT or any(k >= next_key for k, _ in recent):
            raise SnapshotInvalid("recent memories beyond the snapshot's position")
        self._graph = graph
        self._recent.extend(recent)
        self._by_id = by_id
        self._by_key = by_key
        self._by_seq = {r.seq: r.id for r in by_id.values()}
        self._seqs = seqs
        self.index = index
        self.applied_seq = applied_seq
        self._next_key = next_key
        self.rejected = rejected

    @property
    def next_key(self) -> int:
        return self._next_key

    # -- queries -----------------------------------------------------------

    def embed_query(self, text: str) -> np.ndarray:
        vec: np.ndarray = self.embedder.embed([text])[0]
        return vec

    def recall(self, cue: np.ndarray, k: int) -> list[RecallResult]:
        """Similarity recall: seeds from the index, scored by similarity × confidence."""
        if cue.shape != (self.dim,):
            raise ValueError(f"embedding has {cue.shape[0]} values; space has dim {self.dim}")
        self.flush()
        self._absorb()
        keys, sims = self.index.search(cue.astype(np.float32), max(4 * k, 32))
        scored = []
        for key, sim in zip(keys.tolist(), sims.tolist(), strict=True):
            rec = self._by_key.get(key)
            if rec is None:  # replaced while its vector was still being inserted
                continue
            activation = min(max(sim, 0.0), 1.0)
            scored.append((activation * rec.confidence, sim, activation, rec))
        # ties broken by stream order, so replicas and replays answer identically
        scored.sort(key=lambda t: (-t[0], -t[1], t[3].seq))
        return [
            RecallResult(
                memory=self.to_memory(rec),
                score=score,
                similarity=sim,
                activation=activation,
                confidence=rec.confidence,
                hops=0,
            )
            for score, sim, activation, rec in scored[:k]
        ]

    def get(self, memory_id: str) -> StoredMemory | None:
        return self._by_id.get(memory_id)

    def page(self, after_seq: int, limit: int) -> tuple[list[StoredMemory], int | None]:
        """Live memories in stream order after ``after_seq``; returns the next cursor."""
        i = bisect.bisect_right(self._seqs, after_seq)
        seqs = self._seqs[i : i + limit]
        recs = [self._by_id[self._by_seq[s]] for s in seqs]
        more = i + limit < len(self._seqs)
        return recs, (seqs[-1] if more and seqs else None)

    def vector_of(self, rec: StoredMemory) -> np.ndarray | None:
        vec = self._pending.get(rec.key)
        if vec is None:
            vec = self._inflight.get(rec.key)
        if vec is None:
            vec = self.index.get(rec.key)
        return vec

    def to_memory(self, rec: StoredMemory, include_embedding: bool = False) -> Memory:
        embedding = None
        if include_embedding:
            vec = self.vector_of(rec)
            embedding = None if vec is None else [float(x) for x in vec]
        return Memory(
            id=rec.id,
            content=rec.content,
            confidence=rec.confidence,
            tags=rec.tags,
            metadata=rec.metadata,
            occurred_at=rec.occurred_at,
            created_at=rec.created_at,
            seq=rec.seq,
            embedding=embedding,
        )
