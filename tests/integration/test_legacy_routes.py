"""Space resolution: legacy routes without a space in the path take X-Memory-Space,
then ?space=, then (only while ENGRAM_REQUIRE_EXPLICIT_SPACE=false) the default
space, deprecated; space-scoped routes reject a header naming another space."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engram_gateway.spaces import MISSING
from engram_worker.worker import Worker
from tests.helpers import NatsServer, gateway_settings, running_gateway

Client = httpx.AsyncClient
FALLBACK = "engram_memory_space_default_fallback_total"


@pytest.fixture
async def tidy(client: Client) -> AsyncIterator[list[str]]:
    """Spaces the test made, deleted at its end: a worker starting later loads every
    space there is, so leftovers slow (and crowd) the rest of the suite."""
    made: list[str] = []
    yield made
    for space in made:
        r = await client.delete(f"/api/v1/spaces/{space}")
        assert r.status_code in (202, 404), r.text


async def create(client: Client, space: str) -> None:
    r = await client.post("/api/v1/spaces", json={"id": space})
    assert r.status_code == 201, r.text


async def ids_in(client: Client, space: str) -> list[str]:
    r = await client.get(f"/api/v1/spaces/{space}/memories")
    assert r.status_code == 200, r.text
    return [m["id"] for m in r.json()["memories"]]


async def fallbacks(client: Client) -> float:
    r = await client.get("/metrics")
    assert r.status_code == 200
    return sum(
        s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
        if s.name == FALLBACK
    )


async def test_header_wins_over_query(
    client: Client, new_space: Callable[[], str], tidy: list[str]
) -> None:
    by_header, by_query = new_space(), new_space()
    tidy += [by_header, by_query]
    await create(client, by_query)
    r = await client.post(
        "/api/v1/memories",
        params={"space": by_query},
        headers={"X-Memory-Space": by_header},
        json={"content": "the header names the space"},
    )
    assert r.status_code == 202, r.text
    assert "deprecation" not in r.headers
    assert await ids_in(client, by_header) == r.json()["ids"]
    assert await ids_in(client, by_query) == []


async def test_query_names_the_space(client: Client, space_id: str, tidy: list[str]) -> None:
    tidy.append(space_id)
    r = await client.post(
        "/api/v1/memories",
        params={"space": space_id},
        json={"memories": [{"content": "one"}, {"content": "two"}]},
    )
    assert r.status_code == 202, r.text
    assert "deprecation" not in r.headers and "warning" not in r.headers
    assert sorted(await ids_in(client, space_id)) == sorted(r.json()["ids"])
    listed = await client.get("/api/v1/memories", params={"space": space_id, "limit": 1})
    assert listed.status_code == 200 and len(listed.json()["memories"]) == 1


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v1/memories", {"content": "nowhere"}),
        ("GET", "/api/v1/memories", None),
        ("GET", "/api/v1/memories/m1", None),
        ("DELETE", "/api/v1/memories/m1", None),
        ("POST", "/api/v1/recall", {"query": "anything"}),
    ],
)
async def test_missing_space_is_400_when_explicit_required(
    client: Client, method: str, path: str, body: dict[str, str] | None
) -> None:
    r = await client.request(method, path, json=body)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["detail"] == MISSING
    assert "deprecation" not in r.headers
    assert await fallbacks(client) == 0


async def test_invalid_space_in_header_or_query_is_400(client: Client) -> None:
    r = await client.get("/api/v1/memories", headers={"X-Memory-Space": "no/slashes"})
    assert r.status_code == 400 and r.json()["title"] == "Invalid space id"
    r = await client.get("/api/v1/memories", params={"space": "../etc"})
    assert r.status_code == 400 and r.json()["title"] == "Invalid space id"


async def test_default_fallback_is_deprecated_counted_and_logged_once_per_client(
    nats_server: NatsServer,
    worker: Worker,
    space_id: str,
    new_space: Callable[[], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="engram_gateway.spaces")
    settings = gateway_settings(
        nats_server.url, require_explicit_space=False, default_space=space_id
    )
    async with running_gateway(settings) as client:
        r = await client.post("/api/v1/memories", json={"content": "no space given"})
        assert r.status_code == 202, r.text
        assert r.headers["deprecation"] == "true"
        warning = r.headers["warning"]
        assert warning.startswith('299 - "') and warning.endswith('"')
        assert "X-Memory-Space" in warning and space_id in warning
        (mid,) = r.json()["ids"]
        assert await ids_in(client, space_id) == [mid]

        got = await client.get(f"/api/v1/memories/{mid}")
        assert got.status_code == 200 and got.json()["content"] == "no space given"
        assert got.headers["deprecation"] == "true"
        assert await fallbacks(client) == 2

        # an explicit space is not a fallback
        other = new_space()
        r = await client.post(
            "/api/v1/memories", headers={"X-Memory-Space": other}, json={"content": "x"}
        )
        assert r.status_code == 202 and "deprecation" not in r.headers
        assert await fallbacks(client) == 2

        def warned() -> int:
            return sum(
                "without a memory space" in rec.getMessage()
                for rec in caplog.records
                if rec.name == "engram_gateway.spaces"
            )

        assert warned() == 1
        r = await client.get("/api/v1/memories", headers={"User-Agent": "another-agent/1.0"})
        assert r.status_code == 200 and r.headers["deprecation"] == "true"
        assert warned() == 2
        await client.get("/api/v1/memories", headers={"User-Agent": "another-agent/1.0"})
        assert warned() == 2
        assert await fallbacks(client) == 4
        for space in (space_id, other):
            assert (await client.delete(f"/api/v1/spaces/{space}")).status_code == 202


async def test_header_naming_another_space_than_the_path_is_400(
    client: Client, space_id: str, new_space: Callable[[], str], tidy: list[str]
) -> None:
    tidy.append(space_id)
    await create(client, space_id)
    other = new_space()
    base = f"/api/v1/spaces/{space_id}"
    for method, path, body in [
        ("GET", f"{base}/memories", None),
        ("POST", f"{base}/memories", {"content": "x"}),
        ("POST", f"{base}/recall", {"query": "x"}),
        ("GET", base, None),
    ]:
        r = await client.request(method, path, json=body, headers={"X-Memory-Space": other})
        assert r.status_code == 400, (method, path, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert other in r.json()["detail"] and space_id in r.json()["detail"]
    assert await ids_in(client, space_id) == []
    r = await client.get(f"{base}/memories", headers={"X-Memory-Space": space_id})
    assert r.status_code == 200
    r = await client.post(
        f"{base}/memories", json={"content": "x"}, headers={"X-Memory-Space": space_id}
    )
    assert r.status_code == 202


async def test_legacy_round_trip_stays_in_the_resolved_space(
    client: Client, space_id: str, new_space: Callable[[], str], tidy: list[str]
) -> None:
    bystander = new_space()
    tidy += [space_id, bystander]
    await create(client, bystander)
    await client.post(f"/api/v1/spaces/{bystander}/memories", json={"content": "not yours"})
    mine = {"X-Memory-Space": space_id}

    r = await client.post(
        "/api/v1/memories", headers=mine, json={"content": "The user's cat is called Miso"}
    )
    assert r.status_code == 202, r.text
    (mid,) = r.json()["ids"]

    got = await client.get(f"/api/v1/memories/{mid}", headers=mine)
    assert got.status_code == 200 and got.json()["content"] == "The user's cat is called Miso"

    rec = await client.post(
        "/api/v1/recall", headers=mine, json={"query": "cat's name", "k": 5, "mode": "similarity"}
    )
    assert rec.status_code == 200, rec.text
    assert rec.json()["space"] == space_id
    assert [x["memory"]["id"] for x in rec.json()["results"]] == [mid]

    listed = await client.get("/api/v1/memories", headers=mine)
    assert [m["id"] for m in listed.json()["memories"]] == [mid]

    # the other space sees none of it
    assert (
        await client.get(f"/api/v1/memories/{mid}", params={"space": bystander})
    ).status_code == 404
    assert mid not in await ids_in(client, bystander)
    rec = await client.post(
        "/api/v1/recall", params={"space": bystander}, json={"query": "cat's name", "k": 5}
    )
    assert mid not in [x["memory"]["id"] for x in rec.json()["results"]]

    r = await client.delete(f"/api/v1/memories/{mid}", headers=mine)
    assert r.status_code == 202, r.text
    assert (await client.get(f"/api/v1/memories/{mid}", headers=mine)).status_code == 404
    assert await ids_in(client, space_id) == []
    assert len(await ids_in(client, bystander)) == 1
