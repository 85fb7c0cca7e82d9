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
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
import numpy as np

from engram_contract.embedders import Embedder
from engram_contract.ids import derived_id
from engram_contract.messages import (
    MAX_CONSOLIDATE_MEMBERS,
    ConsolidationSettings,
    MemoriesActivated,
    MemoriesConsolidated,
    MemoriesLinked,
    Memory,
    MemoryForgotten,
    MemoryHistory,
    MemoryStored,
    MessageRejected,
    RecallMode,
    RecallRequest,
    RecallResult,
    SpaceRecord,
    TraceStep,
    as_utc,
    vector_problem,
)
from engram_worker.core.activation import (
    DecayParams,
    Reached,
    SpreadParams,
    path,
    retention,
    spread,
)
from engram_worker.core.graph import (
    CONSOLIDATED,
    SEMANTIC,
    TEMPORAL,
    AssociationGraph,
    GraphInvalid,
)
from engram_worker.core.index import EXACT_SEARCH_BELOW, VectorIndex
from engram_worker.core.snapshot import SnapshotInvalid, columns
from engram_worker.core.wal import (
    CommandRejected,
    Consolidate,
    Decoded,
    Forget,
    Link,
    Reinforce,
    Remember,
    decode,
)

_RECENT = 16  # memories remembered for temporal links (temporal_max ≤ 16)
_MIN_WEIGHT = 0.01  # weaker derived links are not made
_LINK_EXPANSION = 16  # HNSW search width when finding semantic links
_TIE_SLACK = 8  # extra candidates when finding semantic links
_KINDS = frozenset({"episodic", "semantic"})
_NO_TAGS: list[str] = []
_NO_METADATA: dict[str, str] = {}

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


class Activated(msgspec.Struct, gc=False):
    seq: int
    command_id: str
    memory_ids: list[str]

    def message(self, space: str) -> MemoriesActivated:
        return MemoriesActivated(
            space=space, seq=self.seq, command_id=self.command_id, memory_ids=self.memory_ids
        )


class Consolidated(msgspec.Struct, gc=False):
    seq: int
    command_id: str
    memory_id: str
    members: list[str]
    replaced_seq: int | None = None  # an earlier version of the semantic memory, to erase

    def message(self, space: str) -> MemoriesConsolidated:
        return MemoriesConsolidated(
            space=space,
            seq=self.seq,
            command_id=self.command_id,
            memory_id=self.memory_id,
            members=self.members,
        )


Event = Stored | Forgotten | Linked | Activated | Consolidated | Rejected


@dataclass(frozen=True, slots=True)
class RecallQuery:
    """What to recall, besides the cue (see :class:`RecallRequest`)."""

    k: int = 10
    mode: RecallMode = "similarity"
    seed_k: int = 10
    spread: SpreadParams = field(default_factory=SpreadParams)
    hybrid_weight: float = 0.5
    tags: tuple[str, ...] = ()
    since: float | None = None  # occurred_at bounds, seconds since the epoch
    until: float | None = None
    trace: bool = False

    @classmethod
    def of(cls, req: RecallRequest) -> RecallQuery:
        return cls(
            k=req.k,
            mode=req.mode,
            seed_k=req.seed_k,
            spread=SpreadParams(
                max_hops=req.max_hops,
                hop_decay=req.hop_decay,
                threshold=req.threshold,
                max_fanout=req.max_fanout,
            ),
            hybrid_weight=req.hybrid_weight,
            tags=tuple(req.tags),
            since=None if req.since is None else as_utc(req.since).timestamp(),
            until=None if req.until is None else as_utc(req.until).timestamp(),
            trace=req.trace,
        )

    @property
    def filtered(self) -> bool:
        return bool(self.tags) or self.since is not None or self.until is not None


def _carried(history: MemoryHistory, stored: datetime) -> tuple[datetime, int, datetime | None]:
    """An import's (created_at, recalls, last_recall), never ahead of the message
    time ``stored``: a replay folds them the same way whatever the clock says."""
    created = min(as_utc(history.created_at), stored)
    last = history.last_recall
    if last is not None:
        last = min(max(as_utc(last), created), stored)
    return created, history.recalls, last


