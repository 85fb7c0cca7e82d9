"""Queries: request/reply on ``spaces.<id>.q.<name>``, and the error reply of each."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field, model_validator

from engram_contract.messages.base import (
    MAX_CONTENT_BYTES,
    MAX_TAGS,
    TARGET_SPACE_DOC,
    Consistency,
    FiniteFloat,
    Model,
    RecallMode,
    SpaceId,
    Tag,
    _check_float32,
    as_utc,
    check_embedding_b64,
)
from engram_contract.messages.memories import Memory


class RecallRequest(Model):
    """``spaces.<id>.q.recall`` and ``POST …/recall``: find memories by cue.

    See docs/recall.md for the model behind the parameters."""

    query: str | None = Field(default=None, min_length=1, max_length=MAX_CONTENT_BYTES)
    embedding: list[FiniteFloat] | None = None
    embedding_b64: str | None = Field(
        default=None,
        description="Alternative to `embedding`: base64 of little-endian float32 "
        "(smaller and faster to parse).",
    )
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
        if self.embedding is not None and self.embedding_b64 is not None:
            raise ValueError("give either embedding or embedding_b64, not both")
        if (self.query is None) == (self.embedding is None and self.embedding_b64 is None):
            raise ValueError(
                "give exactly one cue: query (text), or embedding or embedding_b64 (vector)"
            )
        _check_float32(self.embedding)
        if self.embedding_b64 is not None:
            check_embedding_b64(self.embedding_b64)
        if (
            self.since is not None
            and self.until is not None
            and as_utc(self.since) >= as_utc(self.until)
        ):
            raise ValueError("since must be before until")
        return self


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


class QueryError(Model):
    """The ``error`` member of a failed query reply (mirrors problem+json)."""

    status: int
    title: str
    detail: str


def error_reply(status: int, title: str, detail: str) -> dict[str, Any]:
    return {"error": QueryError(status=status, title=title, detail=detail).model_dump()}
