"""Reinforcement: a recall counts for the memories it returns (through the WAL, so
the count survives restarts), and a recalled memory decays more slowly."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest
from nats.aio.client import Client as Nats

from engram_worker.snapshots import SnapshotStore
from tests.helpers import (
    NO_DERIVED_LINKS,
    NatsServer,
    basis,
    create_space_over_http,
    eventually,
    gateway_settings,
    result_ids,
    running_gateway,
    store_vectors,
)

Client = httpx.AsyncClient


async def recall(client: Client, space: str, cue: list[float], **extra: Any) -> list[Any]:
    body = {"embedding": cue, "k": 1, **extra}
    r = await client.post(f"/api/v1/spaces/{space}/recall", json=body)
    assert r.status_code == 200, r.text
    results: list[Any] = r.json()["results"]
    return results


async def memory(client: Client, space: str, memory_id: str) -> dict[str, Any]:
    r = await client.get(f"/api/v1/spaces/{space}/memories/{memory_id}")
    assert r.status_code == 200, r.text
    found: dict[str, Any] = r.json()
    return found


async def recalled(client: Client, space: str, memory_id: str, times: int) -> dict[str, Any]:
    """The memory once it counts ``times`` recalls (reinforcement is written ~0.25 s
    after the recall)."""

    async def probe() -> dict[str, Any] | None:
        got = await memory(client, space, memory_id)
        assert got["recalls"] <= times, got
        return got if got["recalls"] == times else None

    return await eventually(probe)


async def test_recall_counts_for_the_memories_it_returns(client: Client, space_id: str) -> None:
    await create_space_over_http(client, space_id, links=NO_DERIVED_LINKS)
    await store_vectors(client, space_id, {"a": basis(0), "b": basis(1)})
    fresh = await memory(client, space_id, "a")
    assert (fresh["recalls"], fresh["last_recall"], fresh["kind"]) == (0, None, "episodic")

    assert result_ids(await recall(client, space_id, basis(0))) == ["a"]
    a = await recalled(client, space_id, "a", 1)
    assert datetime.fromisoformat(a["last_recall"]) >= datetime.fromisoformat(a["created_at"])

    # a recall with "reinforce": false counts for nothing: b's recall below is made
    # before a's second one, whose reinforcement is written after b's would have been
    assert result_ids(await recall(client, space_id, basis(1), reinforce=False)) == ["b"]
    assert result_ids(await recall(client, space_id, basis(0), mode="similarity")) == ["a"]
    again = await recalled(client, space_id, "a", 2)
    assert again["last_recall"] >= a["last_recall"]
    b = await memory(client, space_id, "b")
    assert (b["recalls"], b["last_recall"]) == (0, None)


async def test_recalls_in_one_moment_count_once_each(client: Client, space_id: str) -> None:
    # recalls within the batching delay are written as one command: every memory
    # returned counts, each recall once
    await create_space_over_http(client, space_id, links=NO_DERIVED_LINKS)
    await store_vectors(client, space_id, {f"m{i}": basis(i) for i in range(4)})
    for i in range(4):
        assert result_ids(await recall(client, space_id, basis(i), mode="similarity")) == [f"m{i}"]
    for i in range(4):
        await recalled(client, space_id, f"m{i}", 1)


async def test_the_recall_count_survives_worker_restarts(
    nats_server: NatsServer, nc: Nats, workers: Any, space_id: str
) -> None:
    first = await workers()
    async with running_gateway(gateway_settings(nats_server.url)) as client:
        await create_space_over_http(client, space_id, links=NO_DERIVED_LINKS)
        await store_vectors(client, space_id, {"a": basis(0), "b": basis(1)})
        await recall(client, space_id, basis(0))
        before = await recalled(client, space_id, "a", 1)
        await first.stop()  # graceful: writes a snapshot

        second = await workers()
        assert await memory(client, space_id, "a") == before
        assert second.hosts[space_id].snapshotter.recovery.startswith("restored from snapshot")
        await second.stop()

        snapshots = SnapshotStore(nc.jetstream())
        await snapshots.open()
        await snapshots.erase(space_id)
        third = await workers()
        assert await memory(client, space_id, "a") == before
        assert "replayed the WAL" in third.hosts[space_id].snapshotter.recovery
        assert (await memory(client, space_id, "b"))["recalls"] == 0


async def test_a_recalled_memory_decays_more_slowly(client: Client, space_id: str) -> None:
    # fast half-life 1 s until recalled once, then 1000 s
    decay = {"fast_half_life_s": 1, "slow_half_life_s": 1000, "settle_after": 1}
    await create_space_over_http(client, space_id, links=NO_DERIVED_LINKS, decay=decay)
    await store_vectors(client, space_id, {"a": basis(0)})
    r = await client.get(f"/api/v1/spaces/{space_id}")
    assert r.json()["decay"] == {**decay, "fast_half_life_s": 1.0, "slow_half_life_s": 1000.0}

    async def faded() -> dict[str, Any] | None:
        (result,) = await recall(client, space_id, basis(0), reinforce=False)
        return result if result["retention"] < 0.7 else None

    old = await eventually(faded)  # ~0.5 s after it was stored
    assert old["memory"]["recalls"] == 0
    assert old["confidence"] == pytest.approx(0.7 * old["retention"], rel=1e-4)
    assert old["score"] == pytest.approx(old["activation"] * old["confidence"], rel=1e-4)

    await recall(client, space_id, basis(0))  # reinforces
    await recalled(client, space_id, "a", 1)
    (now,) = await recall(client, space_id, basis(0), reinforce=False)
    assert now["retention"] > 0.99 > old["retention"]
    assert now["score"] > old["score"]
    assert now["confidence"] <= now["memory"]["confidence"]  # decay never raises it


async def test_recall_bookkeeping_alone_does_not_snapshot_every_interval(
    nats_server: NatsServer, workers: Any, space_id: str
) -> None:
    """A snapshot of a big space holds up its queries for a moment: a space that only
    recalls (reinforce commands) is snapshotted ten intervals apart, one whose
    memories change at the usual interval."""
    interval = 0.3
    w = await workers(snapshot_interval=interval)
    async with running_gateway(gateway_settings(nats_server.url)) as client:
        await create_space_over_http(client, space_id, links=NO_DERIVED_LINKS)
        await store_vectors(client, space_id, {"a": basis(0), "b": basis(1)})
        await recall(client, space_id, basis(1), reinforce=False)  # hosted and caught up
        host = w.hosts[space_id]

        async def snapshotted(seq: int) -> int | None:
            return host.snapshotter.snapshot_seq if host.snapshotter.snapshot_seq >= seq else None

        first = await eventually(lambda: snapshotted(host.state.applied_seq))
        await recall(client, space_id, basis(0))
        await recalled(client, space_id, "a", 1)
        reinforced = host.state.applied_seq
        assert reinforced > first
        # the signal that time passed on this worker: another space, whose memories
        # change, is snapshotted three times meanwhile (a content change is due an
        # interval after the last snapshot, or after hosting), so >= 3 intervals pass
        # (and fewer than the 10 a reinforce-only change waits)
        clock = f"{space_id}-clock"
        await create_space_over_http(client, clock, links=NO_DERIVED_LINKS)
        for n in range(3):
            seq = await store_vectors(client, clock, {f"x{n}": basis(n)})

            async def clock_snapshotted(seq: int = seq) -> int | None:
                other = w.hosts.get(clock)
                return (
                    other.snapshotter.snapshot_seq
                    if other and other.snapshotter.snapshot_seq >= seq
                    else None
                )

            await eventually(clock_snapshotted)
        assert host.snapshotter.snapshot_seq == first  # the reinforce waits
        await store_vectors(client, space_id, {"c": basis(2)})
        assert await eventually(lambda: snapshotted(reinforced + 1)) > reinforced
