"""What the transports share: their interface, write receipts, space details and
the event stream."""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, cast

from engram_contract.messages import (
    CreateSpace,
    EventsGap,
    LinkIn,
    ListRequest,
    ListResponse,
    MemoriesActivated,
    MemoriesConsolidated,
    MemoriesLinked,
    Memory,
    MemoryForgotten,
    MemoryIn,
    MemoryStored,
    MessageRejected,
    Model,
    RecallRequest,
    RecallResponse,
    SpaceRecord,
)

EventData = (
    MemoryStored
    | MemoryForgotten
    | MemoriesLinked
    | MemoriesActivated
    | MemoriesConsolidated
    | MessageRejected
    | EventsGap
)

#: The model of each event kind (``spaces.<id>.evt.<kind>``).
EVENT_MODELS: dict[str, type[Model]] = {
    "stored": MemoryStored,
    "forgotten": MemoryForgotten,
    "linked": MemoriesLinked,
    "activated": MemoriesActivated,
    "consolidated": MemoriesConsolidated,
    "rejected": MessageRejected,
    # not a space's event: the stream resumed after events that are gone
    "gap": EventsGap,
}


@dataclass(frozen=True)
class Event:
    """One event of a space. ``id`` is its sequence in the ``ENGRAM_EVENTS``
    stream (pass it as ``last_event_id`` to resume after it); the WAL sequence
    is ``data.seq``."""

    id: int
    kind: str
    data: EventData


def parse_event(event_id: int, kind: str, raw: bytes | str) -> Event | None:
    """The typed event, or ``None`` for a kind this SDK does not know."""
    model = EVENT_MODELS.get(kind)
    if model is None:
        return None
    data = cast(EventData, model.model_validate_json(raw))
    if isinstance(data, EventsGap):
        event_id = data.after  # resuming from it again is what the client asked for
    return Event(event_id, kind, data)


@dataclass(frozen=True)
class Written:
    """A write JetStream acknowledged (durable): the memory ids and the last
    stream sequence. ``id`` is the first (the only one of a single remember)."""

    ids: list[str]
    seq: int

    @property
    def id(self) -> str:
        return self.ids[0]


@dataclass(frozen=True)
class SpaceInfo:
    """A space's record with its live memory count and the last stream sequence
    the worker has folded."""

    record: SpaceRecord
    memories: int
    applied_seq: int

    @property
    def id(self) -> str:
        return self.record.id


class EventStream:
    """An async iterator of one space's :class:`Event` s, opened on ``async with``
    (events published after that are seen) and closed on exit, which frees the
    server-side consumer. Iterating without ``async with`` opens it on the first
    ``__anext__``; call :meth:`aclose` then."""

    _opened = False
    _closed = False

    async def _open(self) -> None:
        raise NotImplementedError

    async def _next(self) -> Event:
        raise NotImplementedError

    async def _close(self) -> None:
        raise NotImplementedError

    async def open(self) -> EventStream:
        if not self._opened:
            self._opened = True
            await self._open()
        return self

    async def aclose(self) -> None:
        if self._opened and not self._closed:
            self._closed = True
            await self._close()

    async def __aenter__(self) -> EventStream:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        if self._closed:
            raise StopAsyncIteration
        await self.open()
        return await self._next()


class Transport(Protocol):
    """How :class:`~engram_client.EngramClient` reaches Engram. Inputs are
    validated models already; failures raise :mod:`engram_client.errors`."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def create_space(self, body: CreateSpace) -> SpaceRecord: ...

    async def spaces(self) -> builtins.list[SpaceRecord]: ...

    async def get_space(self, space: str) -> SpaceInfo: ...

    async def delete_space(self, space: str) -> None: ...

    async def remember(
        self, space: str, memories: builtins.list[MemoryIn], idempotency_key: str | None
    ) -> Written: ...

    async def forget(self, space: str, memory_id: str) -> int: ...

    async def forget_many(
        self, space: str, memory_ids: builtins.list[str], idempotency_key: str | None
    ) -> int: ...

    async def link(self, space: str, body: LinkIn) -> int: ...

    async def recall(self, space: str, request: RecallRequest) -> RecallResponse: ...

    async def get(self, space: str, memory_id: str, include_embedding: bool) -> Memory: ...

    async def list(self, space: str, request: ListRequest) -> ListResponse: ...

    def events(
        self, space: str, kinds: builtins.list[str], last_event_id: int | None
    ) -> EventStream: ...
