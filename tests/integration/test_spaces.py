"""Spaces: registry, creation, validation, limits."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import nats

from engram_contract.subjects import stream_name
from engram_nats.registry import SpaceRegistry
from tests.helpers import NatsServer, gateway_settings, running_gateway

Client = httpx.AsyncClient


async def test_create_then_get_existing(client: Client, space_id: str) -> None:
    r = await client.post("/api/v1/spaces", json={"id": space_id, "dim": 64})
    assert r.status_code == 201
    rec = r.json()
    assert rec["id"] == space_id and rec["dim"] == 64 and rec["status"] == "active"
    assert rec["metric"] == "cos" and rec["embedder"] == "hash-ngram-v1" and rec["created_at"]

    again = await client.post("/api/v1/spaces", json={"id": space_id, "dim": 64})
    assert again.status_code == 200
    assert again.json() == rec

    listed = (await client.get("/api/v1/spaces")).json()["spaces"]
    assert rec in listed
    shown = (await client.get(f"/api/v1/spaces/{space_id}")).json()
    assert shown == {**rec, "memories": 0, "applied_seq": 0}


async def test_default_space_exists_at_start(client: Client) -> None:
    r = await client.get("/api/v1/spaces/default")
    assert r.status_code == 200
    assert r.json()["dim"] == 384


async def test_conflicting_settings_are_refused(client: Client, space_id: str) -> None:
    assert (
        await client.post("/api/v1/spaces", json={"id": space_id, "dim": 64})
    ).status_code == 201
    r = await client.post("/api/v1/spaces", json={"id": space_id, "dim": 128})
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
    # names only what differs: what the space has and what was asked
    assert r.json()["detail"] == f"space {space_id!r} exists with dim=64; asked for dim=128"


async def test_invalid_space_ids_get_400_saying_what_is_expected(client: Client) -> None:
    for bad in ["ab", "-abc", "Upper", "has.dot", "x" * 65, "sp ace"]:
        r = await client.post("/api/v1/spaces", json={"id": bad})
        assert r.status_code == 400, bad
        body = r.json()
        assert body["status"] == 400
        assert "3-64 characters" in body["detail"], body
        r = await client.post(f"/api/v1/spaces/{bad}/memories", json={"content": "x"})
        assert r.status_code in (400, 404), bad  # a '.' or space never reaches a route


async def test_unknown_embedder_is_a_clear_400(client: Client, space_id: str) -> None:
    r = await client.post("/api/v1/spaces", json={"id": space_id, "embedder": "nope"})
    assert r.status_code == 400
    assert "hash-ngram-v1" in r.json()["detail"]


async def test_concurrent_create_or_get_coalesces(nats_server: NatsServer, space_id: str) -> None:
    conns = [await nats.connect(nats_server.url) for _ in range(10)]
    try:
        registries = [SpaceRegistry(c.jetstream()) for c in conns]
        await asyncio.gather(*(r.open() for r in registries))
        results = await asyncio.gather(*(r.create_or_get(space_id, dim=32) for r in registries))
        records = {rec.model_dump_json() for rec, _ in results}
        assert len(records) == 1, "every caller gets the same record"
        assert sum(created for _, created in results) == 1, "exactly one creation"
        js = conns[0].jetstream()
        info = await js.stream_info(stream_name(space_id))
        assert info.config.subjects == [f"spaces.{space_id}.*"]
        names = [n async for n in _stream_names(js) if n == stream_name(space_id)]
        assert names == [stream_name(space_id)]
    finally:
        for c in conns:
            await c.close()


async def _stream_names(js: Any) -> Any:
    for name in await js.streams_info():
        yield name.config.name


async def test_concurrent_http_creation(client: Client, space_id: str) -> None:
    rs = await asyncio.gather(
        *(client.post("/api/v1/spaces", json={"id": space_id, "dim": 16}) for _ in range(10))
    )
    assert sorted(r.status_code for r in rs) == [200] * 9 + [201]
    assert len({r.text for r in rs}) == 1


async def test_auto_create_off_unknown_space_is_404(
    nats_server: NatsServer, worker: Any, space_id: str
) -> None:
    async with running_gateway(gateway_settings(nats_server.url, auto_create_spaces=False)) as c:
        r = await c.post(f"/api/v1/spaces/{space_id}/memories", json={"content": "hello"})
        assert r.status_code == 404
        assert r.headers["content-type"].startswith("application/problem+json")
        assert space_id in r.json()["detail"]
        assert (await c.get(f"/api/v1/spaces/{space_id}")).status_code == 404


async def test_auto_create_on_first_write(client: Client, space_id: str) -> None:
    r = await client.post(f"/api/v1/spaces/{space_id}/memories", json={"content": "hello"})
    assert r.status_code == 202
    shown = (await client.get(f"/api/v1/spaces/{space_id}")).json()
    assert shown["memories"] == 1 and shown["dim"] == 384


async def test_space_limit(nats_server: NatsServer, worker: Any, new_space: Any) -> None:
    # the shared server already holds other tests' spaces: the limit is the current count
    async with running_gateway(gateway_settings(nats_server.url)) as c:
        count = len((await c.get("/api/v1/spaces")).json()["spaces"])
    async with running_gateway(gateway_settings(nats_server.url, max_spaces=count)) as c:
        r = await c.post("/api/v1/spaces", json={"id": new_space()})
        assert r.status_code == 409
        assert "ENGRAM_MAX_SPACES" in r.json()["detail"]


async def test_health_ready_and_openapi(client: Client) -> None:
    assert (await client.get("/health")).json() == {"status": "ok"}
    ready = (await client.get("/ready")).json()
    assert ready["nats_connected"] and ready["registry_loaded"]
    schema = (await client.get("/schema/openapi.json")).json()
    assert "/api/v1/spaces/{space}/recall" in schema["paths"]
