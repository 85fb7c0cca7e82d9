"""Server-sent events of one space, read from the ``ENGRAM_EVENTS`` stream.

Each SSE message's ``id`` is the event's sequence in that stream, so a client
that reconnects with ``Last-Event-ID`` resumes right after the last event it saw
(as long as the stream still keeps it: ``ENGRAM_EVENTS_MAX_AGE``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from typing import get_args

import anyio
import nats.errors
import nats.js.errors
from litestar.response import ServerSentEventMessage
from nats.js import JetStreamContext, api

from engram_contract.errors import error_for
from engram_contract.messages import EventsGap
from engram_contract.subjects import EventKind
from engram_nats.consumers import close_consumer
from engram_nats.streams import EVENTS_STREAM

log = logging.getLogger(__name__)

EVENT_KINDS: tuple[str, ...] = get_args(EventKind)
#: Seconds between keep-alive comments on an idle stream (proxies close silent ones).
HEARTBEAT_S = 15.0
#: The server drops a consumer nobody listens to after this long (a backstop: the
#: feed deletes its consumer when the client goes away).
INACTIVE_S = 30.0


def parse_types(raw: str | None) -> list[str]:
    """``?types=stored,forgotten`` → the kinds asked for (all when absent); 400 on
    an unknown one."""
    if raw is None or not raw.strip():
        return []
    kinds = [k.strip() for k in raw.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in EVENT_KINDS]
    if unknown:
        raise error_for(
            400,
            "Invalid event type",
            f"unknown event type(s) {', '.join(map(repr, unknown))}",
            slug="invalid-event-type",
            hint=f"Use a comma-separated subset of: {', '.join(EVENT_KINDS)}.",
        )
    return list(dict.fromkeys(kinds))


def parse_last_event_id(raw: str | None) -> int | None:
    """The ``Last-Event-ID`` (header or ``?last_event_id=``): an events stream seq."""
    if raw is None or not raw.strip():
        return None
    try:
        seq = int(raw.strip())
    except ValueError:
        seq = -1
    if seq < 0:
        raise error_for(
            400,
            "Invalid Last-Event-ID",
            f"Last-Event-ID {raw!r} is not an event id",
            slug="invalid-last-event-id",
            hint="Send the id of the last event received, or no Last-Event-ID for new events.",
        )
    return seq


def event_filters(space: str, kinds: Sequence[str]) -> list[str]:
    if not kinds:
        return [f"spaces.{space}.evt.>"]
    return [f"spaces.{space}.evt.{kind}" for kind in kinds]


class EventFeed:
    """One client's ordered, ephemeral consumer of a space's events.

    :meth:`open` creates the consumer (so events published after it returns are
    delivered); iterating yields SSE messages; :meth:`close` (idempotent) deletes
    the consumer, and runs when the client disconnects.
    """

    def __init__(
        self,
        js: JetStreamContext,
        space: str,
        kinds: Sequence[str],
        after: int | None,
        heartbeat: float | None = None,
    ) -> None:
        self._js = js
        self.space = space
        self.filters = event_filters(space, kinds)
        self.after = after
        self.heartbeat = HEARTBEAT_S if heartbeat is None else heartbeat
        self._sub: nats.js.JetStreamContext.PushSubscription | None = None
        #: (the client's last event id, the oldest id the stream still keeps) when
        #: events in between are gone
        self.gap: tuple[int, int] | None = None

    async def open(self) -> None:
        config = api.ConsumerConfig(
            filter_subjects=self.filters,
            inactive_threshold=INACTIVE_S,
        )
        if self.after is None:
            config.deliver_policy = api.DeliverPolicy.NEW
        else:
            config.deliver_policy = api.DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = self.after + 1
            first = (await self._js.stream_info(EVENTS_STREAM)).state.first_seq
            if first > self.after + 1:
                # events after the client's last one have expired (max_age) or been
                # purged: it may have missed some and should re-read the state
                self.gap = (self.after, first)
        self._sub = await self._js.subscribe(
            self.filters[0], stream=EVENTS_STREAM, config=config, ordered_consumer=True
        )

    async def close(self) -> None:
        sub, self._sub = self._sub, None
        if sub is None:
            return
        await close_consumer(self._js, EVENTS_STREAM, sub)

    async def events(self) -> AsyncIterator[tuple[int | None, str, bytes] | None]:
        """``(id, kind, data)`` of each event (SSE and gRPC): first a ``gap`` (id
        ``None``) when events the client asked for are gone; ``None`` each
        ``heartbeat`` seconds without one."""
        if self.gap is not None:
            after, first = self.gap
            gap = EventsGap(space=self.space, after=after, first_kept=first)
            yield None, "gap", gap.model_dump_json().encode()
        while (sub := self._sub) is not None:
            try:
                msg = await sub.next_msg(timeout=self.heartbeat)
            except nats.errors.TimeoutError:
                yield None
                continue
            try:
                seq = msg.metadata.sequence.stream
            except nats.errors.NotJSMessageError:
                continue  # a control message
            yield seq, msg.subject.rpartition(".")[2], msg.data

    async def messages(self) -> AsyncIterator[ServerSentEventMessage]:
        try:
            async for event in self.events():
                if event is None:
                    yield ServerSentEventMessage(data=None, comment="keep-alive")
                    continue
                seq, kind, data = event
                yield ServerSentEventMessage(
                    data=data.decode(), event=kind, id=None if seq is None else str(seq)
                )
        finally:
            # the client went away: the response's cancel scope is cancelled, so
            # shield the clean-up from it
            with anyio.CancelScope(shield=True):
                await self.close()
