"""Server-sent events per space, through a real uvicorn with httpx streaming."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from nats.aio.client import Client as Nats

from engram_gateway import events as gateway_events
from engram_nats.streams import EVENTS_STREAM, ensure_events_stream


@dataclass
class Sse:
    id: str
    event: str
    data: dict[str, Any]


@dataclass
class Feed:
    """The SSE messages of one open response, read in the background."""

    queue: asyncio.Queue[Sse] = field(default_factory=asyncio.Queue)
    comments: list[str] = field(default_factory=list)
    #: ``gap`` messages, kept aside: a stream resumed from an id before the oldest
    #: event kept starts with one (spaces deleted by other tests purge theirs)
    gaps: list[Sse] = field(default_factory=list)

    async def next(self, timeout: float = 10.0) -> Sse:
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def take(self, n: int, timeout: float = 10.0) -> list[Sse]:
        return [await self.next(timeout) for _ in range(n)]


async def _read(response: httpx.Response, feed: Feed) -> None:
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line.startswith(":"):
            feed.comments.append(line[1:].strip())
        elif line == "":
            if "data" in fields:
                sse = Sse(fields.get("id", ""), fields.get("event", ""), json.loads(fields["data"]))
                if sse.event == "gap":
                    feed.gaps.append(sse)
                else:
                    feed.queue.put_nowait(sse)
            fields = {}
        else:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


@contextlib.asynccontextmanager
async def events(
    client: httpx.AsyncClient, space: str, headers: dict[str, str] | None = None, **params: str
) -> AsyncIterator[Feed]:
    """Open the space's event stream; it is subscribed once this yields."""
    async with client.stream(
        "GET", f"/api/v1/spaces/{space}/events", params=params, headers=headers
    ) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        feed = Feed()
        reader = asyncio.create_task(_read(response, feed))
        try:
            yield feed
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await reader


async def remember(client: httpx.AsyncClient, space: str, memory_id: str) -> None:
    r = await client.post(
        f"/api/v1/spaces/{space}/memories", json={"id": memory_id, "content": f"about {memory_id}"}
    )
    assert r.status_code in (200, 201, 202), r.text


async def settled(client: httpx.AsyncClient, space: str, memory_id: str) -> None:
    """Write a memory and wait for its event: the worker announces a write after
    the PubAck, so a stream opened right after a plain write could still see it."""
    await remember(client, space, memory_id)
    async with events(client, space, last_event_id="0") as feed:
        while (await feed.next()).data["memory_id"] != memory_id:
            pass


async def consumers(nc: Nats) -> int:
    info = await nc.jetstream().stream_info(EVENTS_STREAM)
    return int(info.state.consumer_count)


async def test_a_space_sees_only_its_own_events(client: httpx.AsyncClient, new_space: Any) -> None:
    alpha, beta = new_space("alpha"), new_space("beta")
    await settled(client, alpha, "a-0")
    await settled(client, beta, "b-0")
    async with events(client, alpha) as feed:
        ids = [f"a-{i}" for i in range(1, 6)]
        await asyncio.gather(
            *(remember(client, alpha, m) for m in ids),
            *(remember(client, beta, f"b-{i}") for i in range(1, 6)),
        )
        got = await feed.take(5)
        assert {e.data["memory_id"] for e in got} == set(ids)  # not a-0: new events only
        assert {e.event for e in got} == {"stored"}
        assert {e.data["space"] for e in got} == {alpha}
        seqs = [int(e.id) for e in got]
        assert seqs == sorted(seqs)
        # beta's events, written at the same time, never arrive: once they are all in
        # the events stream (beta's later write is announced) and an alpha event
        # written after them has come, the feed, read in stream order, holds no more
        await settled(client, beta, "b-6")
        await remember(client, alpha, "a-6")
        assert (await feed.next()).data["memory_id"] == "a-6"
        assert feed.queue.empty()


async def test_types_filters_the_kinds(client: httpx.AsyncClient, space_id: str) -> None:
    await settled(client, space_id, "keep")
    async with events(client, space_id, types="forgotten") as feed:
        await remember(client, space_id, "gone")
        r = await client.delete(f"/api/v1/spaces/{space_id}/memories/gone")
        assert r.status_code == 202
        got = await feed.next()
        assert (got.event, got.data["memory_id"]) == ("forgotten", "gone")
        await remember(client, space_id, "later")
        # its ``stored`` event is filtered out: the next one the feed gets is the
        # ``forgotten`` written after it
        r = await client.delete(f"/api/v1/spaces/{space_id}/memories/later")
        assert r.status_code == 202
        got = await feed.next()
        assert (got.event, got.data["memory_id"]) == ("forgotten", "later")
        assert feed.queue.empty()


