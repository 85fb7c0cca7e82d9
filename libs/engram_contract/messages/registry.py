"""The space registry's records (KV ``ENGRAM_SPACES``) and a space's settings."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, model_validator

from engram_contract.messages.base import MAX_CONSOLIDATE_MEMBERS, Metric, Model

SpaceStatus = Literal["active", "deleting"]
#: JetStream's limits (a stream's max_bytes) are int64
MAX_INT64 = 2**63 - 1


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
    max_memories: int = Field(
        default=0,
        ge=0,
        description="Most live memories; a remember of a new memory past it is refused "
        "(0: no limit).",
    )
    max_bytes: int = Field(
        default=0,
        ge=0,
        description="Most bytes of the space's WAL stream; JetStream refuses writes past it "
        "(0: no limit).",
    )


class CreateSpace(Model):
    """``POST /api/v1/spaces`` body."""

    id: str = Field(description="3-64 chars of [a-z0-9_-], starting with a letter or digit.")
    dim: int | None = Field(default=None, ge=2, le=4096)
    metric: Metric = "cos"
    embedder: str | None = None
    links: LinkSettings | None = None
    decay: DecaySettings | None = None
    consolidation: ConsolidationSettings | None = None
    max_memories: int | None = Field(
        default=None,
        ge=0,
        le=MAX_INT64,
        description="Most live memories (default ENGRAM_SPACE_MAX_MEMORIES).",
    )
    max_bytes: int | None = Field(
        default=None,
        ge=0,
        le=MAX_INT64,
        description="Most WAL bytes (default ENGRAM_SPACE_MAX_BYTES).",
    )
