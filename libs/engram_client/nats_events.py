"""A space's events over NATS for a client connected with an API key.

A key's NATS user may create a consumer on ``ENGRAM_EVENTS`` only through the
create call whose subject names the filter
(``$JS.API.CONSUMER.CREATE.ENGRAM_EVENTS.<name>.spaces.<id>.evt.>``), and may
neither look at the stream nor delete consumers. nats-py's ordered consumer
re-creates its consumer under the same name after a gap, which the server
refuses, so this stream does what an ordered consumer does by hand: a push
consumer (no acks, flow control, heartbeats, dropped by the server once
nobody reads it), a new one with a new name from the next sequence whenever a
delivery is missing or the heartbeats stop. Where the first consumer starts
(its ``delivered.stream_seq``) tells whether events after ``last_event_id``
are gone (a ``gap`` event first), as the stream's first sequence does for the
unkeyed client.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import TYPE_CHECKING, Any

import nats.errors
import nats.js.errors
from nats.js import api

from engram_client.base import Event, EventStream, parse_event
from engram_client.errors import Unavailable
from engram_contract.messages import EventsGap
from engram_nats.streams import EVENTS_STREAM

if TYPE_CHECKING:
    from engram_client.nats_transport import NatsTransport

#: seconds between the server's heartbeats; three missed ones start a new consumer
HEARTBEAT_S = 2.0
INACTIVE_S = 30.0


class KeyEventStream(EventStream):
    """``spaces.<id>.evt.>`` (the kinds asked for are picked out here)."""

    def __init__(
        self, transport: NatsTransport, space: str, kinds: list[str], after: int | None
    ) -> None:
        self._transport = transport
        self._space = space
        self._kinds = set(kinds)
        self._after = after
        self._sub: Any = None
        self._last = 0  # the last stream sequence delivered
        self._dseq = 0  # the last consumer sequence delivered
        self._gap: Event | None = None
        self._from: int | None = None

    def _resume_at(self) -> int | None:
        return self._last + 1 if self._last else self._from

    async def _open(self) -> None:
        await self._transport.service.spaces.for_read(self._space)
        self._from = None if self._after is None else self._after + 1
        first = await self._consume(self._from)
        if self._after is not None and first > self._after + 1:
            gap = EventsGap(space=self._space, after=self._after, first_kept=first)
            self._gap = Event(self._after, "gap", gap)

    async def _consume(self, start: int | None) -> int:
        """Subscribe a new consumer from stream sequence ``start`` (None: new
        events only); where it starts."""
        nc, js = self._transport.nc, self._transport.js
        await self._unsubscribe()
        inbox = nc.new_inbox()
        self._sub = await nc.subscribe(inbox)
        config = api.ConsumerConfig(
            name=f"sdk-{secrets.token_hex(8)}",
            filter_subject=f"spaces.{self._space}.evt.>",
            deliver_subject=inbox,
            ack_policy=api.AckPolicy.NONE,
            max_deliver=1,
            flow_control=True,
            idle_heartbeat=HEARTBEAT_S,
            inactive_threshold=INACTIVE_S,
            mem_storage=True,
            num_replicas=1,
        )
        if start is None:
            config.deliver_policy = api.DeliverPolicy.NEW
        else:
            config.deliver_policy = api.DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = start
        try:
            info = await js.add_consumer(EVENTS_STREAM, config)
        except nats.js.errors.NotFoundError:
            raise Unavailable(
                503,
                "Events unavailable",
                "the events stream does not exist yet (a gateway makes it)",
            ) from None
        self._dseq = 0
        delivered = info.delivered.stream_seq if info.delivered is not None else 0
        return int(delivered or 0) + 1

    async def _next(self) -> Event:
        if self._gap is not None:
            gap, self._gap = self._gap, None
            return gap
        quiet = 0.0
        while True:
            sub = self._sub
            if sub is None:
                raise StopAsyncIteration
            try:
                msg = await sub.next_msg(timeout=1.0)
            except nats.errors.TimeoutError:
                quiet += 1.0
                if quiet >= 3 * HEARTBEAT_S:  # the consumer is gone (a NATS restart)
                    await self._consume(self._resume_at())
                    quiet = 0.0
                continue
            except nats.errors.ConnectionClosedError:
                raise StopAsyncIteration from None
            quiet = 0.0
            if not msg.data and msg.headers and msg.headers.get("Status") == "100":
                if msg.reply:  # flow control: answer it, or the server stops sending
                    await self._transport.nc.publish(msg.reply, b"")
                continue
            try:
                meta = msg.metadata
            except nats.errors.NotJSMessageError:
                continue
            if meta.sequence.consumer != self._dseq + 1:  # one went missing: start again
                await self._consume(self._resume_at())
                continue
            self._dseq = meta.sequence.consumer
            self._last = meta.sequence.stream
            kind = msg.subject.rpartition(".")[2]
            if self._kinds and kind not in self._kinds:
                continue
            event = parse_event(self._last, kind, msg.data)
            if event is not None:
                return event

    async def _unsubscribe(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _close(self) -> None:
        # the consumer itself goes INACTIVE_S after its last reader (a key may not delete it)
        await self._unsubscribe()
        await asyncio.sleep(0)
