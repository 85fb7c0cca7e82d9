"""Export and import: ``GET …/export`` streams a space as NDJSON and ``POST …/import``
writes it into another space, which then answers recall and get like the source
(same ids, order, records); forgotten memories are not exported; a bad body is a
400 naming its line with nothing written; an export holds its own space only."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import httpx
import pytest

Client = httpx.AsyncClient
DIM = 16
PROBLEM = "application/problem+json"


def unit(rng: random.Random) -> list[float]:
    return [rng.gauss(0.0, 1.0) for _ in range(DIM)]


def near(base: list[float], rng: random.Random, noise: float) -> list[float]:
    return [x + rng.gauss(0.0, noise) for x in base]


async def export(client: Client, space: str, *tags: str) -> list[dict[str, Any]]:
    params = [("tag", t) for t in tags]
    async with client.stream("GET", f"/api/v1/spaces/{space}/export", params=params) as r:
        assert r.status_code == 200, await r.aread()
        assert r.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) async for line in r.aiter_lines() if line.strip()]
    return lines


async def import_body(client: Client, space: str, body: bytes, **params: Any) -> httpx.Response:
    return await client.post(
        f"/api/v1/spaces/{space}/import",
        content=body,
        params=params,
        headers={"content-type": "application/x-ndjson"},
    )


def ndjson(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


async def fill(client: Client, space: str, seed: int = 7) -> dict[str, list[float]]:
    """A space with clusters of similar memories (derived links), tags, metadata,
    occurred_at, an explicit link, a consolidated (semantic) memory and a forgotten
    memory. Returns the vectors by id."""
    r = await client.post("/api/v1/spaces", json={"id": space, "dim": DIM})
    assert r.status_code == 201, r.text
    rng = random.Random(seed)
    vectors: dict[str, list[float]] = {}
    memories = []
    for c in range(4):
        base = unit(rng)
        for i in range(5):
            mid = f"c{c}-m{i}"
            vectors[mid] = near(base, rng, 0.15 if c == 0 else 0.6)
            memories.append(
                {
                    "id": mid,
                    "content": f"cluster {c} memory {i}",
                    "embedding": vectors[mid],
                    "confidence": round(0.5 + 0.1 * i, 2),
                    "tags": ["even"] if i % 2 == 0 else ["odd", f"c{c}"],
                    "metadata": {"cluster": str(c)},
                    "occurred_at": f"2026-01-0{c + 1}T10:0{i}:00Z",
                }
            )
    vectors["gone"] = unit(rng)
    memories.append({"id": "gone", "content": "to be forgotten", "embedding": vectors["gone"]})
    r = await client.post(f"/api/v1/spaces/{space}/memories", json={"memories": memories})
    assert r.status_code == 202, r.text
    r = await client.post(
        f"/api/v1/spaces/{space}/links",
        json={"source": "c1-m0", "target": "c3-m4", "weight": 0.9, "kind": "causes"},
    )
    assert r.status_code == 202, r.text
    r = await client.post(f"/api/v1/spaces/{space}/consolidate", json={})
    assert r.status_code == 200, r.text
    assert r.json()["groups"], "cluster 0 is dense enough to be consolidated"
    r = await client.delete(f"/api/v1/spaces/{space}/memories/gone")
    assert r.status_code == 202, r.text
    # recalled once: the reinforcement (recalls, last_recall) travels with the memory
    r = await client.post(
        f"/api/v1/spaces/{space}/recall",
        json={"embedding": vectors["c2-m1"], "k": 1, "mode": "similarity"},
    )
    assert r.status_code == 200, r.text
    for _ in range(100):
        r = await client.get(f"/api/v1/spaces/{space}/memories/c2-m1")
        if r.json()["recalls"] == 1:
            break
        await asyncio.sleep(0.05)
    assert r.json()["recalls"] == 1 and r.json()["last_recall"] is not None
    return vectors


async def recall(client: Client, space: str, cue: list[float], mode: str) -> list[dict[str, Any]]:
    r = await client.post(
        f"/api/v1/spaces/{space}/recall",
        json={"embedding": cue, "k": 8, "mode": mode, "reinforce": False},
    )
    assert r.status_code == 200, r.text
    results: list[dict[str, Any]] = r.json()["results"]
    return results


async def record(client: Client, space: str, memory_id: str) -> dict[str, Any]:
    r = await client.get(
        f"/api/v1/spaces/{space}/memories/{memory_id}", params={"include_embedding": "true"}
    )
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    doc.pop("seq")  # where it sits in its stream; age and reinforcement are carried over
    return doc


async def test_round_trip_keeps_records_and_recall(client: Client, new_space: Any) -> None:
    a, b = new_space("exp"), new_space("imp")
    vectors = await fill(client, a)
    lines = await export(client, a)
    header, *memories, end = lines
    assert header["engram_export"] == 1 and header["space"] == a
    assert header["settings"]["dim"] == DIM and header["settings"]["links"]["semantic_k"] == 5
    ids = [m["id"] for m in memories]
    assert "gone" not in ids
    assert [m["seq"] for m in memories] == sorted(m["seq"] for m in memories)
    semantic = [m for m in memories if m["kind"] == "semantic"]
    assert semantic, "consolidation made semantic memories"
    for sem in semantic:
        assert len(sem["members"]) >= 3
        assert ids.index(sem["id"]) > max(ids.index(x) for x in sem["members"])
    linked = next(m for m in memories if m["id"] == "c3-m4")
    assert linked["links"] == [{"target": "c1-m0", "weight": 0.9, "kind": "causes"}]
    assert end == {"end": {"memories": len(memories), "links": 1}}

    r = await import_body(client, b, ndjson(lines), create="true")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["space"] == b and body["created"] is True
    assert (body["memories"], body["links"]) == (len(memories), 1)
    assert body["seq"] == len(memories) + 1  # a fresh stream: one message each

    r = await client.get(f"/api/v1/spaces/{b}")
    assert r.json()["memories"] == len(memories)
    for mid in ids:
        assert await record(client, b, mid) == await record(client, a, mid), mid

    rng = random.Random(99)
    cues = [vectors["c0-m0"], vectors["c1-m0"], vectors["c3-m2"], unit(rng), unit(rng)]
    for mode in ("similarity", "spreading"):
        for cue in cues:
            got, want = await recall(client, b, cue, mode), await recall(client, a, cue, mode)
            assert [x["memory"]["id"] for x in got] == [x["memory"]["id"] for x in want], mode
            assert [x["hops"] for x in got] == [x["hops"] for x in want]
            for x, y in zip(got, want, strict=True):
                assert x["score"] == pytest.approx(y["score"], rel=1e-3, abs=1e-6)

    # exported again, the copy says the same (the explicit link and the members too)
    again = await export(client, b)
    strip = ("seq",)
    assert [{k: v for k, v in m.items() if k not in strip} for m in again[1:-1]] == [
        {k: v for k, v in m.items() if k not in strip} for m in memories
    ]


async def test_tag_filtered_export(client: Client, new_space: Any) -> None:
    a, b = new_space("exp"), new_space("imp")
    await fill(client, a)
    lines = await export(client, a, "odd", "c1")
    header, *memories, end = lines
    assert header["tags"] == ["odd", "c1"]
    assert sorted(m["id"] for m in memories) == ["c1-m1", "c1-m3"]
    assert end == {"end": {"memories": 2, "links": 0}}
    evens = (await export(client, a, "even"))[1:-1]
    episodic = {m["id"] for m in evens if m["kind"] == "episodic"}
    assert episodic == {f"c{c}-m{i}" for c in range(4) for i in (0, 2, 4)}
    for m in evens:  # semantic ones (their members are mostly "even": so are they)
        assert set(m["members"]) <= episodic and "even" in m["tags"]
    # the link c1-m0 — c3-m4 has both ends tagged "even": it comes along
    assert sum(len(m["links"]) for m in evens) == 1
    r = await import_body(client, b, ndjson(lines), create="true")
    assert r.status_code == 200, r.text
    listed = await client.get(f"/api/v1/spaces/{b}/memories")
    assert [m["id"] for m in listed.json()["memories"]] == [m["id"] for m in memories]


async def test_export_holds_only_its_space(client: Client, new_space: Any) -> None:
    a, b = new_space("iso"), new_space("iso")
    for space, prefix in ((a, "a"), (b, "b")):
        r = await client.post(
            f"/api/v1/spaces/{space}/memories",
            json={
                "memories": [{"id": f"{prefix}{i}", "content": f"{prefix} {i}"} for i in range(5)]
            },
        )
        assert r.status_code == 202, r.text
    assert [m["id"] for m in (await export(client, a))[1:-1]] == [f"a{i}" for i in range(5)]
    assert [m["id"] for m in (await export(client, b))[1:-1]] == [f"b{i}" for i in range(5)]


async def test_export_pages_stay_under_max_payload(client: Client, new_space: Any) -> None:
    """Big memories: many pages of the worker's export query, every memory once."""
    space = new_space("big")
    content = "x" * 60_000
    for batch in range(3):
        r = await client.post(
            f"/api/v1/spaces/{space}/memories",
            json={
                "memories": [
                    {"id": f"m{batch}-{i}", "content": f"{i} {content}"} for i in range(20)
                ]
            },
        )
        assert r.status_code == 202, r.text
    lines = await export(client, space)
    assert len(lines) == 62 and lines[-1] == {"end": {"memories": 60, "links": 0}}


