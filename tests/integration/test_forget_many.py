"""``POST /api/v1/spaces/{space}/forget`` through a real gateway and worker: many
memories forgotten in one request, a retried request stored once, bad bodies and
unknown spaces refused, and other spaces untouched."""

from __future__ import annotations

from typing import Any

import httpx

Client = httpx.AsyncClient
DIM = 8


def vec(i: int) -> list[float]:
    return [1.0 if j == i % DIM else 0.1 for j in range(DIM)]


async def fill(client: Client, space: str, ids: list[str], label: str = "") -> int:
    r = await client.post("/api/v1/spaces", json={"id": space, "dim": DIM})
    assert r.status_code in (200, 201), r.text
    memories = [
        {"id": m, "content": f"{label}memory {m}", "embedding": vec(i)} for i, m in enumerate(ids)
    ]
    r = await client.post(f"/api/v1/spaces/{space}/memories", json={"memories": memories})
    assert r.status_code == 202, r.text
    seq: int = r.json()["seq"]
    return seq


async def live_ids(client: Client, space: str) -> list[str]:
    r = await client.get(f"/api/v1/spaces/{space}/memories", params={"limit": 1000})
    assert r.status_code == 200, r.text
    return [m["id"] for m in r.json()["memories"]]


async def test_forgets_every_id_in_one_request(client: Client, space_id: str) -> None:
    ids = [f"m{i}" for i in range(10)]
    stored = await fill(client, space_id, ids)
    r = await client.post(
        f"/api/v1/spaces/{space_id}/forget", json={"ids": ["m1", "m3", "ghost", "m5"]}
    )
    assert r.status_code == 202, r.text
    body = r.json()
    assert body == {"seq": stored + 4, "count": 4}  # one command per id, unknown ones too
    assert await live_ids(client, space_id) == [m for m in ids if m not in {"m1", "m3", "m5"}]
    r = await client.get(f"/api/v1/spaces/{space_id}/memories/m3")
    assert r.status_code == 404
    r = await client.post(
        f"/api/v1/spaces/{space_id}/recall",
        json={"embedding": vec(1), "k": 10, "mode": "similarity", "reinforce": False},
    )
    assert r.status_code == 200, r.text
    assert {x["memory"]["id"] for x in r.json()["results"]} == set(ids) - {"m1", "m3", "m5"}


async def test_a_full_batch(client: Client, space_id: str) -> None:
    ids = [f"m{i}" for i in range(1000)]
    await fill(client, space_id, ids[:10])
    r = await client.post(f"/api/v1/spaces/{space_id}/forget", json={"ids": ids})
    assert r.status_code == 202, r.text
    assert r.json()["count"] == 1000
    assert await live_ids(client, space_id) == []


async def test_retry_with_the_same_key_is_stored_once(client: Client, space_id: str) -> None:
    await fill(client, space_id, ["a", "b", "c"])
    url = f"/api/v1/spaces/{space_id}/forget"
    headers = {"Idempotency-Key": "forget-ab"}
    first = await client.post(url, json={"ids": ["a", "b"]}, headers=headers)
    again = await client.post(url, json={"ids": ["a", "b"]}, headers=headers)
    assert first.status_code == again.status_code == 202, again.text
    assert first.json() == again.json()
    # nothing was written by the retry: the next write comes right after the first
    r = await client.post(url, json={"ids": ["c"]})
    assert r.json()["seq"] == first.json()["seq"] + 1
    assert await live_ids(client, space_id) == []


async def _problem(client: Client, space: str, body: Any, status: int = 400) -> dict[str, Any]:
    r = await client.post(f"/api/v1/spaces/{space}/forget", json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    doc: dict[str, Any] = r.json()
    return doc


async def test_invalid_bodies_are_400_naming_the_field(client: Client, space_id: str) -> None:
    await fill(client, space_id, ["keep"])
    for body in ({"ids": []}, {"ids": [f"m{i}" for i in range(1001)]}, {"ids": "keep"}):
        doc = await _problem(client, space_id, body)
        assert [e["field"] for e in doc["errors"]] == ["ids"], doc
    doc = await _problem(client, space_id, {"ids": ["keep", "not valid!", "ok"]})
    assert [e["field"] for e in doc["errors"]] == ["ids[1]"]
    doc = await _problem(client, space_id, {"ids": ["keep"], "idz": []})
    assert "idz" in doc["detail"]
    doc = await _problem(client, space_id, {})
    assert doc["errors"][0]["field"] == "ids"
    r = await client.post(
        f"/api/v1/spaces/{space_id}/forget",
        json={"ids": ["keep"]},
        headers={"Idempotency-Key": "k" * 129},
    )
    assert r.status_code == 400 and "Idempotency-Key" in r.text
    assert await live_ids(client, space_id) == ["keep"]  # nothing refused was written


async def test_unknown_space_is_404_and_not_created(client: Client, space_id: str) -> None:
    doc = await _problem(client, space_id, {"ids": ["a"]}, status=404)
    assert space_id in doc["detail"]
    r = await client.get(f"/api/v1/spaces/{space_id}")
    assert r.status_code == 404


async def test_forgets_only_in_its_space(client: Client, new_space: Any) -> None:
    alpha, beta = new_space("alpha"), new_space("beta")
    ids = ["same-1", "same-2", "only-alpha"]
    await fill(client, alpha, ids, "alpha's ")
    await fill(client, beta, ids[:2], "beta's ")
    r = await client.post(f"/api/v1/spaces/{alpha}/forget", json={"ids": ids})
    assert r.status_code == 202, r.text
    assert await live_ids(client, alpha) == []
    assert await live_ids(client, beta) == ["same-1", "same-2"]
    r = await client.get(f"/api/v1/spaces/{beta}/memories/same-1")
    assert r.status_code == 200 and r.json()["content"] == "beta's memory same-1"
    # the X-Memory-Space header may repeat the path's space, not name another
    r = await client.post(
        f"/api/v1/spaces/{beta}/forget", json={"ids": ["same-1"]}, headers={"X-Memory-Space": alpha}
    )
    assert r.status_code == 400
    assert await live_ids(client, beta) == ["same-1", "same-2"]
