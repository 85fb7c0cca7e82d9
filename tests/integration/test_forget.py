"""Forgetting really forgets: the content is gone from the broker's disk."""

from __future__ import annotations

import json
import uuid

import httpx
from nats.aio.client import Client as Nats

from engram_worker.worker import Worker
from tests.helpers import (
    EventRecorder,
    NatsServer,
    files_containing,
    query_over_nats,
    wait_gone_from_disk,
    wait_on_disk,
    worker_settings,
)


async def test_forget_over_http_erases_the_content(
    client: httpx.AsyncClient, nats_server: NatsServer, space_id: str
) -> None:
    marker = f"marker-{uuid.uuid4().hex}"
    url = f"/api/v1/spaces/{space_id}/memories"
    await client.post(url, json={"id": "secret", "content": f"the code is {marker}"})
    await client.post(url, json={"id": "keep", "content": "an unrelated memory"})
    await wait_on_disk(nats_server.store_dir, marker.encode())  # precondition: it was on disk

    r = await client.delete(f"{url}/secret")
    assert r.status_code == 202
    assert r.json()["seq"] == 3
    assert (await client.get(f"{url}/secret")).status_code == 404
    rec = (
        await client.post(
            f"/api/v1/spaces/{space_id}/recall", json={"query": f"the code is {marker}", "k": 10}
        )
    ).json()
    assert [x["memory"]["id"] for x in rec["results"]] == ["keep"]
    assert (await client.get(f"/api/v1/spaces/{space_id}")).json()["memories"] == 1
    await wait_gone_from_disk(nats_server.store_dir, marker.encode())

    # an unknown id is a no-op, not an error
    r = await client.delete(f"{url}/never-existed")
    assert r.status_code == 202
    assert (await client.get(f"/api/v1/spaces/{space_id}")).json()["memories"] == 1


async def test_upsert_erases_the_replaced_version(
    client: httpx.AsyncClient, nats_server: NatsServer, space_id: str
) -> None:
    old, new = f"old-{uuid.uuid4().hex}", f"new-{uuid.uuid4().hex}"
    url = f"/api/v1/spaces/{space_id}/memories"
    await client.post(url, json={"id": "fav", "content": f"favourite is {old}"})
    await client.post(url, json={"id": "fav", "content": f"favourite is {new}"})
    assert (await client.get(f"{url}/fav")).json()["content"] == f"favourite is {new}"
    await wait_gone_from_disk(nats_server.store_dir, old.encode())
    assert files_containing(nats_server.store_dir, new.encode())


async def test_forget_over_nats_announces_and_survives_a_worker_restart(
    client: httpx.AsyncClient, nc: Nats, nats_server: NatsServer, worker: Worker, space_id: str
) -> None:
    await client.post("/api/v1/spaces", json={"id": space_id, "dim": 384})
    events = EventRecorder()
    await nc.subscribe(f"spaces.{space_id}.evt.forgotten", cb=events.handle)
    r = await client.post(
        f"/api/v1/spaces/{space_id}/memories", json={"id": "m1", "content": "to be forgotten"}
    )
    stored_seq = r.json()["seq"]
    cmd = {"schema_version": 1, "command_id": "f-1", "memory_id": "m1"}
    ack = await nc.jetstream().publish(
        f"spaces.{space_id}.forget", json.dumps(cmd).encode(), headers={"Nats-Msg-Id": "f-1"}
    )
    await events.wait_for(1)
    ((_, event),) = events.items
    assert event["memory_id"] == "m1" and event["existed"] is True
    assert event["erased_seq"] == stored_seq and event["seq"] == ack.seq
    got = await query_over_nats(nc, space_id, "get", {"memory_id": "m1", "min_seq": ack.seq})
    assert got["error"]["status"] == 404

    # a fresh worker replays the WAL: the erased message is not there to come back
    fresh = Worker(worker_settings(nats_server.url))
    await worker.stop()
    await fresh.start()
    try:
        stats = await query_over_nats(nc, space_id, "stats", {"min_seq": ack.seq})
        assert stats["memories"] == 0
        got = await query_over_nats(nc, space_id, "get", {"memory_id": "m1"})
        assert got["error"]["status"] == 404
    finally:
        await fresh.stop()


async def test_forget_with_an_invalid_id_is_a_400(client: httpx.AsyncClient, space_id: str) -> None:
    r = await client.delete(f"/api/v1/spaces/{space_id}/memories/bad%20id")
    assert r.status_code == 400
    assert "memory_id" in r.json()["detail"]
