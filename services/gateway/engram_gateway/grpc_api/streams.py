"""The streaming methods of ``engram.v1.MemoryService``: ``Export`` (server
stream), ``Import`` (client stream) and ``StreamEvents`` (server stream), on the
code the HTTP export, import and SSE routes use."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from google.protobuf.message import Message

from engram_gateway.events import EventFeed, parse_last_event_id, parse_types
from engram_gateway.grpc_api.calls import Call, Spec
from engram_gateway.transfer import checked_import_key, checked_tags, open_export, run_import
from engram_proto.convert import to_doc, to_message
from engram_proto.v1 import events_pb2 as e
from engram_proto.v1 import queries_pb2 as q
from engram_proto.v1 import service_pb2 as s
from engram_proto.v1 import transfer_pb2 as t

# -- export -------------------------------------------------------------------


async def export(call: Call, request: s.ExportSpaceRequest) -> AsyncIterator[Message]:
    """The header, each memory, the end; an error part-way ends the call with its
    status (the items before it were sent: an import of them is refused, for it
    has no end)."""
    tags = checked_tags(list(request.tags), "tags")
    running = await open_export(call.bridge, call.space, tags)
    header = running.header.model_dump(mode="json")
    yield s.ExportItem(header=to_message(t.ExportHeader, header))
    async for page in running.pages():
        for memory in page:
            yield s.ExportItem(memory=to_message(q.ExportedMemory, memory))
    yield s.ExportItem(end=to_message(t.ExportEnd, running.end().model_dump()))


# -- import -------------------------------------------------------------------


def _line(item: s.ExportItem) -> bytes:
    """An export item as the line of an NDJSON export holding it."""
    which = item.WhichOneof("item")
    if which == "header":
        doc = to_doc(item.header)
    elif which == "memory":
        doc = to_doc(item.memory)
    elif which == "end":
        doc = {"end": to_doc(item.end)}
    else:
        return b""  # an empty item, as a blank line
    return json.dumps(doc, separators=(",", ":")).encode()


async def import_space(
    call: Call, first: s.ImportRequest | None, rest: AsyncIterator[s.ImportRequest]
) -> t.ImportResult:
    """Validate every item (``line N`` in errors is the Nth message), then write."""
    create = first is not None and first.create
    key = (
        checked_import_key(first.idempotency_key, "idempotency_key")
        if first is not None and first.HasField("idempotency_key")
        else None
    )

    async def chunks() -> AsyncIterator[list[tuple[int, bytes]]]:
        if first is None:
            return
        n, chunk = 1, [(1, _line(first.item))]
        async for request in rest:
            n += 1
            chunk.append((n, _line(request.item)))
            if len(chunk) >= 256:
                yield chunk
                chunk = []
        yield chunk

    result = await run_import(call.bridge, call.space, create, key, chunks())
    return to_message(t.ImportResult, result.model_dump(mode="json"))


# -- events -------------------------------------------------------------------

#: the message of each event kind (the ``Event.data`` member of that name)
EVENT_MESSAGES: dict[str, type[Message]] = {
    "stored": e.MemoryStored,
    "forgotten": e.MemoryForgotten,
    "linked": e.MemoriesLinked,
    "activated": e.MemoriesActivated,
    "consolidated": e.MemoriesConsolidated,
    "rejected": e.MessageRejected,
    "gap": e.EventsGap,
}


async def stream_events(call: Call, request: s.StreamEventsRequest) -> AsyncIterator[Message]:
    """New events of the space (or those after ``last_event_id``), in order; a
    ``gap`` first when some after it are gone (its ``id``: that last event id)."""
    kinds = parse_types(",".join(request.types))
    after = (
        parse_last_event_id(str(request.last_event_id))
        if request.HasField("last_event_id")
        else None
    )
    await call.bridge.spaces.for_read(call.space)
    feed = EventFeed(call.bridge.js, call.space, kinds, after)
    await feed.open()
    try:
        # the headers go out once the consumer is open: a client that has them sees
        # every later event (as SSE's response headers say)
        await call.context.send_initial_metadata((("engram-events", "open"),))
        async for event in feed.events():
            if event is None:
                continue  # idle: HTTP/2 keeps the connection alive
            seq, kind, data = event
            known = EVENT_MESSAGES.get(kind)
            if known is None:
                continue
            doc: dict[str, Any] = json.loads(data)
            if seq is None:  # the gap: resuming from it again is what was asked
                seq = int(doc["after"])
            answer = s.Event(id=seq, kind=kind)
            getattr(answer, kind).CopyFrom(to_message(known, doc))
            yield answer
    finally:
        await feed.close()


SERVER_STREAMS: dict[str, tuple[Spec, Any]] = {
    "Export": (Spec(s.ExportSpaceRequest, "read"), export),
    "StreamEvents": (Spec(s.StreamEventsRequest, "read"), stream_events),
}
CLIENT_STREAMS: dict[str, tuple[Spec, Any]] = {
    "Import": (Spec(s.ImportRequest, "write"), import_space),
}