def _epoch(when: datetime) -> float:
    return as_utc(when).timestamp()


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


@dataclass(frozen=True, slots=True)
class ExportItem:
    """A memory as an export carries it: the record, its explicit links to memories
    exported before it ``(other id, weight, kind)`` and, semantic, its members."""

    record: StoredMemory
    links: list[tuple[str, float, str]]
    members: list[str]


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
        # recall filters: tag → keys, and (occurred_at, key) in order
        self._tagged: dict[str, set[int]] = {}
        # built by the first time-filtered recall, kept up to date after it (the
        # fold saves half a microsecond a memory while nobody filters by time)
        self._when: list[tuple[float, int]] | None = None
        self.decay = DecayParams(
            fast_half_life_s=record.decay.fast_half_life_s,
            slow_half_life_s=record.decay.slow_half_life_s,
            settle_after=record.decay.settle_after,
        )

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
            command = decode(verb, data, self.space)
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
        if isinstance(command, Reinforce):
            return self._reinforce(command, seq, timestamp)
        if isinstance(command, Consolidate):
            return self._consolidate(command, seq, timestamp)
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
        recalls, last_recall = 0, None
        if command.history is not None:
            created, recalls, last_recall = _carried(command.history, created)
        replaced = self._drop(memory_id) if memory_id in self._by_id else None
        key = self._next_key
        self._next_key += 1
        rec = StoredMemory(
            id=memory_id,
            key=key,
            seq=seq,
            command_id=command.command_id,
            content=command.content,
            confidence=command.confidence,
            # most memories have neither: one shared empty list and dict instead of
            # 200 000 containers the cyclic GC would walk in a 100k space (10 % of
            # the fold, measured). Never mutated: records are replaced, not edited.
            tags=command.tags or _NO_TAGS,
            metadata=command.metadata or _NO_METADATA,
            occurred_at=command.occurred_at or created,
            created_at=created,
            recalls=recalls,
            last_recall=last_recall,
        )
        # what _add does, inline: this is the fold's hot path
        self._by_id[memory_id] = rec
        self._by_key[key] = rec
        self._seqs.append(seq)  # seqs only grow, so the list stays sorted
        self._by_seq[seq] = memory_id
        self._pending[key] = vector
        if rec.tags or self._when is not None:
            self._index_filters(rec)
        return Stored(
            seq=seq,
            memory_id=memory_id,
            command_id=command.command_id,
            replaced_seq=None if replaced is None else replaced.seq,
        )

    def _add(self, rec: StoredMemory, vector: np.ndarray) -> None:
        self._by_id[rec.id] = rec
        self._by_key[rec.key] = rec
        self._seqs.append(rec.seq)  # seqs only grow, so the list stays sorted
        self._by_seq[rec.seq] = rec.id
        self._pending[rec.key] = vector
        self._index_filters(rec)

    def _index_filters(self, rec: StoredMemory) -> None:
        for tag in rec.tags:
            self._tagged.setdefault(tag, set()).add(rec.key)
        when = self._when
        if when is not None:
            at = _epoch(rec.occurred_at)
            # keys only grow: (at, key) sorts last when ``at`` does, the usual case
            if not when or when[-1][0] <= at:
                when.append((at, rec.key))
            else:
                bisect.insort(when, (at, rec.key))

    def _reinforce(self, command: Reinforce, seq: int, timestamp: datetime) -> Activated:
        """Recall returned these memories: one more recall each, at the message's time."""
        at = timestamp if timestamp.tzinfo else timestamp.replace(tzinfo=UTC)
        found = []
        for memory_id in command.memory_ids:
            rec = self._by_id.get(memory_id)
            if rec is not None:  # forgotten since: nothing to reinforce
                rec.recalls += 1
                # a broker clock stepping back never makes a memory older
                rec.last_recall = max(at, rec.last_recall or rec.created_at)
                found.append(memory_id)
        return Activated(seq=seq, command_id=command.command_id, memory_ids=found)

    def _consolidate(self, command: Consolidate, seq: int, timestamp: datetime) -> Consolidated:
        """Make the semantic memory of the members that still exist: centroid vector,
        content from theirs, a ``consolidated`` link to each. Reads the members'
        vectors: in a host, fold it under the index lock."""
        members = [r for r in map(self._by_id.get, command.members) if r is not None]
        if len(members) < 2:
            raise CommandRejected(
                f"members: {len(members)} of the {len(command.members)} members exist in "
                f"space {self.space!r}; consolidation needs at least 2",
                command.command_id,
            )
        vectors = []
        for rec in members:
            vec = self.vector_of(rec)
            assert vec is not None, "a live memory has a vector"
            vectors.append(vec.astype(np.float64))
        stacked = np.stack(vectors)
        if self.metric == "cos":
            norms = np.linalg.norm(stacked, axis=1, keepdims=True)
            stacked = stacked / np.where(norms == 0, 1.0, norms)
        centroid = stacked.mean(axis=0).astype(np.float32)
        problem = vector_problem(centroid, self.dim, self.metric)
        if problem is not None or not np.isfinite(centroid).all():
            raise CommandRejected(
                f"members: their centroid cannot be stored ({problem or 'not finite'})",
                command.command_id,
            )
        created = timestamp if timestamp.tzinfo else timestamp.replace(tzinfo=UTC)
        recalls, last_recall = 0, None
        if command.history is not None:
            created, recalls, last_recall = _carried(command.history, created)
        replaced = self._drop(command.memory_id)
        key = self._next_key
        self._next_key += 1
        counts: dict[str, int] = {}
        for rec in members:
            for tag in rec.tags:
                counts[tag] = counts.get(tag, 0) + 1
        shared = sorted(t for t, n in counts.items() if 2 * n >= len(members))
        rec = StoredMemory(
            id=command.memory_id,
            key=key,
            seq=seq,
            command_id=command.command_id,
            content=consolidated_content(m.content for m in members),
            confidence=math.fsum(m.confidence for m in members) / len(members),
            tags=shared[:64],
            metadata={"consolidated_from": str(len(members))},
            occurred_at=max(members, key=lambda m: (_epoch(m.occurred_at), m.seq)).occurred_at,
            created_at=created,
            kind="semantic",
            recalls=recalls,
            last_recall=last_recall,
        )
        self._add(rec, centroid)
        for member in members:
            self._graph.link(key, member.key, 1.0, CONSOLIDATED)
        return Consolidated(
            seq=seq,
            command_id=command.command_id,
            memory_id=command.memory_id,
            members=[m.id for m in members],
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
        for tag in old.tags:  # (a tag may be given twice)
            keys = self._tagged.get(tag)
            if keys is not None:
                keys.discard(old.key)
                if not keys:
                    del self._tagged[tag]
        if self._when is not None:
            j = bisect.bisect_left(self._when, (_epoch(old.occurred_at), old.key))
            del self._when[j]
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
            rec = self._by_key[key]
            if rec.kind != "episodic":
                continue  # a consolidated memory is linked to its members instead
            at = rec.created_at.timestamp()
            for n, (prev, prev_at) in enumerate(reversed(self._recent)):
                # abs: an imported memory keeps its original time, older than
                # the memories stored before it in this space
                gap = abs(at - prev_at)
                weight = ls.temporal_weight * math.exp2(-gap / ls.temporal_half_life_s)
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
            links += [(keys[i], other, -neg, SEMANTIC) for neg, other in found[:k]]
        return self._exact_weights(batch, links, floor)

    def _exact_weights(
        self, batch: FlushBatch, links: list[tuple[int, int, float, str]], floor: float
    ) -> list[tuple[int, int, float, str]]:
        """The chosen links' weights computed again from the two vectors, the same
        way whichever way they were found: HNSW distances (float32) and the batch's
        pairwise matrix differ in the last digits, and a weight that differs between
        replicas or replays can reorder a memory's strongest links (which spreading
        activation follows). Links under the floor after all are dropped."""
        if not links:
            return links
        rows = {key: row for row, key in enumerate(batch.keys.tolist())}
        old = sorted({b for _, b, _, _ in links if b not in rows})
        stored: dict[int, np.ndarray] = {}
        for key, vec in zip(old, self.index.get_many(old), strict=True):
            assert vec is not None, "a search result has a vector"
            stored[key] = vec
        a = batch.vectors[[rows[x] for x, _, _, _ in links]]
        b = np.stack([batch.vectors[rows[y]] if y in rows else stored[y] for _, y, _, _ in links])
        weights = self.index.row_similarities(a, b).tolist()
        return [
            (x, y, min(w, 1.0), kind)
            for (x, y, _, kind), w in zip(links, weights, strict=True)
            if w >= floor and w > 0.0
        ]

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
                    tags=list(tags) if tags else _NO_TAGS,
                    metadata=dict(meta) if meta else _NO_METADATA,
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
        for rec in by_id.values():
            for tag in rec.tags:
                self._tagged.setdefault(tag, set()).add(rec.key)
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

    def recall(
        self, cue: np.ndarray, k: int, query: RecallQuery | None = None, now: float | None = None
    ) -> list[RecallResult]:
        """The ``k`` best memories for ``cue`` (see docs/recall.md).

        ``query`` defaults to plain similarity; ``now`` (seconds since the epoch) is
        the time the forgetting curve is measured to (``None``: no decay). Ties are
        broken by stream order, so replicas and replays answer identically."""
        q = query or RecallQuery(k=k)
        if cue.shape != (self.dim,):
            raise ValueError(f"embedding has {cue.shape[0]} values; space has dim {self.dim}")
        cue = cue.astype(np.float32)
        graph = self.graph  # flushes, so every applied memory is searchable
        allowed = self._matching(q)
        if allowed is not None and not allowed:
            return []
        if q.mode == "similarity":
            reached: dict[int, Reached] = {}
            pool = self._nearest(cue, k, allowed)
            act = {key: _clip(sim) for key, sim in pool.items()}
        else:
            seeds = max(q.seed_k, k)
            if q.mode == "hybrid":  # one search for the seeds and the candidates
                wide = self._nearest(cue, max(seeds, 4 * k, 32), None)
                pool = dict(itertools.islice(wide.items(), seeds))
            else:
                pool = self._nearest(cue, seeds, None)
            if allowed is not None:
                # the best matching memories are seeds too, so that k results exist
                # whenever k memories match
                pool.update(self._nearest(cue, k, allowed))
            reached = spread(
                {key: _clip(sim) for key, sim in pool.items()}, graph.neighbours, q.spread
            )
            if q.mode == "spreading":
                act = {key: r.activation for key, r in reached.items()}
            else:
                act = self._hybrid(cue, k, q, pool, wide, reached, allowed)
        top = self._best(act, k, allowed, now)
        sims = self._similarities(cue, [t[2].key for t in top], pool)
        return [
            RecallResult(
                memory=self.to_memory(rec),
                score=min(max(score, 0.0), 1.0),
                similarity=sim,
                activation=a,
                confidence=rec.confidence * kept,
                retention=kept,
                hops=reached[rec.key].hops if rec.key in reached else 0,
                trace=self._trace(reached, rec.key, sim) if q.trace else None,
            )
            for (score, a, rec, kept), sim in zip(top, sims, strict=True)
        ]

    def _best(
        self, act: dict[int, float], k: int, allowed: set[int] | None, now: float | None
    ) -> list[tuple[float, float, StoredMemory, float]]:
        """The ``k`` best ``(score, activation, record, retention)`` by score, then
        activation, then stream order. Retention (≤ 1) is only computed while a
        candidate's activation × confidence could still beat the k-th score."""
        bounded = []
        for key, a in act.items():
            if allowed is not None and key not in allowed:
                continue
            rec = self._by_key.get(key)
            if rec is not None:
                bounded.append((a * rec.confidence, a, rec))
        bounded.sort(key=lambda t: (-t[0], -t[1], t[2].seq))
        if now is None:
            return [(bound, a, rec, 1.0) for bound, a, rec in bounded[:k]]
        scored: list[tuple[float, float, StoredMemory, float]] = []
        kth = -1.0
        for bound, a, rec in bounded:
            if len(scored) >= k and bound < kth:
                break  # neither this nor any later one can make the k best
            kept = self.retention(rec, now)
            scored.append((bound * kept, a, rec, kept))
            if len(scored) >= k:
                scored.sort(key=lambda t: (-t[0], -t[1], t[2].seq))
                del scored[k:]
                kth = scored[-1][0]
        scored.sort(key=lambda t: (-t[0], -t[1], t[2].seq))
        return scored[:k]

    def retention(self, rec: StoredMemory, now: float) -> float:
        """How much of ``rec``'s confidence is left at ``now`` (the forgetting curve,
        from its last recall or, never recalled, from when it was stored)."""
        since = rec.last_recall or rec.created_at
        return retention(now - since.timestamp(), rec.recalls, self.decay)

    def _matching(self, q: RecallQuery) -> set[int] | None:
        """Keys of the memories that pass the filters (``None``: no filter)."""
        if not q.filtered:
            return None
        keys: set[int] | None = None
        for tag in sorted(set(q.tags), key=lambda t: len(self._tagged.get(t, ()))):
            tagged = self._tagged.get(tag)
            if not tagged:
                return set()
            keys = set(tagged) if keys is None else keys & tagged
        lo, hi = q.since, q.until
        if lo is None and hi is None:
            return keys
        if keys is None:
            if self._when is None:
                self._when = sorted((_epoch(r.occurred_at), r.key) for r in self._by_key.values())
            when = self._when
            i = 0 if lo is None else bisect.bisect_left(when, (lo, -1))
            j = len(when) if hi is None else bisect.bisect_left(when, (hi, -1))
            return {key for _, key in when[i:j]}
        out = set()
        for key in keys:
            at = _epoch(self._by_key[key].occurred_at)
            if (lo is None or at >= lo) and (hi is None or at < hi):
                out.add(key)
        return out

    def _nearest(self, cue: np.ndarray, count: int, allowed: set[int] | None) -> dict[int, float]:
        """The ``count`` most similar live memories (among ``allowed``), key → similarity.
        With a filter the search widens until ``count`` pass (or all were seen), so
        a filter never hides a match."""
        size = len(self.index)
        if allowed is not None and len(allowed) <= EXACT_SEARCH_BELOW:
            keys = sorted(allowed)
            exact = self._vector_sims(cue, keys)
            order = sorted(range(len(keys)), key=lambda i: (-exact[i], self._by_key[keys[i]].seq))
            return {keys[i]: exact[i] for i in order[:count]}
        # a few more than asked: near-ties at the cut are settled by stream order
        # below, not by the order the search found them in (replicas and replays
        # must answer alike). Up to ~60 a search costs what one for 10 does; 160
        # (4 × hybrid's 40) cost twice as much (measured), so a fixed slack
        want = max(count + 16, 32) if allowed is None else max(4 * count, 64)
        while True:
            found, sims = self.index.search(cue, want)
            hits = [
                (sim, key)
                for key, sim in zip(found.tolist(), sims.tolist(), strict=True)
                if key in self._by_key and (allowed is None or key in allowed)
            ]
            if len(hits) >= count or want >= size:
                hits.sort(key=lambda t: (-t[0], self._by_key[t[1]].seq))
                return {key: sim for sim, key in hits[:count]}
            want = min(4 * want, size)

    def _vector_sims(self, cue: np.ndarray, keys: list[int]) -> list[float]:
        if not keys:
            return []
        indexed = self.index.get_many(keys)
        vectors = np.stack(
            [
                self._vector(key) if vec is None else vec
                for key, vec in zip(keys, indexed, strict=True)
            ]
        )
        sims: list[float] = self.index.similarities(cue, vectors).tolist()
        return sims

    def _vector(self, key: int) -> np.ndarray:
        vec = self.vector_of(self._by_key[key])
        assert vec is not None, "a live memory has a vector"
        return vec

    def _similarities(
        self, cue: np.ndarray, keys: list[int], known: dict[int, float]
    ) -> list[float]:
        missing = [key for key in keys if key not in known]
        found = dict(zip(missing, self._vector_sims(cue, missing), strict=True))
        return [known[key] if key in known else found[key] for key in keys]

    def _hybrid(
        self,
        cue: np.ndarray,
        k: int,
        q: RecallQuery,
        pool: dict[int, float],
        wide: dict[int, float],
        reached: dict[int, Reached],
        allowed: set[int] | None,
    ) -> dict[int, float]:
        """Hybrid activation: ``(1 − w) × similarity + w × spreading activation``,
        over the similarity candidates (the ``max(4k, 32)`` nearest) and what the
        spreading reached. A memory reached only through links has its own
        similarity computed when it could rank among the best."""
        w = q.hybrid_weight
        if allowed is None:
            pool = {**wide, **pool}
        else:
            matching = {key: sim for key, sim in wide.items() if key in allowed}
            if len(matching) < max(4 * k, 32):
                matching = self._nearest(cue, max(4 * k, 32), allowed)
            pool = {**matching, **pool}
        floor = min(pool.values(), default=0.0)  # what the rest are at most similar
        act = {
            key: (1.0 - w) * _clip(sim) + w * (reached[key].activation if key in reached else 0.0)
            for key, sim in pool.items()
        }
        others = sorted(
            (key for key in reached if key not in pool and (allowed is None or key in allowed)),
            key=lambda key: (-reached[key].activation, key),
        )[: 2 * k]
        for key, sim in zip(others, self._vector_sims(cue, others), strict=True):
            act[key] = (1.0 - w) * _clip(min(sim, floor)) + w * reached[key].activation
        return act

    def _trace(self, reached: dict[int, Reached], key: int, sim: float) -> list[TraceStep]:
        if key not in reached:  # ranked by similarity alone
            return [
                TraceStep(
                    memory_id=self._by_key[key].id,
                    activation=_clip(sim),
                    hops=0,
                    weight=None,
                    kind=None,
                )
            ]
        steps = []
        for node in path(reached, key):
            r = reached[node]
            steps.append(
                TraceStep(
                    memory_id=self._by_key[node].id,
                    activation=r.activation,
                    hops=r.hops,
                    weight=None if r.parent is None else r.weight,
                    kind=None if r.parent is None else r.kind,
                )
            )
        return steps

    # -- consolidation -----------------------------------------------------

    def consolidation_groups(self, cs: ConsolidationSettings) -> list[tuple[str, list[str]]]:
        """Groups of densely linked episodic memories not yet consolidated, as
        ``(semantic memory id, member ids)``, seeded in key order. Deterministic:
        key order throughout. Read the graph under the index lock."""
        graph = self.graph
        taken: set[int] = set()

        def eligible(key: int) -> bool:
            rec = self._by_key.get(key)
            return (
                rec is not None
                and rec.kind == "episodic"
                and key not in taken
                and all(kind != CONSOLIDATED for _, _, kind in graph.neighbours(key))
            )

        def strong(key: int, among: set[int]) -> int:
            n = 0
            for other, weight, _ in graph.neighbours(key):
                if weight < cs.min_weight:
                    break
                n += other in among
            return n

        limit = min(cs.max_size, MAX_CONSOLIDATE_MEMBERS)
        groups: list[tuple[str, list[str]]] = []
        for key in list(self._by_key):
            if not eligible(key):
                continue
            members = [key]
            for other, weight, _ in graph.neighbours(key):
                if weight < cs.min_weight or len(members) >= limit:
                    break
                if eligible(other):
                    members.append(other)
            while len(members) >= cs.min_size:
                group = set(members)
                degree = {m: strong(m, group) for m in members}
                pairs = len(members) * (len(members) - 1) / 2
                if sum(degree.values()) / 2 >= cs.min_density * pairs:
                    break
                # drop the member (never the seed) with the fewest strong links inside
                weakest = min(members[1:], key=lambda m: (degree[m], -m))
                members.remove(weakest)
            if len(members) < cs.min_size:
                continue
            taken.update(members)
            ids = sorted(self._by_key[m].id for m in members)
            groups.append((consolidated_id(self.space, ids), ids))
        return groups

    def get(self, memory_id: str) -> StoredMemory | None:
        return self._by_id.get(memory_id)

    def page(self, after_seq: int, limit: int) -> tuple[list[StoredMemory], int | None]:
        """Live memories in stream order after ``after_seq``; returns the next cursor."""
        i = bisect.bisect_right(self._seqs, after_seq)
        seqs = self._seqs[i : i + limit]
        recs = [self._by_id[self._by_seq[s]] for s in seqs]
        more = i + limit < len(self._seqs)
        return recs, (seqs[-1] if more and seqs else None)

    def export_page(
        self, after_seq: int, limit: int, tags: Iterable[str] = ()
    ) -> tuple[list[ExportItem], int | None]:
        """Live memories after ``after_seq`` in stream order (only those carrying
        every tag in ``tags``), each with what an import needs to rebuild it: its
        explicit links to memories exported before it (each link once, on the later
        memory of the pair) and, for a semantic memory, its exported members. A
        semantic memory with fewer than two members in the export is left out (it
        could not be consolidated again). Returns the page and the next cursor
        (``None``: no more). Reads the graph: in a host, call it under the index lock."""
        wanted = set(tags)
        graph = self.graph

        def exported(rec: StoredMemory) -> bool:
            return not wanted or wanted.issubset(rec.tags)

        items: list[ExportItem] = []
        i = bisect.bisect_right(self._seqs, after_seq)
        seqs = self._seqs
        while i < len(seqs) and len(items) < limit:
            rec = self._by_id[self._by_seq[seqs[i]]]
            i += 1
            if not exported(rec):
                continue
            links: list[tuple[str, float, str]] = []
            members: list[str] = []
            for other_key, weight, kind in graph.neighbours(rec.key):
                other = self._by_key.get(other_key)
                if other is None or other.seq >= rec.seq or not exported(other):
                    continue
                edge = graph.edge(rec.key, other_key)
                if edge is not None and edge[2]:
                    links.append((other.id, weight, kind))
                elif kind == CONSOLIDATED and rec.kind == "semantic":
                    members.append(other.id)
            if rec.kind == "semantic" and len(members) < 2:
                continue
            links.sort(key=lambda t: self._by_id[t[0]].seq)
            items.append(ExportItem(rec, links, sorted(members)))
        return items, (items[-1].record.seq if items and i < len(seqs) else None)

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
            kind=rec.kind,
            recalls=rec.recalls,
            last_recall=rec.last_recall,
            embedding=embedding,
        )


def _clip(x: float) -> float:
    return min(max(x, 0.0), 1.0)


_CONTENT_PER_MEMBER = 240


def consolidated_content(contents: Iterable[str]) -> str:
    """A consolidated memory's text: its members' texts (cut to a few hundred
    characters each), in stream order."""
    parts = []
    for text in contents:
        text = " ".join(text.split())
        if len(text) > _CONTENT_PER_MEMBER:
            text = text[: _CONTENT_PER_MEMBER - 1].rstrip() + "…"
        parts.append(text)
    return f"Consolidated from {len(parts)} memories: " + " | ".join(parts)


def consolidated_id(space: str, member_ids: list[str]) -> str:
    """The id of the semantic memory made of ``member_ids`` (the same members always
    give the same id, so that two workers deciding alike write one memory)."""
    return "sem-" + derived_id(space, "consolidate", *sorted(member_ids)).lower()
