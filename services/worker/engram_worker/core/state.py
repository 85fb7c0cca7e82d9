"""``SpaceState``: one memory space folded from its WAL.

``apply_message`` is the only way state changes, and the same function serves
live tailing and replay. The position (``applied_seq``) is part of the state, so
a message at or below it is skipped: redeliveries and replays are harmless.

The state is composed of the space's records (:mod:`.records`), the vectors on
their way into the index (:mod:`.indexing`, which also finds the derived links:
:mod:`.links`) and the association graph. Queries live beside it: recall
(:mod:`.recall`), paging and export (:mod:`.export`), consolidation planning
(:mod:`.consolidation`), snapshot columns (:mod:`.persistence`).

:data:`FOLD` is the one table from command verb to its fold handler; decoding
has its own table in :mod:`.wal`, keyed by the same verbs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np

from engram_contract.embedders import SIMILARITY_FLOORS, Embedder
from engram_contract.messages import (
    Memory,
    MemoryHistory,
    RecallResult,
    SpaceRecord,
    as_utc,
    vector_problem,
)
from engram_contract.subjects import CommandVerb
from engram_worker.core.activation import DecayParams
from engram_worker.core.consolidation import consolidated_content
from engram_worker.core.events import (
    Activated,
    Consolidated,
    Event,
    Forgotten,
    Linked,
    Rejected,
    Stored,
)
from engram_worker.core.export import to_memory
from engram_worker.core.graph import CONSOLIDATED, AssociationGraph
from engram_worker.core.index import VectorIndex
from engram_worker.core.indexing import Indexing
from engram_worker.core.links import LinkFinder
from engram_worker.core.recall import RecallQuery, recall
from engram_worker.core.records import (
    NO_METADATA,
    NO_TAGS,
    Indexes,
    Records,
    StoredMemory,
    epoch,
)
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

log = logging.getLogger(__name__)


class SpaceState:
    """Records, vector index, association graph and position of one space."""

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
        #: the similarity of unrelated texts under this embedder (0 for most)
        self.similarity_floor = SIMILARITY_FLOORS.get(record.embedder, 0.0)
        self.applied_seq = 0
        self.rejected = 0
        self.links = record.links
        self.max_memories = record.max_memories  # 0: no limit
        self.records = Records()
        self.indexing = Indexing(
            VectorIndex(record.dim, record.metric, index_dtype),
            LinkFinder(record.links),
            self.records,
        )
        # the association graph; links derived while indexing wait in the
        # indexing until a reader absorbs them (:attr:`graph`)
        self._graph = AssociationGraph()
        self.decay = DecayParams(
            fast_half_life_s=record.decay.fast_half_life_s,
            slow_half_life_s=record.decay.slow_half_life_s,
            settle_after=record.decay.settle_after,
        )

    def __len__(self) -> int:
        return len(self.records)

    @property
    def index(self) -> VectorIndex:
        return self.indexing.index

    @property
    def pending(self) -> int:
        """Vectors folded but not yet taken for indexing."""
        return len(self.indexing.pending)

    @property
    def next_key(self) -> int:
        return self.records.next_key

    # -- fold ---------------------------------------------------------------

    def apply_message(self, verb: str, data: bytes, seq: int, timestamp: datetime) -> Event | None:
        """Fold one WAL message. Returns the event to publish, or ``None`` when the
        message is at or below the position (already applied). A message that
        cannot be folded, for whatever reason, is a :class:`Rejected` event; the
        position moves past it either way, so one message never stalls the space."""
        if seq <= self.applied_seq:
            return None
        command: Decoded | None = None
        try:
            command = decode(verb, data, self.space)
            event: Event = FOLD[command.verb](self, command, seq, timestamp)
        except CommandRejected as exc:
            self.rejected += 1
            event = Rejected(seq=seq, reason=exc.reason, command_id=exc.command_id)
        except Exception as exc:  # a bug, not the message: rejected all the same
            log.exception("space %s: the fold failed on seq %d (%s)", self.space, seq, verb)
            self.rejected += 1
            event = Rejected(
                seq=seq,
                reason=f"internal error: {type(exc).__name__}: {str(exc)[:200]}",
                command_id=None if command is None else command.command_id,
            )
        self.applied_seq = seq
        return event

    def apply(self, command: Decoded, seq: int, timestamp: datetime) -> Event:
        """Fold a decoded command (does not move the position; see apply_message)."""
        return FOLD[command.verb](self, command, seq, timestamp)

    def drop(self, memory_id: str) -> StoredMemory | None:
        """Remove a memory from records, graph and index; the removed record."""
        old = self.records.drop(memory_id)
        if old is not None:
            self._graph.remove_node(old.key)
            self.indexing.discard(old.key)
        return old

    def add(self, rec: StoredMemory, vector: np.ndarray) -> None:
        self.records.add(rec)
        self.indexing.pending[rec.key] = vector

    # -- reading ------------------------------------------------------------

    @property
    def graph(self) -> AssociationGraph:
        """The association graph with every applied memory's links in it (indexes
        what is pending first, like a query: in a host, read it under the index lock)."""
        self.flush()
        self.indexing.absorb(self._graph)
        return self._graph

    def flush(self) -> None:
        """Index every pending vector now (inline)."""
        batch = self.indexing.take()
        if batch is not None:
            self.indexing.run(batch)

    def get(self, memory_id: str) -> StoredMemory | None:
        return self.records.by_id.get(memory_id)

    def page(self, after_seq: int, limit: int) -> tuple[list[StoredMemory], int | None]:
        """Live memories in stream order after ``after_seq``; returns the next cursor."""
        return self.records.page(after_seq, limit)

    def embed_query(self, text: str) -> np.ndarray:
        vec: np.ndarray = self.embedder.embed_queries([text])[0]
        return vec

    def relevance(self, similarity: float) -> float:
        """A cue's similarity as the activation recall starts from, in [0, 1]:
        the similarity above the embedder's floor (what unrelated texts reach),
        rescaled, so confidence and links weigh alike under every embedder."""
        floor = self.similarity_floor
        return min(max((similarity - floor) / (1.0 - floor), 0.0), 1.0)

    def recall(
        self, cue: np.ndarray, k: int, query: RecallQuery | None = None, now: float | None = None
    ) -> list[RecallResult]:
        """The ``k`` best memories for ``cue``: see :func:`engram_worker.core.recall.recall`."""
        return recall(self, cue, k, query, now)

    def to_memory(self, rec: StoredMemory, include_embedding: bool = False) -> Memory:
        """The stored memory as the API returns it (with its vector, if asked)."""
        return to_memory(self, rec, include_embedding)

    def load(
        self,
        *,
        graph: AssociationGraph,
        recent: list[tuple[int, float]],
        by_id: dict[str, StoredMemory],
        index: VectorIndex,
        applied_seq: int,
        next_key: int,
        rejected: int,
        indexes: Indexes | None = None,
    ) -> None:
        """Take over checked snapshot contents (see :func:`.persistence.restore`)."""
        self._graph = graph
        self.indexing.links.recent.extend(recent)
        self.records.load(by_id, next_key, indexes)
        self.indexing.index = index
        self.applied_seq = applied_seq
        self.rejected = rejected


# -- the fold handlers, one per verb ------------------------------------------------


def _carried(history: MemoryHistory, stored: datetime) -> tuple[datetime, int, datetime | None]:
    """An import's (created_at, recalls, last_recall), never ahead of the message
    time ``stored``: a replay folds them the same way whatever the clock says."""
    created = min(as_utc(history.created_at), stored)
    last = history.last_recall
    if last is not None:
        last = min(max(as_utc(last), created), stored)
    return created, history.recalls, last


def _remember(state: SpaceState, command: Remember, seq: int, timestamp: datetime) -> Stored:
    vector = command.vector
    if vector is None:
        vector = state.embedder.embed([command.content])[0]
    elif not command.nonzero or vector.shape != (state.dim,):
        problem = vector_problem(vector, state.dim, state.metric)
        if problem is not None:
            raise CommandRejected(f"memory.embedding: {problem}", command.command_id)
    memory_id = command.memory_id or command.command_id
    limit = state.max_memories
    if limit and len(state.records) >= limit and memory_id not in state.records.by_id:
        raise CommandRejected(
            f"space full: it holds {len(state.records)} memories, its max_memories is {limit}",
            command.command_id,
        )
    created = timestamp if timestamp.tzinfo else timestamp.replace(tzinfo=UTC)
    recalls, last_recall = 0, None
    if command.history is not None:
        created, recalls, last_recall = _carried(command.history, created)
    records = state.records
    replaced = state.drop(memory_id) if memory_id in records.by_id else None
    rec = StoredMemory(
        id=memory_id,
        key=records.new_key(),
        seq=seq,
        command_id=command.command_id,
        content=command.content,
        confidence=command.confidence,
        # shared empty containers: see records.NO_TAGS
        tags=command.tags or NO_TAGS,
        metadata=command.metadata or NO_METADATA,
        occurred_at=command.occurred_at or created,
        created_at=created,
        recalls=recalls,
        last_recall=last_recall,
    )
    state.add(rec, vector)
    return Stored(
        seq=seq,
        memory_id=memory_id,
        command_id=command.command_id,
        replaced_seq=None if replaced is None else replaced.seq,
    )


def _forget(state: SpaceState, command: Forget, seq: int, timestamp: datetime) -> Forgotten:
    old = state.drop(command.memory_id)
    return Forgotten(
        seq=seq,
        memory_id=command.memory_id,
        command_id=command.command_id,
        existed=old is not None,
        erased_seq=None if old is None else old.seq,
    )


def _reinforce(state: SpaceState, command: Reinforce, seq: int, timestamp: datetime) -> Activated:
    """Recall returned these memories: one more recall each, at the message's time."""
    at = timestamp if timestamp.tzinfo else timestamp.replace(tzinfo=UTC)
    found = []
    for memory_id in command.memory_ids:
        rec = state.records.by_id.get(memory_id)
        if rec is not None:  # forgotten since: nothing to reinforce
            rec.recalls += 1
            # a broker clock stepping back never makes a memory older
            rec.last_recall = max(at, rec.last_recall or rec.created_at)
            found.append(memory_id)
    return Activated(seq=seq, command_id=command.command_id, memory_ids=found)


