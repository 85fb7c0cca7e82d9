"""Per-space quotas: ``max_memories`` (checked by the gateway before publishing,
enforced by the fold for anyone who publishes straight to NATS) and
``max_bytes`` (checked by the gateway, enforced by JetStream on the WAL stream,
with room left for forgets)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import nats.js.errors
import pytest
from nats.aio.client import Client as Nats

from tests.helpers import publish_remembers, query_over_nats, random_unit

pytestmark = pytest.mark.usefixtures("worker")


def _memory(i: int, size: int = 10) -> dict[str, Any]:
    return {"id": f"m{i}", "content": f"memory {i} " + "z" * size, "embedding": random_unit(16, i)}


async def _fill(nc: Nats, space: str) -> list[Exception]:
    """Publish straight into the WAL until JetStream refuses even a small message
    (its own limit is max_bytes + 1 MiB); the refusals."""
    js = nc.jetstream()
    refusals: list[Exception] = []
    for size in (100_000, 10_000, 1_000, 100, 10):
        for _ in range(200):
            try:
                await js.publish(f"spaces.{space}.remember", b"x" * size)
            except nats.js.errors.APIError as exc:
                refusals.append(exc)
                break
    return refusals


async def _create(client: httpx.AsyncClient, **limits: int) -> str:
    space = f"quota-{uuid.uuid4().hex[:10]}"
    r = await client.post("/api/v1/spaces", json={"id": space, "dim": 16, **limits})
    assert r.status_code == 201, r.text
    return space


async def test_max_memories_refuses_a_write_past_it_and_says_why(client: httpx.AsyncClient) -> None:
    space = await _create(client, max_memories=5)
    record = (await client.get(f"/api/v1/spaces/{space}")).json()
    assert record["max_memories"] == 5 and record["max_bytes"] == 0
    url = f"/api/v1/spaces/{space}/memories"
    r = await client.post(url, json={"memories": [_memory(i) for i in range(4)]})
    assert r.status_code == 202, r.text
    r = await client.post(url, json={"memories": [_memory(i) for i in range(4, 6)]})
    assert r.status_code == 409, r.text
    doc = r.json()
    assert doc["title"] == "Space quota reached"
    assert "max_memories of 5" in doc["detail"] and "holds 4 memories" in doc["detail"]
    assert (await client.post(url, json=_memory(4))).status_code in (201, 202)
    assert (await client.post(url, json=_memory(5))).status_code == 409
    # forgetting makes room again
    assert (await client.delete(f"{url}/m0")).status_code in (200, 202)
    assert (await client.post(url, json=_memory(5))).status_code in (201, 202)
    status = (await client.get("/api/v1/status", params={"space": space})).json()
    (row,) = status["spaces"]
    assert row["max_memories"] == 5 and row["wal_bytes"] > 0


async def test_the_fold_refuses_remembers_past_max_memories_from_anyone(
    client: httpx.AsyncClient, nc: Nats
) -> None:
    space = await _create(client, max_memories=3)
    seq = await publish_remembers(nc, space, range(6))  # straight into the WAL
    stats = await query_over_nats(nc, space, "stats", {"min_seq": seq})
    assert stats["memories"] == 3 and stats["rejected"] == 3
    # replacing a memory that exists is not a new one: still accepted
    seq = await publish_remembers(nc, space, range(1), content="replaced {i}")
    stats = await query_over_nats(nc, space, "stats", {"min_seq": seq})
    assert stats["memories"] == 3 and stats["rejected"] == 3


async def test_max_bytes_is_checked_by_the_gateway_and_enforced_by_jetstream(
    client: httpx.AsyncClient, nc: Nats
) -> None:
    space = await _create(client, max_bytes=20_000)
    url = f"/api/v1/spaces/{space}/memories"
    codes = []
    for i in range(40):
        r = await client.post(url, json=_memory(i, size=900))
        codes.append(r.status_code)
        if r.status_code == 409:
            assert "max_bytes of 20,000" in r.json()["detail"], r.text
            assert "its WAL holds" in r.json()["detail"]
            break
    assert codes[-1] == 409 and len(codes) > 5, codes
    # a full space can still be forgotten from (the stream keeps room for it)
    assert (await client.delete(f"{url}/m0")).status_code in (200, 202)
    # JetStream itself refuses what gets past the gateway: a direct publisher
    refusals = await _fill(nc, space)
    assert refusals and all("maximum bytes" in str(e) for e in refusals)
    # and a write through the gateway now is refused clearly, not after a hang
    t0 = time.monotonic()
    r = await client.delete(f"{url}/m1")
    assert r.status_code == 409, r.text
    assert "byte limit" in r.json()["detail"]
    assert time.monotonic() - t0 < 8


async def test_space_defaults_come_from_the_settings(nats_server: Any) -> None:
    from tests.helpers import gateway_settings, running_gateway

    settings = gateway_settings(nats_server.url, space_max_memories=7, space_max_bytes=50_000)
    async with running_gateway(settings) as client:
        space = f"quota-{uuid.uuid4().hex[:10]}"
        r = await client.post("/api/v1/spaces", json={"id": space, "dim": 16})
        assert (r.json()["max_memories"], r.json()["max_bytes"]) == (7, 50_000)
        r = await client.post("/api/v1/spaces", json={"id": space, "dim": 16, "max_memories": 8})
        assert r.status_code == 409 and "max_memories" in r.json()["detail"]
        r = await client.post("/api/v1/spaces", json={"id": space + "x", "max_memories": -1})
        assert r.status_code == 400
