"""Events: what workers publish on ``spaces.<id>.evt.<kind>``, past tense."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from engram_contract.messages.base import SCHEMA_VERSION, Model


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
