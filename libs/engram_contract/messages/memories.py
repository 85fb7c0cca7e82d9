"""Memories as clients send them and as workers return them."""

from __future__ import annotations

from datetime import datetime

import numpy as np
from pydantic import Field, field_validator, model_validator

from engram_contract.messages.base import (
    DEFAULT_CONFIDENCE,
    MAX_BATCH,
    MAX_CONTENT_BYTES,
    MAX_METADATA,
    MAX_TAGS,
    FiniteFloat,
    LinkKind,
    MemoryId,
    MemoryKind,
    MetaKey,
    MetaValue,
    Model,
    Tag,
    _check_float32,
    check_embedding_b64,
    decode_embedding,
)


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

    @field_validator("content")
    @classmethod
    def _check_content(cls, content: str) -> str:
        # a field's own check: an error names `content` (`memories[3].content`)
        if not content.strip():
            raise ValueError("must not be blank")
        if len(content.encode("utf-8")) > MAX_CONTENT_BYTES:
            raise ValueError(f"is over {MAX_CONTENT_BYTES} bytes (100 KiB) of UTF-8")
        return content

    @model_validator(mode="after")
    def _check(self) -> MemoryIn:
        if self.embedding is not None and self.embedding_b64 is not None:
            raise ValueError("give either embedding or embedding_b64, not both")
        _check_float32(self.embedding)
        if self.embedding_b64 is not None:
            check_embedding_b64(self.embedding_b64)
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
