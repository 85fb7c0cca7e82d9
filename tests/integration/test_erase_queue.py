"""Forgotten memories' WAL messages are erased by a background queue: a bulk forget
is readable at once (JetStream's secure delete runs at a few hundred a second),
the erases all happen, and erases still queued when a worker stops are listed in
its snapshot and done by the next worker."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from nats.aio.client import Client as Nats

from engram_contract.subjects import stream_name
from engram_worker.worker import Worker
from tests.helpers import NatsServer, gateway_settings, running_gateway

DIM = 8
N = 600  # enough that the erases outlast the reads right after (a few hundred a second)


async def stored_messages(nc: Nats, space: str) -> int:
    info = await nc.jetstream().stream_info(stream_name(space))
    return int(info.state.messages)


async def fill_and_forget(client: httpx.AsyncClient, space: str, create: bool = True) -> int:
    if create:
        r = await client.post("/api/v1/spaces", json={"id": space, "dim": DIM})
        assert r.status_code == 201, r.text
    ids = [f"m{i}" for i in range(N)]
    for start in range(0, N, 1000):
        memories = [
            {"id": m, "content": m, "embedding": [1.0 + (i % 7)] + [0.5] * (DIM - 1)}
            for i, m in enumerate(ids[start : start + 1000], start)
        ]
        r = await client.post(f"/api/v1/spaces/{space}/memories", json={"memories": memories})
        assert r.status_code == 202, r.text
    for start in range(0, N, 1000):
        r = await client.post(
            f"/api/v1/spaces/{space}/forget", json={"ids": ids[start : start + 1000]}
        )
        assert r.status_code == 202, r.text
    seq: int = r.json()["seq"]
    return seq


def erase_pending(worker: Worker, space: str) -> float | None:
    worker.probes.refresh_gauges()
    return worker.metrics.registry.get_sample_value("engram_erase_pending", {"memory_space": space})


async def test_bulk_forget_reads_at_once_and_every_message_is_erased(
    client: httpx.AsyncClient, nc: Nats, worker: Worker, space_id: str
) -> None:
    await fill_and_forget(client, space_id)
    # read-your-writes right after: the fold does not wait for ~3000 secure deletes
    r = await client.get(f"/api/v1/spaces/{space_id}")
    assert r.status_code == 200, r.text
    assert r.json()["memories"] == 0
    r = await client.post(
        f"/api/v1/spaces/{space_id}/recall", json={"embedding": [1.0] * DIM, "k": 5}
    )
    assert r.json()["results"] == []
    backlog = erase_pending(worker, space_id)
    assert backlog is not None and 0 < backlog <= N  # the operators' view of the queue
    # ...and the erases happen: only the forget commands stay in the WAL
    for _ in range(600):
        if await stored_messages(nc, space_id) == N:
            break
        await asyncio.sleep(0.1)
    assert await stored_messages(nc, space_id) == N
    # the last delete's reply may reach the worker a moment after the stream shows it
    for _ in range(50):
        if erase_pending(worker, space_id) == 0:
            break
        await asyncio.sleep(0.02)
    assert erase_pending(worker, space_id) == 0


async def test_erases_left_at_stop_are_done_by_the_next_worker(
    nats_server: NatsServer, nc: Nats, workers: Any, space_id: str
) -> None:
    first = await workers()
    async with running_gateway(gateway_settings(nats_server.url)) as client:
        r = await client.post("/api/v1/spaces", json={"id": space_id, "dim": DIM})
        assert r.status_code == 201, r.text
        host = await first.hosting.ensure_host(space_id)

        async def stalled(seq: int) -> bool:  # NATS too slow for this worker's erases
            await asyncio.Event().wait()
            return True

        host.erase_queue.erase = stalled  # type: ignore[method-assign]
        seq = await fill_and_forget(client, space_id, create=False)
        r = await client.get(f"/api/v1/spaces/{space_id}")
        assert r.json()["applied_seq"] == seq
    assert len(host.erase_queue.pending()) == N
    header = await host.snapshotter.snapshot()
    assert sorted(header.erase_pending) == host.erase_queue.pending()
    await first.stop()  # waits a few seconds for the queue, then leaves the rest
    assert await stored_messages(nc, space_id) == 2 * N  # nothing erased yet

    second = await workers()
    await second.hosting.ensure_host(space_id)  # from the snapshot: it erases what it lists
    for _ in range(600):
        if await stored_messages(nc, space_id) == N:
            break
        await asyncio.sleep(0.1)
    assert await stored_messages(nc, space_id) == N
