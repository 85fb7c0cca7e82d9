"""The wire contract: every message body on ``spaces.<id>.…`` and over HTTP.

Each model is defined once here and used by the gateway, the worker and the SDK.
Commands are imperative (they go into a space's WAL), events are past tense
(published by the worker), queries are request/reply. Embeddings travel in the
WAL as base64 of little-endian float32; HTTP and NATS clients may also send a
plain list of floats.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from engram_common.ids import MEMORY_ID_PATTERN, SPACE_ID_PATTERN

SCHEMA_VERSION: Literal[1] = 1

MAX_CONTENT_BYTES = 100 * 1024
MAX_BATCH = 1000
MAX_TAGS = 64
MAX_METADATA = 64
DEFAULT_CONFIDENCE = 0.7

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
MemoryId = Annotated[str, StringConstraints(pattern=MEMORY_ID_PATTERN)]
SpaceId = Annotated[str, StringConstraints(pattern=SPACE_ID_PATTERN)]
MAX_COMMAND_ID_CHARS = 200
MAX_TAG_CHARS = 128
MAX_META_KEY_CHARS = 128
MAX_META_VALUE_CHARS = 4096
CommandId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_COMMAND_ID_CHARS)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TAG_CHARS)]
MetaKey = Annotated[str, StringConstraints(min_length=1, max_length=MAX_META_KEY_CHARS)]
MetaValue = Annotated[str, StringConstraints(max_length=MAX_META_VALUE_CHARS)]
Consistency = Literal["read_your_writes", "strong", "eventual"]
MemoryKind = Literal["episodic", "semantic"]
RecallMode = Literal["similarity", "spreading", "hybrid"]
MAX_CONSOLIDATE_MEMBERS = 256
#: what ``memory_space_id`` means in every command and query request
TARGET_SPACE_DOC = (
    "The space this message is meant for. Optional: null takes it from the subject "
    "(spaces.<id>.…); when given it must name the subject's space, else the message is "
    "rejected (a command) or answered with an error (a query)."
)
Metric = Literal["cos", "ip", "l2sq"]


class Model(BaseModel):
    """Base of every message: immutable, unknown fields rejected (typos get named)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# ---------------------------------------------------------------------------
# embeddings


