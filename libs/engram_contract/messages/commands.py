"""Commands: what goes into a space's WAL (``spaces.<id>.<verb>``), imperative."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from engram_contract.messages.base import (
    MAX_BATCH,
    MAX_CONSOLIDATE_MEMBERS,
    SCHEMA_VERSION,
    TARGET_SPACE_DOC,
    CommandId,
    LinkKind,
    MemoryId,
    Model,
    SpaceId,
)
from engram_contract.messages.memories import HISTORY_DOC, MemoryHistory, MemoryIn


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
