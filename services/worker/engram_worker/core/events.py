"""What folding one WAL message did: the events a host publishes.

Plain slotted structs, not the wire models: the fold makes one per message and
most are never published (a replay of old history stays quiet), so the pydantic
event is only built by ``message()`` when it is sent (saves ~3 µs a message).
Each knows its ``kind`` (the subject ``spaces.<id>.evt.<kind>`` it goes out on)
and the WAL message it makes obsolete (``erases``: a forgotten or replaced
version, which the host erases from the stream).
"""

from __future__ import annotations

from typing import ClassVar

import msgspec

from engram_contract.messages import (
    MemoriesActivated,
    MemoriesConsolidated,
    MemoriesLinked,
    MemoryForgotten,
    MemoryStored,
    MessageRejected,
)
from engram_contract.subjects import EventKind


class Stored(msgspec.Struct, gc=False):
    kind: ClassVar[EventKind] = "stored"
    seq: int
    memory_id: str
    command_id: str
    replaced_seq: int | None = None  # the replaced version's message, to erase

    @property
    def replaced(self) -> bool:
        return self.replaced_seq is not None

    @property
    def erases(self) -> int | None:
        return self.replaced_seq

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
    kind: ClassVar[EventKind] = "forgotten"
    seq: int
    memory_id: str
    command_id: str
    existed: bool
    erased_seq: int | None = None  # the message that stored it, to erase

    @property
    def erases(self) -> int | None:
        return self.erased_seq

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
    kind: ClassVar[EventKind] = "linked"
    erases: ClassVar[None] = None
    seq: int
    command_id: str
    source: str
    target: str
    weight: float
    link_kind: str  # the link's kind (``kind`` is the event's)

    def message(self, space: str) -> MemoriesLinked:
        return MemoriesLinked(
            space=space,
            seq=self.seq,
            command_id=self.command_id,
            source=self.source,
            target=self.target,
            weight=self.weight,
            kind=self.link_kind,
        )


class Rejected(msgspec.Struct, gc=False):
    kind: ClassVar[EventKind] = "rejected"
    erases: ClassVar[None] = None
    seq: int
    reason: str
    command_id: str | None = None

    def message(self, space: str) -> MessageRejected:
        return MessageRejected(
            space=space, seq=self.seq, reason=self.reason, command_id=self.command_id
        )


class Activated(msgspec.Struct, gc=False):
    kind: ClassVar[EventKind] = "activated"
    erases: ClassVar[None] = None
    seq: int
    command_id: str
    memory_ids: list[str]

    def message(self, space: str) -> MemoriesActivated:
        return MemoriesActivated(
            space=space, seq=self.seq, command_id=self.command_id, memory_ids=self.memory_ids
        )


class Consolidated(msgspec.Struct, gc=False):
    kind: ClassVar[EventKind] = "consolidated"
    seq: int
    command_id: str
    memory_id: str
    members: list[str]
    replaced_seq: int | None = None  # an earlier version of the semantic memory, to erase

    @property
    def erases(self) -> int | None:
        return self.replaced_seq

    def message(self, space: str) -> MemoriesConsolidated:
        return MemoriesConsolidated(
            space=space,
            seq=self.seq,
            command_id=self.command_id,
            memory_id=self.memory_id,
            members=self.members,
        )


Event = Stored | Forgotten | Linked | Activated | Consolidated | Rejected

#: every event class by the kind it goes out as
EVENT_CLASSES: dict[EventKind, type[Event]] = {
    cls.kind: cls for cls in (Stored, Forgotten, Linked, Activated, Consolidated, Rejected)
}