async def test_import_errors_are_problems(client: Client, new_space: Any) -> None:
    a, b = new_space("exp"), new_space("imp")
    await fill(client, a)
    lines = await export(client, a)

    # unknown space, without ?create
    r = await import_body(client, b, ndjson(lines))
    assert r.status_code == 404 and r.headers["content-type"].startswith(PROBLEM)

    # a bad line: 400 naming it, nothing written (not even the space)
    bad = ndjson(lines[:3]) + b'{"id": "broken", "content": ""}\n' + ndjson(lines[3:])
    r = await import_body(client, b, bad, create="true")
    assert r.status_code == 400 and r.headers["content-type"].startswith(PROBLEM)
    assert r.json()["detail"].startswith("line 4: content"), r.text
    assert (await client.get(f"/api/v1/spaces/{b}")).status_code == 404

    r = await import_body(client, b, ndjson(lines[:2]) + b"{not json\n", create="true")
    assert r.status_code == 400 and r.json()["detail"].startswith("line 3: not valid JSON")

    # a truncated export (its end line says more than the body holds)
    r = await import_body(client, b, ndjson(lines[:3] + lines[-1:]), create="true")
    assert r.status_code == 400 and "incomplete" in r.json()["detail"]

    # dim mismatch: the header, or a memory line without a header
    r = await client.post("/api/v1/spaces", json={"id": b, "dim": 8})
    assert r.status_code == 201
    r = await import_body(client, b, ndjson(lines))
    assert r.status_code == 400 and r.json()["detail"].startswith("line 1: settings.dim")
    r = await import_body(client, b, ndjson([{"id": "x", "content": "x"}, lines[1]]))
    assert r.status_code == 400, r.text
    assert r.json()["detail"].startswith("line 2: embedding_b64: expected 8 values")
    r = await client.get(f"/api/v1/spaces/{b}")
    assert r.json()["memories"] == 0

    # a link to a memory the body does not hold
    r = await import_body(
        client,
        b,
        ndjson([{"id": "y", "content": "y", "links": [{"target": "nobody", "weight": 0.5}]}]),
    )
    assert r.status_code == 400 and r.json()["detail"].startswith("line 1: links")