def encode_embedding(vector: np.ndarray | list[float]) -> str:
    """Base64 of the vector as little-endian float32 (the WAL form)."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def decode_embedding(b64: str) -> np.ndarray:
    """Inverse of :func:`encode_embedding`; raises ``ValueError`` on bad input."""
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"embedding_b64 is not valid base64: {exc}") from None
    if len(raw) % 4:
        raise ValueError("embedding_b64 must hold whole float32 values (length % 4 != 0)")
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)


def _check_float32(values: list[float] | None) -> None:
    """Vectors are stored as float32: finite doubles beyond its range would become inf."""
    if values is None:
        return
    with np.errstate(over="ignore"):
        as_f32 = np.asarray(values, dtype=np.float32)
    if not np.isfinite(as_f32).all():
        raise ValueError("embedding holds values beyond float32 range (|x| > 3.4e38)")


def vector_problem(vector: np.ndarray, dim: int, metric: str) -> str | None:
    """Why ``vector`` cannot be stored in a space of ``dim``/``metric``, or ``None``."""
    if vector.shape != (dim,):
        return f"expected {dim} values (the space's dim), got {vector.shape[0]}"
    if metric == "cos" and not np.any(vector):
        return "all zeros: a zero vector has no direction for cosine similarity"
    return None


# ---------------------------------------------------------------------------
# memories


class MemoryIn(Model):
    """A memory as a client sends it (HTTP body or inside a ``remember`` command)."""

    content: str = Field(min_length=1, description="The memory's text (≤ 100 KiB UTF-8).")
    id: MemoryId | None = Field(
        default=None, description="Your id for the memory; a new unique id when omitted."
    )
    embedding: list[FiniteFloat] | None = Field(
        default=None,
        description="The vector (length = the space's dim); embedded from text when omitted.",
    )
    embedding_b64: str | None = Field(
        default=None, description="Alternative to `embedding`: base64 of little-endian float32."
    )
    confidence: float = Field(default=DEFAULT_CONFIDENCE, ge=0.0, le=1.0, allow_inf_nan=False)
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS)
    metadata: dict[MetaKey, MetaValue] = Field(default_factory=dict, max_length=MAX_METADATA)
    occurred_at: datetime | None = Field(
        default=None, description="When the remembered thing happened; defaults to store time."
    )

    @model_validator(mode="after")
    def _check(self) -> MemoryIn:
        if not self.content.strip():
            raise ValueError("content must not be blank")
        if len(self.content.encode("utf-8")) > MAX_CONTENT_BYTES:
            raise ValueError(f"content is over {MAX_CONTENT_BYTES} bytes (100 KiB) of UTF-8")
        if self.embedding is not None and self.embedding_b64 is not None:
            raise ValueError("give either embedding or embedding_b64, not both")
        _check_float32(self.embedding)
        if self.embedding_b64 is not None:
            vec = decode_embedding(self.embedding_b64)
            if not np.isfinite(vec).all():
                raise ValueError("embedding_b64 holds NaN or infinite values")
        return self

    def vector(self) -> np.ndarray | None:
        """The embedding as float32, or ``None`` when the text still has to be embedded."""
        if self.embedding is not None:
            return np.asarray(self.embedding, dtype=np.float32)
        if self.embedding_b64 is not None:
            return decode_embedding(self.embedding_b64)
        return None


class MemoryBatch(Model):
    """Several memories in one request (each becomes one WAL message)."""

    memories: list[MemoryIn] = Field(min_length=1, max_length=MAX_BATCH)


class ForgetBatch(Model):
    """``POST …/forget``: the memories to forget, one ``forget`` command each."""

    ids: list[MemoryId] = Field(min_length=1, max_length=MAX_BATCH)


class Memory(Model):
    """A stored memory as the worker returns it."""

    id: str
    content: str
    confidence: float
    tags: list[str]
    metadata: dict[str, str]
    occurred_at: datetime
    created_at: datetime
    seq: int = Field(description="Stream sequence of the message that stored this version.")
    kind: MemoryKind = Field(
        default="episodic",
        description="`episodic` (stored by a client) or `semantic` (made by consolidation).",
    )
    recalls: int = Field(default=0, description="How often recall returned it (reinforcement).")
    last_recall: datetime | None = Field(default=None, description="When recall last returned it.")
    embedding: list[float] | None = None


# ---------------------------------------------------------------------------
# commands (into the WAL)


class MemoryHistory(Model):
    """A memory's age and reinforcement in the space it comes from, carried over by
    an import so that its links, decay and retention are what they were there.
    The fold never lets them lie ahead of the message: ``created_at`` is at most
    the message's time, and ``last_recall`` lies between the two."""

    created_at: datetime = Field(description="When the memory was first stored.")
    recalls: int = Field(default=0, ge=0, description="How often recall returned it.")
    last_recall: datetime | None = Field(default=None, description="When recall last did.")


HISTORY_DOC = (
    "Imports only: the memory's created_at, recalls and last_recall in the space it "
    "comes from (default: a new memory, created at the message's time)."
)


class RememberCommand(Model):
    """``spaces.<id>.remember``: store one memory (an existing id is replaced)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    command_id: CommandId
    memory: MemoryIn
    memory_space_id: SpaceId | None = Field(default=None, description=TARGET_SPACE_DOC)
    history: MemoryHistory | None = Field(default=None, description=HISTORY_DOC)


class ForgetCommand(Model):
    """``spaces.<id>.forget``: drop a memory and erase the message that stored it.
    Forgetting an unknown id is a no-op."""

    schema_version: Literal[1] = SCHEMA_VERSION
    command_id: CommandId
    memory_id: MemoryId
    memory_space_id: SpaceId | None = Field(default=None, description=TARGET_SPACE_DOC)


LinkKind = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]


class LinkCommand(Model):
    """``spaces.<id>.link``: associate two memories explicitly (sets the weight of
    their edge; weight 0 removes the explicit link)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    command_id: CommandId
    source: MemoryId
    target: MemoryId
    weight: float = Field(ge=0.0, le=1.0, allow_inf_nan=False)
    kind: LinkKind = "related"
    memory_space_id: SpaceId | None = Field(default=None, description=TARGET_SPACE_DOC)

    @model_validator(mode="after")
    def _two(self) -> LinkCommand:
        if self.source == self.target:
            raise ValueError("a memory cannot be linked to itself")
        return self


