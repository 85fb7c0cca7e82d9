"""Deleting a space removes its content from disk and frees its id."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from engram_worker.worker import Worker
from tests.helpers import (
    NatsServer,
    random_unit,
    wait_gone_from_disk,
    wait_on_disk,
)


async def test_delete_space_erases_it_and_frees_the_id(
    client: httpx.AsyncClient, nats_server: NatsServer, worker: Worker, new_space: object
) -> None:
    doomed, bystander = new_space("doomed"), new_space("bystander")  # type: ignore[operator]
    marker = f"marker-{uuid.uuid4().hex}"
    for space in (doomed, bystander):
        await client.post("/api/v1/spaces", json={"id": space, "dim": 16})
        r = await client.post(
            f"/api/v1/spaces/{space}/memories",
            json={
                "memories": [
                    {
                        "id": f"m{i}",
                        "content": f"{space} {marker} {i}",
                        "embedding": random_unit(16, i),
                    }
                    for i in range(20)
                ]
            },
        )
        assert r.status_code == 202
    for space in (doomed, bystander):
        assert (await client.get(f"/api/v1/spaces/{space}")).json()["memories"] == 20
        await worker.hosts[space].snapshotter.snapshot()  # the content is in a snapshot too
    assert await worker.snapshots.info(doomed) is not None
    await wait_on_disk(nats_server.store_dir, f"{doomed} {marker}".encode())

    r = await client.delete(f"/api/v1/spaces/{doomed}")
    assert r.status_code == 202
    assert (await client.get(f"/api/v1/spaces/{doomed}")).status_code == 404
    assert doomed not in [s["id"] for s in (await client.get("/api/v1/spaces")).json()["spaces"]]
    assert (await client.get(f"/api/v1/spaces/{doomed}/memories/m1")).status_code == 404
    await wait_gone_from_disk(nats_server.store_dir, f"{doomed} {marker}".encode())
    assert await worker.snapshots.info(doomed) is None
    assert await worker.snapshots.info(bystander) is not None
    assert (await client.delete(f"/api/v1/spaces/{doomed}")).status_code == 404

    # the bystander is unharmed
    rec = (
        await client.post(
            f"/api/v1/spaces/{bystander}/recall", json={"embedding": random_unit(16, 3), "k": 1}
        )
    ).json()
    assert rec["results"][0]["memory"]["id"] == "m3"
    assert (await client.get(f"/api/v1/spaces/{bystander}")).json()["memories"] == 20

    # the id is free again, and the new space is empty
    r = await client.post("/api/v1/spaces", json={"id": doomed, "dim": 16})
    assert r.status_code == 201
    shown = (await client.get(f"/api/v1/spaces/{doomed}")).json()
    assert shown["memories"] == 0 and shown["applied_seq"] == 0
    rec = (
        await client.post(
            f"/api/v1/spaces/{doomed}/recall", json={"embedding": random_unit(16, 3), "k": 5}
        )
    ).json()
    assert rec["results"] == []
    r = await client.post(
        f"/api/v1/spaces/{doomed}/memories",
        json={"id": "fresh", "content": "new life", "embedding": random_unit(16, 9)},
    )
    assert r.json()["seq"] == 1
    rec = (
        await client.post(
            f"/api/v1/spaces/{doomed}/recall", json={"embedding": random_unit(16, 3), "k": 5}
        )
    ).json()
    assert [x["memory"]["id"] for x in rec["results"]] == ["fresh"]


async def test_writes_to_a_deleting_space_are_refused(
    client: httpx.AsyncClient, nats_server: NatsServer, space_id: str
) -> None:
    """Between 'deleting' and removal, writes get 409 and reads 404."""
    import nats

    from engram_nats.registry import SpaceRegistry

    await client.post("/api/v1/spaces", json={"id": space_id, "dim": 16})
    nc = await nats.connect(nats_server.url)
    try:
        registry = SpaceRegistry(nc.jetstream())
        await registry.open()
        await registry.mark_deleting(space_id)
        for _ in range(200):  # the gateway's registry watch catches up (≤ 10 s)
            if (await client.get(f"/api/v1/spaces/{space_id}")).status_code == 404:
                break
            await asyncio.sleep(0.05)
        assert (await client.get(f"/api/v1/spaces/{space_id}")).status_code == 404
        r = await client.post(f"/api/v1/spaces/{space_id}/memories", json={"content": "x"})
        assert r.status_code == 409
        assert "deleting" in r.json()["detail"]
        await registry.remove(space_id)
    finally:
        await nc.close()
