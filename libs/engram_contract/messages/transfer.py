"""The export format (pages of ``spaces.<id>.q.export``, the NDJSON of
``GET …/export``) and what an import answers."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, model_validator

from engram_contract.messages.base import (
    DEFAULT_CONFIDENCE,
    MAX_BATCH,
    MAX_CONSOLIDATE_MEMBERS,
    MAX_METADATA,
    MAX_TAGS,
    TARGET_SPACE_DOC,
    FiniteFloat,
    LinkKind,
    MemoryId,
    MemoryKind,
    MetaKey,
    MetaValue,
    Metric,
    Model,
    SpaceId,
    Tag,
)
from engram_contract.messages.memories import MemoryHistory, MemoryIn
from engram_contract.messages.registry import ConsolidationSettings, DecaySettings, LinkSettings


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