class ReinforceCommand(Model):
    """``spaces.<id>.reinforce``: recall returned these memories (written by the worker
    that answered, batched). Each existing one counts one more recall, at the
    message's time; ids forgotten meanwhile are skipped."""

    schema_version: Literal[1] = SCHEMA_VERSION
    command_id: CommandId
    memory_ids: list[MemoryId] = Field(min_length=1, max_length=MAX_BATCH)
    memory_space_id: SpaceId | None = Field(default=None, description=TARGET_SPACE_DOC)


class ConsolidateCommand(Model):
    """``spaces.<id>.consolidate``: make the semantic memory ``memory_id`` out of
    ``members`` (decided by a worker, so that a replay reproduces it exactly). The
    fold builds its content, centroid embedding and links from the members that
    still exist (at least two must)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    command_id: CommandId
    memory_id: MemoryId
    members: list[MemoryId] = Field(min_length=2, max_length=MAX_CONSOLIDATE_MEMBERS)
    memory_space_id: SpaceId | None = Field(default=None, description=TARGET_SPACE_DOC)
    history: MemoryHistory | None = Field(default=None, description=HISTORY_DOC)

    @model_validator(mode="after")
    def _distinct(self) -> ConsolidateCommand:
        if len(set(self.members)) != len(self.members):
            raise ValueError("members must be distinct")
        if self.memory_id in self.members:
            raise ValueError("a consolidated memory cannot be one of its own members")
        return self


Command = RememberCommand | ForgetCommand | LinkCommand | ReinforceCommand | ConsolidateCommand


class LinkIn(Model):
    """``POST /api/v1/spaces/{space}/links`` body."""

    source: MemoryId
    target: MemoryId
    weight: float = Field(
        ge=0.0, le=1.0, allow_inf_nan=False, description="0..1; 0 removes the explicit link."
    )
    kind: LinkKind = "related"

    @model_validator(mode="after")
    def _two(self) -> LinkIn:
        if self.source == self.target:
            raise ValueError("a memory cannot be linked to itself")
        return self


# ---------------------------------------------------------------------------
# queries (request/reply on spaces.<id>.q.<name>)


class RecallRequest(Model):
    """``spaces.<id>.q.recall`` and ``POST …/recall``: find memories by cue.

    See docs/recall.md for the model behind the parameters."""

    query: str | None = Field(default=None, min_length=1, max_length=MAX_CONTENT_BYTES)
    embedding: list[FiniteFloat] | None = None
    k: int = Field(default=10, ge=1, le=1000)
    mode: RecallMode = Field(
        default="spreading",
        description="`similarity`: the nearest memories; `spreading`: activation spreads from "
        "the nearest along the association graph; `hybrid`: a blend of both.",
    )
    seed_k: int = Field(default=10, ge=1, le=1000, description="Seeds: the most similar memories.")
    max_hops: int = Field(default=2, ge=0, le=4, description="How far activation spreads.")
    hop_decay: float = Field(
        default=0.5, gt=0.0, le=1.0, allow_inf_nan=False, description="Kept per hop."
    )
    threshold: float = Field(
        default=0.05, ge=0.0, le=1.0, allow_inf_nan=False, description="Weaker activation stops."
    )
    max_fanout: int = Field(
        default=8, ge=1, le=64, description="Strongest links followed per memory and hop."
    )
    hybrid_weight: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="hybrid: the share of spreading activation (the rest is similarity).",
    )
    tags: list[Tag] = Field(
        default_factory=list, max_length=MAX_TAGS, description="Only memories with all of these."
    )
    since: datetime | None = Field(default=None, description="Only occurred_at >= since.")
    until: datetime | None = Field(default=None, description="Only occurred_at < until.")
    trace: bool = Field(default=False, description="Add each result's activation path.")
    reinforce: bool = Field(
        default=True, description="Count this recall for the memories returned (through the WAL)."
    )
    consistency: Consistency = "read_your_writes"
    min_seq: int | None = Field(
        default=None, ge=0, description="Wait until the worker has applied this stream sequence."
    )
    memory_space_id: SpaceId | None = Field(default=None, description=TARGET_SPACE_DOC)

    @model_validator(mode="after")
    def _one_cue(self) -> RecallRequest:
        if (self.query is None) == (self.embedding is None):
            raise ValueError("give exactly one cue: query (text) or embedding (vector)")
        _check_float32(self.embedding)
        if (
            self.since is not None
            and self.until is not None
            and as_utc(self.since) >= as_utc(self.until)
        ):
            raise ValueError("since must be before until")
        return self


def as_utc(when: datetime) -> datetime:
    """A datetime without a zone is taken as UTC (as the fold does)."""
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


class TraceStep(Model):
    """One memory on an activation path, from a seed to a result."""

    memory_id: str
    activation: float
    hops: int
    weight: float | None = Field(description="The link it was reached over (null: a seed).")
    kind: str | None = Field(description="That link's kind (null: a seed).")


class RecallResult(Model):
    memory: Memory
    score: float = Field(description="activation × confidence, in [0, 1]; results come by it.")
    similarity: float = Field(description="The memory's own similarity to the cue.")
    activation: float = Field(description="In [0, 1]; for `similarity` mode, the similarity.")
    confidence: float = Field(description="The memory's confidence decayed since last access.")
    retention: float = Field(default=1.0, description="confidence / memory.confidence: decay.")
    hops: int = Field(description="Links between the nearest seed and this memory (0: a seed).")
    trace: list[TraceStep] | None = None


class RecallResponse(Model):
    space: str
    applied_seq: int
    results: list[RecallResult]


class ConsolidateRequest(Model):
    """``spaces.<id>.q.consolidate`` and ``POST …/consolidate``: the worker finds
    groups of densely linked episodic memories and writes a ``consolidate``
    command for each (``dry_run``: only say which)."""

    dry_run: bool = False
    min_seq: int | None = Field(default=None, ge=0)
    memory_space_id: SpaceId | None = Field(default=None, description=TARGET_SPACE_DOC)


class ConsolidatedGroup(Model):
    memory_id: str
    members: list[str]


class ConsolidateResponse(Model):
    space: str
    applied_seq: int
    groups: list[ConsolidatedGroup]
    seq: int | None = Field(description="Stream seq of the last command written (null: none).")


class GetRequest(Model):
    memory_id: str
    include_embedding: bool = False
    min_seq: int | None = Field(default=None, ge=0)
    memory_space_id: SpaceId | None = Field(default=None, description=TARGET_SPACE_DOC)


class GetResponse(Model):
    space: str
    applied_seq: int
    memory: Memory


class ListRequest(Model):
    limit: int = Field(default=100, ge=1, le=1000)
    cursor: str | None = None
    include_embedding: bool = False
    min_seq: int | None = Field(default=None, ge=0)
    memory_space_id: SpaceId | None = Field(default=None, description=TARGET_SPACE_DOC)


class ListResponse(Model):
    space: str
    applied_seq: int
    memories: list[Memory]
    next_cursor: str | None


class StatsRequest(Model):
    min_seq: int | None = Field(default=None, ge=0)
    memory_space_id: SpaceId | None = Field(default=None, description=TARGET_SPACE_DOC)


class StatsResponse(Model):
    space: str
    memories: int
    applied_seq: int
    rejected: int
    snapshot_seq: int = Field(default=0, description="Position of the newest snapshot (0: none).")
    snapshot_at: datetime | None = Field(default=None, description="When it was written.")
    recovery: str = Field(default="", description="How the worker loaded the space.")
    worker: str = Field(default="", description="The worker that answered.")


class ReloadRequest(Model):
    """``engram.ctl.reload``: hosting workers load ``space`` again from its snapshot
    (``engram replay`` sends it after writing a rebuilt snapshot)."""

    schema_version: Literal[1] = 1
    space: str


class ReloadReply(Model):
    worker: str
    space: str
    hosted: bool = Field(description="False: this worker does not host the space.")
    recovery: str = ""
    applied_seq: int = 0
    memories: int = 0


class StatusRequest(Model):
    """``engram.ctl.status``: every worker answers with a :class:`WorkerStatus`."""

    schema_version: Literal[1] = 1
    space: str | None = Field(default=None, description="Only this space.")


class HostedSpace(Model):
    id: str
    applied_seq: int
    memories: int
    rejected: int
    snapshot_seq: int
    snapshot_at: datetime | None
    recovery: str


class FailedSpace(Model):
    id: str
    reason: str


class WorkerStatus(Model):
    worker: str
    spaces: list[HostedSpace]
    failed: list[FailedSpace]


class SpaceStatusRow(Model):
    """One space in ``GET /api/v1/status``. Fields a worker reports are ``null``
    while no worker hosts the space."""

    id: str
    status: SpaceStatus
    stream_seq: int | None = Field(description="The WAL's last sequence.")
    applied_seq: int | None
    wal_lag: int | None = Field(description="stream_seq − applied_seq.")
    memories: int | None
    rejected: int | None
    snapshot_seq: int | None
    snapshot_age_s: float | None
    worker: str | None
    recovery: str | None
    failed: str | None = Field(description="Why no worker could load the space.")


class StatusResponse(Model):
    spaces: list[SpaceStatusRow]
    workers: list[str] = Field(description="Workers that answered.")


# ---------------------------------------------------------------------------
# export / import (``spaces.<id>.q.export`` and the NDJSON of GET …/export)


class ExportRequest(Model):
    """``spaces.<id>.q.export``: a page of the space's live memories in stream order,
    each with its embedding and explicit links, ready to be imported elsewhere."""

    limit: int = Field(default=MAX_BATCH, ge=1, le=MAX_BATCH)
    cursor: str | None = Field(default=None, description="`next_cursor` of the previous page.")
    tags: list[Tag] = Field(
        default_factory=list, max_length=MAX_TAGS, description="Only memories with all of these."
    )
    min_seq: int | None = Field(default=None, ge=0)
    memory_space_id: SpaceId | None = Field(default=None, description=TARGET_SPACE_DOC)


class ExportLink(Model):
    """An explicit link of an exported memory, to a memory exported before it."""

    target: MemoryId
    weight: float = Field(gt=0.0, le=1.0, allow_inf_nan=False)
    kind: LinkKind = "related"


class ExportedMemory(Model):
    """One memory line of an export (and of an import body).

    ``embedding_b64`` (or ``embedding``) is the vector; without either the importing
    gateway embeds ``content``. A ``semantic`` memory (made by consolidation) names
    its ``members`` instead: the import consolidates them again. ``links`` are the
    explicit links to memories that come earlier in the export. ``created_at``,
    ``recalls`` and ``last_recall`` are carried over (see :class:`MemoryHistory`), so
    temporal links, decay and retention in the new space are what they were; ``seq``
    describes the source only.
    """

    id: MemoryId
    content: str = Field(min_length=1)
    embedding_b64: str | None = None
    embedding: list[FiniteFloat] | None = None
    confidence: float = Field(default=DEFAULT_CONFIDENCE, ge=0.0, le=1.0, allow_inf_nan=False)
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS)
    metadata: dict[MetaKey, MetaValue] = Field(default_factory=dict, max_length=MAX_METADATA)
    occurred_at: datetime | None = None
    kind: MemoryKind = "episodic"
    members: list[MemoryId] = Field(default_factory=list, max_length=MAX_CONSOLIDATE_MEMBERS)
    links: list[ExportLink] = Field(default_factory=list)
    created_at: datetime | None = None
    seq: int | None = None
    recalls: int = Field(default=0, ge=0)
    last_recall: datetime | None = None

    @model_validator(mode="after")
    def _kind(self) -> ExportedMemory:
        if self.kind == "semantic" and len(set(self.members)) < 2:
            raise ValueError("a semantic memory needs at least two distinct members")
        if self.kind == "episodic" and self.members:
            raise ValueError("only a semantic memory has members")
        if any(link.target == self.id for link in self.links):
            raise ValueError("a memory cannot be linked to itself")
        return self

    def history(self) -> MemoryHistory | None:
        """What the import carries over (``None`` without a ``created_at``: a new memory)."""
        if self.created_at is None:
            return None
        return MemoryHistory(
            created_at=self.created_at, recalls=self.recalls, last_recall=self.last_recall
        )

    def memory_in(self) -> MemoryIn:
        """The memory as a ``remember`` command carries it (validated)."""
        return MemoryIn(
            content=self.content,
            id=self.id,
            embedding=self.embedding,
            embedding_b64=self.embedding_b64,
            confidence=self.confidence,
            tags=self.tags,
            metadata=self.metadata,
            occurred_at=self.occurred_at,
        )


class ExportResponse(Model):
    space: str
    applied_seq: int
    memories: list[ExportedMemory]
    next_cursor: str | None


class SpaceSettings(Model):
    """A space's settings as an export's header carries them (``?create=true``
    creates the target space with them)."""

    dim: int = Field(ge=2, le=4096)
    metric: Metric = "cos"
    embedder: str
    links: LinkSettings | None = None
    decay: DecaySettings | None = None
    consolidation: ConsolidationSettings | None = None


EXPORT_FORMAT_VERSION: Literal[1] = 1


class ExportHeader(Model):
    """The first line of an export."""

    engram_export: Literal[1] = Field(description="The format version.")
    space: str
    exported_at: datetime
    applied_seq: int = Field(description="The worker's position when the export began.")
    tags: list[Tag] = Field(default_factory=list, description="The export's tag filter.")
    settings: SpaceSettings


class ExportEnd(Model):
    """``{"end": …}``: the last line of a complete export."""

    memories: int = Field(ge=0)
    links: int = Field(ge=0)


class ImportResult(Model):
    """``POST …/import`` answer."""

    space: str
    created: bool = Field(description="The import created the space (?create=true).")
    memories: int
    links: int
    seq: int | None = Field(description="The last stream sequence written (null: nothing).")


class QueryError(Model):
    """The ``error`` member of a failed query reply (mirrors problem+json)."""

    status: int
    title: str
    detail: str


def error_reply(status: int, title: str, detail: str) -> dict[str, Any]:
    return {"error": QueryError(status=status, title=title, detail=detail).model_dump()}


# ---------------------------------------------------------------------------
# events (published by the worker on spaces.<id>.evt.<kind>)


class MemoryEvent(Model):
    """What every event about one memory carries."""

    schema_version: Literal[1] = SCHEMA_VERSION
    space: str
    seq: int
    memory_id: str
    command_id: str


class MemoryStored(MemoryEvent):
    replaced: bool = False
    replaced_seq: int | None = Field(
        default=None, description="Stream seq of the replaced version (erased from the WAL)."
    )


class MemoryForgotten(MemoryEvent):
    existed: bool
    erased_seq: int | None = Field(
        default=None, description="Stream seq of the message that stored it (erased)."
    )


class MemoriesLinked(Model):
    schema_version: Literal[1] = SCHEMA_VERSION
    space: str
    seq: int
    command_id: str
    source: str
    target: str
    weight: float
    kind: str


class MemoriesActivated(Model):
    """A ``reinforce`` command was folded: these memories count one more recall."""

    schema_version: Literal[1] = SCHEMA_VERSION
    space: str
    seq: int
    command_id: str
    memory_ids: list[str]


class MemoriesConsolidated(Model):
    schema_version: Literal[1] = SCHEMA_VERSION
    space: str
    seq: int
    command_id: str
    memory_id: str = Field(description="The semantic memory.")
    members: list[str] = Field(description="Its members that existed when it was made.")


class EventsGap(Model):
    """Not a WAL event: what an event stream resumed after ``after`` says first when
    the events between it and ``first_kept`` are gone (older than the events
    stream keeps, or purged), so its reader may have missed some of its space's."""

    space: str
    after: int = Field(description="The event id the stream was resumed after.")
    first_kept: int = Field(description="The oldest event id still kept.")


