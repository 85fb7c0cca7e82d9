"""Events: a space's events as server-sent events."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, get
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import State
from litestar.params import FromPath, QueryParameter
from litestar.response import ServerSentEvent

from engram_gateway.answers import TEXT
from engram_gateway.auth import READ
from engram_gateway.events import EVENT_KINDS, EventFeed, parse_last_event_id, parse_types
from engram_gateway.openapi import Content, api
from engram_gateway.openapi_rules import Header
from engram_gateway.routes.common import bridge_of
from engram_gateway.spaces import resolve_space


@get(
    "/api/v1/spaces/{space:str}/events",
    tags=["events"],
    summary="The space's events as server-sent events",
    description="A `text/event-stream` of this space's events only: `id` is the event's "
    "sequence in the events stream, `event` its kind, `data` the event JSON. New events "
    "only, unless `Last-Event-ID` (header or `?last_event_id=`) asks to resume after that "
    "id. A `: keep-alive` comment is sent every 15 s while idle.",
    opt=READ
    | api(
        {200: Content(TEXT, "text/event-stream", description="Until the client disconnects.")},
        errors=[400, 404, 503],
        headers=[
            Header(
                "Last-Event-ID",
                {"type": "string", "pattern": "^[0-9]+$"},
                "Resume after this event id (before `?last_event_id=`).",
            )
        ],
    ),
)
async def space_events(
    space: FromPath[str],
    request: Request[Any, Any, Any],
    state: State,
    types: Annotated[
        str | None,
        QueryParameter(description=f"Comma-separated kinds: {', '.join(EVENT_KINDS)}."),
    ] = None,
    last_event_id: Annotated[
        str | None, QueryParameter(description="Resume after this event id.")
    ] = None,
) -> ServerSentEvent:
    bridge = bridge_of(state)
    space = resolve_space(request, space)
    kinds = parse_types(types)
    after = parse_last_event_id(request.headers.get("last-event-id", last_event_id))
    await bridge.spaces.for_read(space)
    feed = EventFeed(bridge.js, space, kinds, after)
    await feed.open()  # before the headers go out: a client sees every later event
    return ServerSentEvent(
        feed.messages(),
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        # runs after the response, however it ended: the consumer never outlives it
        background=BackgroundTask(feed.close),
    )


ROUTES = [space_events]