def _consolidate(
    state: SpaceState, command: Consolidate, seq: int, timestamp: datetime
) -> Consolidated:
    """Make the semantic memory of the members that still exist: centroid vector,
    content from theirs, a ``consolidated`` link to each. Reads the members'
    vectors: in a host, fold it under the index lock."""
    by_id = state.records.by_id
    members = [r for r in map(by_id.get, command.members) if r is not None]
    if len(members) < 2:
        raise CommandRejected(
            f"members: {len(members)} of the {len(command.members)} members exist in "
            f"space {state.space!r}; consolidation needs at least 2",
            command.command_id,
        )
    vectors = []
    for rec in members:
        vec = state.indexing.vector(rec.key)
        assert vec is not None, "a live memory has a vector"
        vectors.append(vec.astype(np.float64))
    stacked = np.stack(vectors)
    if state.metric == "cos":
        norms = np.linalg.norm(stacked, axis=1, keepdims=True)
        stacked = stacked / np.where(norms == 0, 1.0, norms)
    centroid = stacked.mean(axis=0).astype(np.float32)
    problem = vector_problem(centroid, state.dim, state.metric)
    if problem is not None or not np.isfinite(centroid).all():
        raise CommandRejected(
            f"members: their centroid cannot be stored ({problem or 'not finite'})",
            command.command_id,
        )
    created = timestamp if timestamp.tzinfo else timestamp.replace(tzinfo=UTC)
    recalls, last_recall = 0, None
    if command.history is not None:
        created, recalls, last_recall = _carried(command.history, created)
    replaced = state.drop(command.memory_id)
    key = state.records.new_key()
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
        occurred_at=max(members, key=lambda m: (epoch(m.occurred_at), m.seq)).occurred_at,
        created_at=created,
        kind="semantic",
        recalls=recalls,
        last_recall=last_recall,
    )
    state.add(rec, centroid)
    for member in members:
        state._graph.link(key, member.key, 1.0, CONSOLIDATED)
    return Consolidated(
        seq=seq,
        command_id=command.command_id,
        memory_id=command.memory_id,
        members=[m.id for m in members],
        replaced_seq=None if replaced is None else replaced.seq,
    )