class MessageRejected(Model):
    schema_version: Literal[1] = SCHEMA_VERSION
    space: str
    seq: int
    reason: str
    command_id: str | None = None


# ---------------------------------------------------------------------------
# registry


SpaceStatus = Literal["active", "deleting"]


class LinkSettings(Model):
    """How a space links memories as they are stored (settable per space)."""

    semantic_k: int = Field(
        default=5, ge=0, le=32, description="Link a new memory to up to this many nearest."
    )
    semantic_threshold: float = Field(
        default=0.5, ge=0.0, le=1.0, description="…whose similarity is at least this."
    )
    temporal_window_s: float = Field(
        default=300.0, ge=0.0, description="Link memories stored at most this far apart (0: off)."
    )
    temporal_max: int = Field(
        default=3, ge=0, le=16, description="…to at most this many of the previous ones."
    )
    temporal_half_life_s: float = Field(
        default=60.0, gt=0.0, description="A temporal link's weight halves every this many seconds."
    )
    temporal_weight: float = Field(
        default=0.5,
        gt=0.0,
        le=1.0,
        description="Weight of a temporal link between memories stored at the same moment "
        "(stored close in time is a weaker association than similar or explicitly linked).",
    )


class DecaySettings(Model):
    """The forgetting curve recall scores with (settable per space)."""

    fast_half_life_s: float = Field(
        default=86_400.0, gt=0.0, description="Half-life of memories not yet recalled."
    )
    slow_half_life_s: float = Field(
        default=30 * 86_400.0, gt=0.0, description="Half-life once recalled settle_after times."
    )
    settle_after: int = Field(default=3, ge=1, le=1000)

    @model_validator(mode="after")
    def _order(self) -> DecaySettings:
        if self.fast_half_life_s > self.slow_half_life_s:
            raise ValueError("fast_half_life_s must not exceed slow_half_life_s")
        return self


