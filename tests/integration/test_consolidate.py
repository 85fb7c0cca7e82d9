"""Consolidation: POST …/consolidate and ``spaces.<id>.q.consolidate`` fold groups
of densely linked episodic memories into semantic ones, once; dry runs write
nothing; the semantic memory survives a worker restart from snapshot or WAL."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from nats.aio.client import Client as Nats

from engram_worker.snapshots import SnapshotStore
from tests.helpers import (
    CLUSTER,
    CONSOLIDATION_SETTINGS,
    EventRecorder,
    NatsServer,
    basis,
    consolidate_over_http,
    consolidation_memories,
    create_space_over_http,
    gateway_settings,
    last_wal_seq,
    member_cue,
    query_over_nats,
    result_ids,
    running_gateway,
    store_vectors,
)

Client = httpx.AsyncClient


async def nearest(client: Client, space: str, k: int = 3) -> list[Any]:
    r = await client.post(
        f"/api/v1/spaces/{space}/recall",
        json={"embedding": basis(0), "mode": "similarity", "k": k, "reinforce": False},
    )
    assert r.status_code == 200, r.text
    results: list[Any] = r.json()["results"]
    return results


async def check_semantic(client: Client, space: str, sem_id: str) -> None:
    """``sem_id`` is a semantic memory of the cluster, the nearest to its centre, and
    linked to each member with a ``consolidated`` link of weight 1."""
    r = await client.get(f"/api/v1/spaces/{space}/memories/{sem_id}")
    assert r.status_code == 200, r.text
    sem = r.json()
    assert sem["kind"] == "semantic" and sem["recalls"] == 0
    assert sem["content"].startswith("Consolidated from 4 memories: ")
    for mid in CLUSTER:
        assert f"memory {mid}" in sem["content"]
    assert sem["confidence"] == pytest.approx(0.7)  # the members' mean
    top = (await nearest(client, space))[0]["memory"]
    assert (top["id"], top["kind"]) == (sem_id, "semantic")
    for i, mid in enumerate(CLUSTER):
        # seeds: the member (0.34) and its filler (0.05); one hop from the member
        # reaches the semantic memory (0.34 × 1.0 × 0.5) before the other members
        # (0.34 × 0.8 × 0.5)
        r = await client.post(
            f"/api/v1/spaces/{space}/recall",
            json={
                "embedding": member_cue(i),
                "mode": "spreading",
                "seed_k": 1,
                "k": 2,
                "max_hops": 1,
                "trace": True,
                "reinforce": False,
            },
        )
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert result_ids(results) == [mid, sem_id], results
        assert results[1]["hops"] == 1
        (seed, step) = results[1]["trace"]
        assert seed["memory_id"] == mid
        assert (step["memory_id"], step["kind"], step["weight"]) == (sem_id, "consolidated", 1.0)


async def test_consolidation_makes_one_semantic_memory_per_dense_group(
    client: Client, nc: Nats, space_id: str
) -> None:
    await create_space_over_http(client, space_id, **CONSOLIDATION_SETTINGS)
    await store_vectors(client, space_id, consolidation_memories())
    before = await last_wal_seq(nc, space_id)

    dry = await consolidate_over_http(client, space_id, dry_run=True)
    assert dry["space"] == space_id and dry["seq"] is None
    (group,) = dry["groups"]
    assert group["members"] == CLUSTER
    sem_id = group["memory_id"]
    assert sem_id.startswith("sem-")
    assert await last_wal_seq(nc, space_id) == before  # a dry run writes nothing
    assert all(r["memory"]["kind"] == "episodic" for r in await nearest(client, space_id, k=10))

    done = await consolidate_over_http(client, space_id)  # no body: the defaults
    assert done["groups"] == [{"memory_id": sem_id, "members": CLUSTER}]
    assert done["seq"] == before + 1 == await last_wal_seq(nc, space_id)
    # the gateway waits for the command it caused: the next read sees its result
    await check_semantic(client, space_id, sem_id)
    r = await client.get(f"/api/v1/spaces/{space_id}")
    assert r.json()["memories"] == len(consolidation_memories()) + 1
    for mid in CLUSTER:  # members stay, as episodic memories
        member = (await client.get(f"/api/v1/spaces/{space_id}/memories/{mid}")).json()
        assert member["kind"] == "episodic"

    again = await consolidate_over_http(client, space_id)
    assert again["groups"] == [] and again["seq"] is None
    assert (await consolidate_over_http(client, space_id, dry_run=True))["groups"] == []
    assert await last_wal_seq(nc, space_id) == before + 1


async def test_consolidate_rejects_bad_bodies_and_unknown_spaces(
    client: Client, space_id: str
) -> None:
    await create_space_over_http(client, space_id, **CONSOLIDATION_SETTINGS)
    url = f"/api/v1/spaces/{space_id}/consolidate"
    for body, field in (({"dry_run": "maybe"}, "dry_run"), ({"min_seq": -1}, "min_seq")):
        r = await client.post(url, json=body)
        assert r.status_code == 400, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert [e["field"] for e in r.json()["errors"]] == [field]
    r = await client.post(url, content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["title"] == "Malformed JSON"
    r = await client.post("/api/v1/spaces/no-such-space-c/consolidate")
    assert r.status_code == 404 and r.json()["title"] == "Space not found"
    assert (await client.get("/api/v1/spaces/no-such-space-c")).status_code == 404
    assert (await consolidate_over_http(client, space_id))["groups"] == []  # empty space


async def test_consolidation_over_nats_announces_each_group(
    client: Client, nc: Nats, space_id: str
) -> None:
    await create_space_over_http(client, space_id, **CONSOLIDATION_SETTINGS)
    seq = await store_vectors(client, space_id, consolidation_memories())
    events = EventRecorder()
    await nc.subscribe(f"spaces.{space_id}.evt.consolidated", cb=events.handle)

    reply = await query_over_nats(nc, space_id, "consolidate", {"min_seq": seq})
    (group,) = reply["groups"]
    assert group["members"] == CLUSTER and reply["seq"] == seq + 1
    await events.wait_for(1)
    ((subject, event),) = events.items
    assert subject == f"spaces.{space_id}.evt.consolidated"
    assert event["space"] == space_id and event["seq"] == seq + 1
    assert event["memory_id"] == group["memory_id"]
    assert sorted(event["members"]) == CLUSTER
    # a query over NATS names its own min_seq: the gateway's next read still sees it
    # once the worker has folded the command, which the event says it has
    await check_semantic(client, space_id, group["memory_id"])


async def test_the_semantic_memory_survives_restarts_from_snapshot_and_from_the_wal(
    nats_server: NatsServer, nc: Nats, workers: Any, space_id: str
) -> None:
    first = await workers()
    async with running_gateway(gateway_settings(nats_server.url)) as client:
        await create_space_over_http(client, space_id, **CONSOLIDATION_SETTINGS)
        await store_vectors(client, space_id, consolidation_memories())
        (group,) = (await consolidate_over_http(client, space_id))["groups"]
        sem_id = group["memory_id"]
        await check_semantic(client, space_id, sem_id)
        await first.stop()  # graceful: writes a snapshot

        second = await workers()
        await check_semantic(client, space_id, sem_id)
        assert second.hosts[space_id].snapshotter.recovery.startswith("restored from snapshot")
        assert (await consolidate_over_http(client, space_id))["groups"] == []
        await second.stop()

        snapshots = SnapshotStore(nc.jetstream())
        await snapshots.open()
        await snapshots.erase(space_id)
        third = await workers()
        await check_semantic(client, space_id, sem_id)
        assert "replayed the WAL" in third.hosts[space_id].snapshotter.recovery
        # a fresh worker knows what was consolidated from the WAL alone
        assert (await consolidate_over_http(client, space_id))["groups"] == []
        r = await client.get(f"/api/v1/spaces/{space_id}")
        assert r.json()["memories"] == len(consolidation_memories()) + 1