def _link(state: SpaceState, command: Link, seq: int, timestamp: datetime) -> Linked:
    by_id = state.records.by_id
    source, target = by_id.get(command.source), by_id.get(command.target)
    for name, rec, mid in (
        ("source", source, command.source),
        ("target", target, command.target),
    ):
        if rec is None:
            raise CommandRejected(
                f"{name}: memory {mid!r} does not exist in space {state.space!r}",
                command.command_id,
            )
    assert source is not None and target is not None
    if command.weight > 0.0:
        state._graph.link(source.key, target.key, command.weight, command.kind, explicit=True)
    else:
        state._graph.unlink(source.key, target.key, explicit_only=True)
    return Linked(
        seq=seq,
        command_id=command.command_id,
        source=command.source,
        target=command.target,
        weight=command.weight,
        link_kind=command.kind,
    )


#: a fold handler: (state, decoded command, seq, message time) → the event
FoldHandler = Callable[[SpaceState, Any, int, datetime], Event]

#: the fold's verbs table: each command verb (:data:`engram_contract.verbs.COMMANDS`)
#: to the handler that folds its decoded command
FOLD: Final[dict[CommandVerb, FoldHandler]] = {
    "remember": _remember,
    "forget": _forget,
    "link": _link,
    "reinforce": _reinforce,
    "consolidate": _consolidate,
}