class ConsolidationSettings(Model):
    """When and what a space's workers consolidate."""

    interval_s: float = Field(
        default=0.0, ge=0.0, description="Consolidate every this many seconds (0: only on request)."
    )
    min_size: int = Field(default=3, ge=2, le=MAX_CONSOLIDATE_MEMBERS)
    max_size: int = Field(default=32, ge=2, le=MAX_CONSOLIDATE_MEMBERS)
    min_weight: float = Field(
        default=0.75, gt=0.0, le=1.0, description="Links at least this strong count."
    )
    min_density: float = Field(
        default=0.5, gt=0.0, le=1.0, description="Share of a group's pairs that must be linked."
    )

    @model_validator(mode="after")
    def _sizes(self) -> ConsolidationSettings:
        if self.min_size > self.max_size:
            raise ValueError("min_size must not exceed max_size")
        return self


class SpaceRecord(Model):
    """A space as the registry (KV ``ENGRAM_SPACES``) holds it."""

    id: str
    status: SpaceStatus = "active"
    dim: int
    metric: Metric = "cos"
    embedder: str
    created_at: datetime
    links: LinkSettings = Field(default_factory=LinkSettings)
    decay: DecaySettings = Field(default_factory=DecaySettings)
    consolidation: ConsolidationSettings = Field(default_factory=ConsolidationSettings)


class CreateSpace(Model):
    """``POST /api/v1/spaces`` body."""

    id: str = Field(description="3-64 chars of [a-z0-9_-], starting with a letter or digit.")
    dim: int | None = Field(default=None, ge=2, le=4096)
    metric: Metric = "cos"
    embedder: str | None = None
    links: LinkSettings | None = None
    decay: DecaySettings | None = None
    consolidation: ConsolidationSettings | None = None
