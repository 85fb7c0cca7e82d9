"""API keys over HTTP: 401 without a valid key, 403 outside a key's spaces or role
(the same answer whether the other space exists or not), scoped listings, admin
routes, revocation seen by every gateway within a second."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

import httpx
import pytest

from tests.helpers import gateway_settings, random_unit, running_gateway

ADMIN_KEY = "test-admin-key-" + "x" * 20
pytestmark = pytest.mark.usefixtures("worker")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _space(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def gateway(nats_server: Any) -> Any:
    settings = gateway_settings(nats_server.url, auth="required", admin_key=ADMIN_KEY)
    async with running_gateway(settings) as client:
        yield client


async def _key(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    r = await client.post("/api/v1/keys", json=body, headers=bearer(ADMIN_KEY))
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _spaces(client: httpx.AsyncClient, *ids: str) -> None:
    for space in ids:
        r = await client.post(
            "/api/v1/spaces", json={"id": space, "dim": 16}, headers=bearer(ADMIN_KEY)
        )
        assert r.status_code == 201, r.text


def _memory(i: int) -> dict[str, Any]:
    return {"id": f"m{i}", "content": f"memory {i}", "embedding": random_unit(16, i)}


async def test_without_a_valid_key_everything_but_the_probes_is_401(gateway: Any) -> None:
    for path in ("/api/v1/spaces", "/api/v1/status", "/asyncapi", "/schema/openapi.json"):
        r = await gateway.get(path)
        assert r.status_code == 401, (path, r.text)
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "API key" in r.json()["detail"]
    r = await gateway.get("/api/v1/spaces", headers=bearer("egk_0123456789ab_" + "A" * 43))
    assert r.status_code == 401 and "not valid" in r.json()["detail"]
    r = await gateway.get("/api/v1/spaces", headers={"Authorization": f"Basic {ADMIN_KEY}"})
    assert r.status_code == 401
    for path in ("/health", "/ready", "/metrics"):
        assert (await gateway.get(path)).status_code == 200, path
    assert (await gateway.get("/api/v1/spaces", headers=bearer(ADMIN_KEY))).status_code == 200


async def test_a_write_key_works_in_its_space_and_nowhere_else(gateway: Any) -> None:
    alpha, beta = _space("alpha"), _space("beta")
    await _spaces(gateway, alpha, beta)
    key = (await _key(gateway, spaces=[alpha], role="write"))["key"]
    mine = bearer(key)
    r = await gateway.post(f"/api/v1/spaces/{alpha}/memories", json=_memory(1), headers=mine)
    assert r.status_code in (200, 201, 202), r.text
    r = await gateway.post(
        f"/api/v1/spaces/{alpha}/recall",
        json={"embedding": random_unit(16, 1), "consistency": "strong"},
        headers=mine,
    )
    assert r.status_code == 200 and r.json()["results"][0]["memory"]["id"] == "m1"
    # the other space, existing or not: the same 403, nothing about it
    missing = _space("gamma")
    answers = []
    for space in (beta, missing):
        for method, path, body in (
            ("POST", f"/api/v1/spaces/{space}/memories", _memory(2)),
            ("POST", f"/api/v1/spaces/{space}/recall", {"embedding": random_unit(16, 2)}),
            ("GET", f"/api/v1/spaces/{space}/memories", None),
            ("GET", f"/api/v1/spaces/{space}", None),
            ("GET", f"/api/v1/spaces/{space}/export", None),
            ("GET", f"/api/v1/spaces/{space}/events", None),
            ("DELETE", f"/api/v1/spaces/{space}", None),
        ):
            r = await gateway.request(method, path, json=body, headers=mine)
            assert r.status_code == 403, (method, path, r.status_code, r.text)
            doc = r.json()
            answers.append(
                (method, path.replace(space, "S"), doc["title"], doc["detail"].replace(space, "S"))
            )
    half = len(answers) // 2
    assert answers[:half] == answers[half:]  # existing and missing look the same
    # the legacy routes check the space named in the header
    r = await gateway.post(
        "/api/v1/memories", json=_memory(3), headers={**mine, "X-Memory-Space": beta}
    )
    assert r.status_code == 403
    r = await gateway.post(
        "/api/v1/memories", json=_memory(3), headers={**mine, "X-Memory-Space": alpha}
    )
    assert r.status_code in (200, 201, 202), r.text
    # admin things
    assert (
        await gateway.post("/api/v1/spaces", json={"id": _space("x")}, headers=mine)
    ).status_code == 403
    assert (await gateway.get("/api/v1/keys", headers=mine)).status_code == 403
    assert (await gateway.get("/api/v1/status", headers=mine)).status_code == 403
    r = await gateway.get("/api/v1/status", params={"space": alpha}, headers=mine)
    assert r.status_code == 200 and [s["id"] for s in r.json()["spaces"]] == [alpha]
    assert (
        await gateway.get("/api/v1/status", params={"space": beta}, headers=mine)
    ).status_code == 403
    listed = (await gateway.get("/api/v1/spaces", headers=mine)).json()["spaces"]
    assert [s["id"] for s in listed] == [alpha]
    # the admin still sees both
    listed = (await gateway.get("/api/v1/spaces", headers=bearer(ADMIN_KEY))).json()["spaces"]
    assert {alpha, beta} <= {s["id"] for s in listed}


async def test_a_read_key_reads_and_cannot_write(gateway: Any) -> None:
    alpha = _space("alpha")
    await _spaces(gateway, alpha)
    writer = bearer((await _key(gateway, spaces=[alpha], role="write"))["key"])
    reader = bearer((await _key(gateway, spaces=[alpha], role="read"))["key"])
    await gateway.post(f"/api/v1/spaces/{alpha}/memories", json=_memory(1), headers=writer)
    r = await gateway.post(
        f"/api/v1/spaces/{alpha}/recall",
        json={"embedding": random_unit(16, 1), "consistency": "strong"},
        headers=reader,
    )
    assert r.status_code == 200 and r.json()["results"]
    assert (
        await gateway.get(f"/api/v1/spaces/{alpha}/memories/m1", headers=reader)
    ).status_code == 200
    for method, path, body in (
        ("POST", f"/api/v1/spaces/{alpha}/memories", _memory(2)),
        ("DELETE", f"/api/v1/spaces/{alpha}/memories/m1", None),
        ("POST", f"/api/v1/spaces/{alpha}/links", {"source": "m1", "target": "m1"}),
        ("POST", f"/api/v1/spaces/{alpha}/consolidate", {}),
    ):
        r = await gateway.request(method, path, json=body, headers=reader)
        assert r.status_code == 403, (method, path, r.text)
        assert "may not write to" in r.json()["detail"]


async def test_a_scoped_key_cannot_create_a_space_by_writing_to_it(gateway: Any) -> None:
    unborn = _space("unborn")
    key = bearer((await _key(gateway, spaces=[unborn], role="write"))["key"])
    r = await gateway.post(f"/api/v1/spaces/{unborn}/memories", json=_memory(1), headers=key)
    assert r.status_code == 404 and "cannot create" in r.json()["hint"]
    r = await gateway.get(f"/api/v1/spaces/{unborn}", headers=bearer(ADMIN_KEY))
    assert r.status_code == 404  # still not there


async def test_keys_are_listed_without_secrets_and_bad_requests_are_400(
    gateway: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="engram.audit")
    alpha = _space("alpha")
    made = await _key(gateway, spaces=[alpha], role="read", label="reader of alpha")
    assert made["key"].startswith(f"egk_{made['id']}_") and made["role"] == "read"
    listed = (await gateway.get("/api/v1/keys", headers=bearer(ADMIN_KEY))).json()["keys"]
    (row,) = [k for k in listed if k["id"] == made["id"]]
    assert row["spaces"] == [alpha] and row["label"] == "reader of alpha"
    assert "key" not in row and "hash" not in row
    text = str(listed)
    assert made["key"] not in text and made["key"].split("_", 2)[2] not in text
    assert any(
        "action=key.create" in r.getMessage() and made["id"] in r.getMessage()
        for r in caplog.records
    )
    assert all(made["key"] not in r.getMessage() for r in caplog.records)
    for body, field in (
        ({"role": "write"}, "role"),
        ({"role": "admin", "spaces": [alpha]}, "role"),
        ({"admin": True, "spaces": [alpha]}, "admin"),
        ({"spaces": ["bad space"], "role": "read"}, "spaces"),
    ):
        r = await gateway.post("/api/v1/keys", json=body, headers=bearer(ADMIN_KEY))
        assert r.status_code == 400, (body, r.text)
        assert field in r.json()["detail"], r.json()
    r = await gateway.delete("/api/v1/keys/nosuchkey000", headers=bearer(ADMIN_KEY))
    assert r.status_code == 404
    admin = await _key(gateway, admin=True)
    assert admin["role"] == "admin" and admin["spaces"] == []
    assert (await gateway.get("/api/v1/keys", headers=bearer(admin["key"]))).status_code == 200


async def test_a_revoked_key_is_refused_by_every_gateway_within_a_second(
    gateway: Any, nats_server: Any
) -> None:
    alpha = _space("alpha")
    await _spaces(gateway, alpha)
    made = await _key(gateway, spaces=[alpha], role="read")
    other_settings = gateway_settings(nats_server.url, auth="required")
    async with running_gateway(other_settings) as other:
        path = f"/api/v1/spaces/{alpha}"
        assert (await other.get(path, headers=bearer(made["key"]))).status_code == 200
        r = await gateway.delete(f"/api/v1/keys/{made['id']}", headers=bearer(ADMIN_KEY))
        assert r.status_code == 204
        t0 = time.monotonic()
        while (await other.get(path, headers=bearer(made["key"]))).status_code != 401:
            assert time.monotonic() - t0 < 1.0, "the other gateway still accepts a revoked key"
            await asyncio.sleep(0.02)
        assert (await gateway.get(path, headers=bearer(made["key"]))).status_code == 401


async def test_on_loopback_with_auth_auto_no_key_is_needed_but_a_sent_one_is_checked(
    nats_server: Any,
) -> None:
    async with running_gateway(gateway_settings(nats_server.url)) as client:
        assert (await client.get("/api/v1/spaces")).status_code == 200
        r = await client.get("/api/v1/spaces", headers=bearer("egk_0123456789ab_" + "B" * 43))
        assert r.status_code == 401


async def test_a_key_over_its_rate_gets_429_with_retry_after(nats_server: Any) -> None:
    settings = gateway_settings(
        nats_server.url, auth="required", admin_key=ADMIN_KEY, rate_limit=0.5, rate_burst=4
    )
    async with running_gateway(settings) as client:
        alpha = _space("alpha")
        await _spaces(client, alpha)
        first = bearer((await _key(client, spaces=[alpha], role="read"))["key"])
        second = bearer((await _key(client, spaces=[alpha], role="read"))["key"])
        path = f"/api/v1/spaces/{alpha}"
        # the admin's own 3 requests above came out of its own bucket
        assert [(await client.get(path, headers=first)).status_code for _ in range(4)] == [200] * 4
        r = await client.get(path, headers=first)
        assert r.status_code == 429, r.text
        assert 1 <= int(r.headers["retry-after"]) <= 2
        assert "rate limit" in r.json()["detail"]
        assert (await client.get(path, headers=second)).status_code == 200
