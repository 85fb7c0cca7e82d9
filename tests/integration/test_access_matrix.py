"""The access matrix over HTTP: every route that names a space (found in the
app's route table, so a new route is in the matrix the day it lands) × every
role (read, write, admin, no key) × the key's own space, another existing
space, a missing space. Expected: no key → 401; a scoped key → its role's
routes on its own space work and everything else is 403, the same answer
for an existing and a missing space; admin → everything. And zero accesses
across spaces: nothing of the other space shows in any answer a scoped key
got, and its WAL did not change."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from nats.aio.client import Client as Nats

from engram_contract.subjects import stream_name
from engram_gateway.routes import ROUTES
from tests.helpers import gateway_settings, random_unit, running_gateway

ADMIN_KEY = "matrix-admin-key-" + "x" * 20
DIM = 16
RANK = {"read": 0, "write": 1, "admin": 2}
SECRET = "the other agent's secret " + uuid.uuid4().hex
pytestmark = pytest.mark.usefixtures("worker")


def _bodies(memory_id: str) -> dict[tuple[str, str], Any]:
    """A plausible body per (method, path suffix)."""
    memory = {"id": f"x-{uuid.uuid4().hex[:8]}", "content": "x", "embedding": random_unit(DIM, 9)}
    return {
        ("POST", "/memories"): memory,
        ("POST", "/forget"): {"ids": ["nothing-here"]},
        ("POST", "/recall"): {"embedding": random_unit(DIM, 1), "k": 3},
        ("POST", "/links"): {"source": memory_id, "target": "m2"},
        ("POST", "/consolidate"): {},
    }


def _routes() -> Iterator[tuple[str, str, str, bool]]:
    """(method, path template, role, space in a header) of every route that
    names a space; DELETE of a space last (it ends the space)."""
    found = []
    for handler in ROUTES:
        for path in handler.paths:
            legacy = handler.opt.get("space") == "legacy"
            if "{space" not in path and not legacy:
                continue
            methods = sorted(handler.http_methods - {"HEAD", "OPTIONS"})
            found.extend((m, path, str(handler.opt["role"]), legacy) for m in methods)
    found.append(("GET", "/api/v1/status?space={space:str}", "read", False))
    found.sort(key=lambda r: (r[0] == "DELETE" and r[1].endswith("{space:str}"), r[1], r[0]))
    yield from found


def _url(path: str, space: str) -> str:
    return path.replace("{space:str}", space).replace("{memory_id:str}", "m1")


async def _call(
    client: httpx.AsyncClient, method: str, path: str, space: str, key: str | None, legacy: bool
) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if legacy:
        headers["X-Memory-Space"] = space
    suffix = "/" + path.rsplit("/", 1)[-1]
    body = _bodies("m1").get((method, suffix))
    content: bytes | None = None
    if path.endswith("/import"):
        content, headers["Content-Type"] = b"", "application/x-ndjson"
    async with client.stream(
        method, _url(path, space), json=body, content=content, headers=headers
    ) as r:
        if r.headers.get("content-type", "").startswith("text/event-stream"):
            return r.status_code, ""  # a live stream: its status is the answer
        return r.status_code, (await r.aread()).decode(errors="replace")


async def _make(client: httpx.AsyncClient, admin: dict[str, str], space: str, text: str) -> None:
    r = await client.post("/api/v1/spaces", json={"id": space, "dim": DIM}, headers=admin)
    assert r.status_code == 201, r.text
    memories = [
        {"id": "m1", "content": text, "embedding": random_unit(DIM, 1)},
        {"id": "m2", "content": text + " again", "embedding": random_unit(DIM, 2)},
    ]
    r = await client.post(
        f"/api/v1/spaces/{space}/memories",
        json={"memories": memories},
        headers={**admin, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert r.status_code == 202, r.text


async def test_every_space_route_for_every_role_on_own_other_and_missing_spaces(
    nats_server: Any, nc: Nats
) -> None:
    settings = gateway_settings(nats_server.url, auth="required", admin_key=ADMIN_KEY)
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    routes = list(_routes())
    assert len(routes) >= 19  # the table was read, not an empty loop
    async with running_gateway(settings) as client:
        tag = uuid.uuid4().hex[:6]
        own = {role: f"own-{role}-{tag}" for role in RANK}
        other = f"other-{tag}"
        for space in own.values():
            await _make(client, admin, space, "an agent's own memory")
        await _make(client, admin, other, SECRET)
        keys: dict[str, str | None] = {"none": None}
        for role in ("read", "write"):
            r = await client.post(
                "/api/v1/keys", json={"spaces": [own[role]], "role": role}, headers=admin
            )
            assert r.status_code == 201, r.text
            keys[role] = r.json()["key"]
        keys["admin"] = ADMIN_KEY  # last: its writes may create the missing space
        wal_before = (await nc.jetstream().stream_info(stream_name(other))).state.messages

        failures: list[str] = []
        scoped_answers: list[str] = []
        for role, key in keys.items():  # the admin last: it may write to the other
            if role == "admin":
                # zero accesses across spaces so far: no answer a scoped key got
                # holds anything of the other space's memories; its WAL is as it was
                for text in scoped_answers:
                    assert SECRET not in text, text[:300]
                info = await nc.jetstream().stream_info(stream_name(other))
                assert info.state.messages == wal_before
                r = await client.get(f"/api/v1/spaces/{other}", headers=admin)
                assert r.status_code == 200 and json.loads(r.text)["memories"] == 2
            for i, (method, path, needs, legacy) in enumerate(routes):
                missing = f"missing-{tag}-{role}-{i}"  # fresh: an admin write creates it
                refused: dict[str, str] = {}
                for target in ("own", "other", "missing"):
                    if target == "own":
                        space = own.get(role, own["admin"])
                    else:
                        space = other if target == "other" else missing
                    if role == "admin" and target == "other" and method == "DELETE":
                        continue  # the other space must outlive the matrix
                    status, text = await _call(client, method, path, space, key, legacy)
                    where = f"{method} {path} as {role} on {target}: {status} {text[:120]}"
                    if status >= 500:
                        failures.append(where)
                    elif role == "none":
                        if status != 401:
                            failures.append(where)
                    elif role == "admin" or (target == "own" and RANK[role] >= RANK[needs]):
                        if status in (401, 403):
                            failures.append(where)
                    elif status != 403:
                        failures.append(where)
                    else:
                        refused[target] = text.replace(space, "S")
                    if role in ("read", "write"):
                        scoped_answers.append(text)
                if "other" in refused and refused.get("other") != refused.get("missing"):
                    failures.append(f"{method} {path} as {role}: other != missing: {refused}")
        assert not failures, "\n".join(failures)
