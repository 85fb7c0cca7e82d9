"""Membership over a real JetStream KV: workers join, leave, die and are seen to
by every watcher; an id held by a live process cannot be taken."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js.kv import KeyValue

from engram_nats.connection import connect
from engram_nats.membership import Membership, WorkerIdTaken
from tests.helpers import NatsServer, eventually

TTL = 0.6


@pytest.fixture
def bucket() -> str:
    return f"TEST_WORKERS_{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def members(nc: Client, bucket: str) -> AsyncIterator[Callable[[], Membership]]:
    made: list[Membership] = []

    def make() -> Membership:
        m = Membership(nc.jetstream(), ttl=TTL, bucket=bucket)
        made.append(m)
        return m

    yield make
    for m in made:
        await m.close()


async def _until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async def probe() -> bool | None:
        return True if predicate() else None

    await eventually(probe, timeout)


async def test_watchers_see_joins_and_graceful_leaves(
    members: Callable[[], Membership],
) -> None:
    gateway = members()
    await gateway.start()
    changes: list[frozenset[str]] = []

    async def record(live: frozenset[str]) -> None:
        changes.append(live)

    gateway.on_change(record)
    a, b = members(), members()
    await a.start()
    await a.announce("worker-a")
    await b.start()
    await b.announce("worker-b")
    await _until(lambda: gateway.live() == {"worker-a", "worker-b"})
    assert b.live() == {"worker-a", "worker-b"}
    # beats keep them alive past the TTL
    await asyncio.sleep(TTL * 2)
    assert gateway.live() == {"worker-a", "worker-b"}
    await a.leave()
    await _until(lambda: gateway.live() == {"worker-b"}, timeout=TTL)  # at once, no TTL wait
    assert a.live() == {"worker-b"}
    assert changes[-1] == {"worker-b"}
    await asyncio.sleep(TTL * 1.5)  # leaving, it stops beating: still not alive
    assert "worker-a" not in gateway.live()
    await a.depart()
    assert await a.kv.keys() == ["worker-b"]


async def test_a_silent_worker_is_dropped_after_the_ttl(
    members: Callable[[], Membership],
) -> None:
    watcher, dying = members(), members()
    await watcher.start()
    await dying.start()
    await dying.announce("worker-dies")
    await _until(lambda: "worker-dies" in watcher.live())
    await dying.close()  # stops beating without a goodbye, as kill -9 would
    await asyncio.sleep(TTL / 2)
    assert "worker-dies" in watcher.live()
    await _until(lambda: "worker-dies" not in watcher.live(), timeout=TTL * 3)


async def test_a_late_watcher_does_not_revive_a_dead_worker(
    members: Callable[[], Membership],
) -> None:
    dying = members()
    await dying.start()
    await dying.announce("worker-gone")
    await dying.close()
    await asyncio.sleep(TTL * 1.5)
    late = members()
    await late.start()  # its heartbeat is still in the bucket, but old
    assert "worker-gone" not in late.live()


async def test_a_second_process_with_the_same_id_is_refused(
    members: Callable[[], Membership],
) -> None:
    first, second = members(), members()
    await first.start()
    await first.announce("worker-x")
    await second.start()
    with pytest.raises(WorkerIdTaken, match="ENGRAM_WORKER_ID='worker-x' is alive"):
        await second.announce("worker-x")
    assert not first.lost.is_set()
    assert second.live() == {"worker-x"}


async def test_a_restarted_worker_takes_its_id_back_after_the_ttl(
    members: Callable[[], Membership],
) -> None:
    old = members()
    await old.start()
    await old.announce("worker-r")
    await old.close()  # killed
    again = members()
    await again.start()
    await again.announce("worker-r")  # waits out the old beat instead of refusing
    assert "worker-r" in again.live()


async def test_a_takeover_is_noticed_by_the_holder(
    members: Callable[[], Membership], nc: Client, bucket: str
) -> None:
    holder = members()
    await holder.start()
    await holder.announce("worker-t")
    kv: KeyValue = await nc.jetstream().key_value(bucket)
    await kv.put(
        "worker-t",
        b'{"id":"worker-t","instance":"other","started_at":'
        b'"2026-01-01T00:00:00Z","beat_at":"2026-01-01T00:00:00Z"}',
    )
    await asyncio.wait_for(holder.lost.wait(), TTL * 2)
    assert "worker-t" in holder.live()  # the other process holds it now, alive


async def test_a_beat_that_landed_without_its_ack_is_no_takeover(
    members: Callable[[], Membership], nc: Client, bucket: str
) -> None:
    # a busy broker applies a beat but its ack times out: the next beat's expected
    # revision is stale. That is this process's own beat, not another one's (found
    # by ops/bench/cluster.py: all 3 workers gave up their ids during a 1M-memory
    # ingest and never served again)
    holder = members()
    await holder.start()
    await holder.announce("worker-a")
    assert holder.me is not None
    kv: KeyValue = await nc.jetstream().key_value(bucket)
    entry = await kv.get("worker-a")
    await kv.update("worker-a", holder.me.model_dump_json().encode(), last=entry.revision)
    await asyncio.sleep(TTL)  # two or three beats
    assert not holder.lost.is_set()
    later = await kv.get("worker-a")
    assert (later.revision or 0) > (entry.revision or 0) + 1  # it beats on
    assert "worker-a" in holder.live()


async def test_a_key_removed_while_beats_failed_is_claimed_again(
    members: Callable[[], Membership], nc: Client, bucket: str
) -> None:
    # beats that fail for longer than the bucket's max_age let it remove the key;
    # nobody else holds the id, so the worker writes it again and stays live
    holder = members()
    await holder.start()
    await holder.announce("worker-e")
    kv: KeyValue = await nc.jetstream().key_value(bucket)
    await kv.purge("worker-e")
    await asyncio.sleep(TTL)  # two or three beats
    assert not holder.lost.is_set()
    assert (await kv.get("worker-e")).value is not None
    assert "worker-e" in holder.live()


async def test_a_watcher_that_stalls_does_not_declare_live_workers_dead(
    members: Callable[[], Membership],
) -> None:
    watcher, alive = members(), members()
    await watcher.start()
    await alive.start()
    await alive.announce("worker-busy-peer")
    await _until(lambda: "worker-busy-peer" in watcher.live())
    # the whole event loop blocked for longer than the TTL (CPU-bound work in a
    # watcher, e.g. a gateway): the beats sent meanwhile wait in its queue
    time.sleep(TTL * 2)  # noqa: ASYNC251 (the stall is the point)
    for _ in range(20):  # whatever runs first after the stall, in any order
        await asyncio.sleep(0)
        assert "worker-busy-peer" in watcher.live()
    await asyncio.sleep(TTL / 2)
    assert "worker-busy-peer" in watcher.live()


async def test_the_watch_comes_back_after_a_nats_restart(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "store")
    server.start()
    made: list[Membership] = []
    conns: list[Client] = []
    try:

        async def member() -> Membership:
            nc = await connect(server.url, "test")
            conns.append(nc)
            m = Membership(nc.jetstream(), ttl=TTL)
            made.append(m)
            await m.start()
            return m

        watcher, worker = await member(), await member()
        await worker.announce("worker-before")
        await _until(lambda: "worker-before" in watcher.live())
        server.stop(kill=True)
        server.start()  # same port, same store: the watch's consumer is gone
        newcomer = await member()
        await newcomer.announce("worker-after")
        await _until(lambda: watcher.live() >= {"worker-before", "worker-after"}, timeout=15)
        assert worker.live() >= {"worker-before", "worker-after"}
    finally:
        for m in made:
            await m.close()
        for nc in conns:
            await nc.close()
        server.stop()