async def test_resume_with_last_event_id(client: httpx.AsyncClient, space_id: str) -> None:
    await settled(client, space_id, "m-0")
    async with events(client, space_id) as feed:
        for m in ("m-1", "m-2"):
            await remember(client, space_id, m)
        seen = await feed.take(2)
    assert [e.data["memory_id"] for e in seen] == ["m-1", "m-2"]

    # written while disconnected
    for m in ("m-3", "m-4", "m-5"):
        await remember(client, space_id, m)

    async with events(client, space_id, headers={"Last-Event-ID": seen[-1].id}) as feed:
        missed = await feed.take(3)
        assert [e.data["memory_id"] for e in missed] == ["m-3", "m-4", "m-5"]
        await remember(client, space_id, "m-6")
        assert (await feed.next()).data["memory_id"] == "m-6"
        assert feed.queue.empty()

    # the query parameter does the same
    async with events(client, space_id, last_event_id=missed[0].id) as feed:
        assert [e.data["memory_id"] for e in await feed.take(3)] == ["m-4", "m-5", "m-6"]


async def consumer_count_becomes(nc: Nats, n: int) -> None:
    for _ in range(100):
        if await consumers(nc) == n:
            return
        await asyncio.sleep(0.05)
    assert await consumers(nc) == n


async def test_disconnect_frees_the_consumer(
    client: httpx.AsyncClient, nc: Nats, space_id: str
) -> None:
    before = await consumers(nc)
    await settled(client, space_id, "x")  # opens and closes a stream
    await consumer_count_becomes(nc, before)
    async with events(client, space_id) as feed:
        assert await consumers(nc) == before + 1
        await remember(client, space_id, "y")
        assert (await feed.next()).data["memory_id"] == "y"
    await consumer_count_becomes(nc, before)


async def test_unknown_space_is_404(client: httpx.AsyncClient, space_id: str) -> None:
    r = await client.get(f"/api/v1/spaces/{space_id}/events")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_unknown_type_is_400(client: httpx.AsyncClient, space_id: str) -> None:
    await remember(client, space_id, "x")
    r = await client.get(f"/api/v1/spaces/{space_id}/events", params={"types": "stored,nope"})
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "nope" in r.json()["detail"]


async def test_idle_stream_sends_keep_alive_comments(
    client: httpx.AsyncClient, space_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gateway_events, "HEARTBEAT_S", 0.1)
    await remember(client, space_id, "x")
    async with events(client, space_id) as feed:
        for _ in range(200):  # one every 0.1 s now: poll (≤ 10 s) until it has come
            if "keep-alive" in feed.comments:
                break
            await asyncio.sleep(0.05)
        assert "keep-alive" in feed.comments


async def test_the_events_stream_is_set_up_idempotently(nc: Nats) -> None:
    js = nc.jetstream()
    await ensure_events_stream(js, max_age=3600)
    await ensure_events_stream(js, max_age=3600)
    try:
        await ensure_events_stream(js, max_age=1800)  # another setting: updated
        info = await js.stream_info(EVENTS_STREAM)
        assert info.config.max_age == 1800
        assert info.config.subjects == ["spaces.*.evt.>"]
    finally:
        await ensure_events_stream(js, max_age=3600)


async def test_deleting_a_space_drops_its_events(
    client: httpx.AsyncClient, nc: Nats, new_space: Any
) -> None:
    gone, kept = new_space("gone"), new_space("kept")
    await settled(client, gone, "g-0")
    await settled(client, kept, "k-0")

    async def count(space: str) -> int:
        subject = f"spaces.{space}.evt.>"
        info = await nc.jetstream().stream_info(EVENTS_STREAM, subjects_filter=subject)
        return sum((info.state.subjects or {}).values())

    assert await count(gone) >= 1
    r = await client.delete(f"/api/v1/spaces/{gone}")
    assert r.status_code in (202, 204), r.text
    for _ in range(100):
        if await count(gone) == 0:
            break
        await asyncio.sleep(0.05)
    assert await count(gone) == 0
    assert await count(kept) >= 1
    # a space created again under the name starts without the old events
    await settled(client, gone, "g-new")
    async with events(client, gone, last_event_id="0") as feed:
        assert (await feed.next()).data["memory_id"] == "g-new"


async def test_resuming_after_expired_events_announces_the_gap(
    client: httpx.AsyncClient, nc: Nats, space_id: str
) -> None:
    """Events older than ENGRAM_EVENTS_MAX_AGE are gone: a client resuming from
    before them is told, rather than silently missing what it never saw."""
    await settled(client, space_id, "m-0")
    async with events(client, space_id) as feed:
        for m in ("m-1", "m-2", "m-3"):
            await remember(client, space_id, m)
        first, _, third = await feed.take(3)
    # what max_age does with time: everything before m-3's event leaves the stream
    await nc.jetstream().purge_stream(EVENTS_STREAM, seq=int(third.id))
    async with events(client, space_id, headers={"Last-Event-ID": first.id}) as feed:
        assert (await feed.next()).data["memory_id"] == "m-3"
        [gap] = feed.gaps  # it came first
        assert gap.data == {"space": space_id, "after": int(first.id), "first_kept": int(third.id)}
        assert gap.id == ""  # no id: the client's Last-Event-ID stays its last real event
    # resuming from an event still kept: no gap
    async with events(client, space_id, headers={"Last-Event-ID": third.id}) as feed:
        await remember(client, space_id, "m-4")
        got = await feed.next()
        assert (got.event, got.data["memory_id"]) == ("stored", "m-4")
        assert feed.gaps == []
