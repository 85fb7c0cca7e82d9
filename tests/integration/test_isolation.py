"""No space ever sees another's memories."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.helpers import random_unit

Client = httpx.AsyncClient


def assert_own(space: str, own: dict[str, str], results: list[dict[str, Any]]) -> None:
    """Every result is one of ``space``'s own memories: its id is one the space
    holds, with the content the space stored under it (the ids alone are shared)."""
    for r in results:
        mid, content = r["memory"]["id"], r["memory"]["content"]
        assert mid in own, f"{space}: recall returned {mid!r}, not one of its memories"
        assert content == own[mid], f"{space}: {mid!r} came back as {content!r}"


async def test_same_ids_in_two_spaces_stay_apart(client: Client, new_space: object) -> None:
    alpha, beta = new_space("alpha"), new_space("beta")  # type: ignore[operator]
    for space in (alpha, beta):
        await client.post("/api/v1/spaces", json={"id": space, "dim": 16})
    shared = [f"shared-{i}" for i in range(5)]
    for i, mid in enumerate(shared):
        await client.post(
            f"/api/v1/spaces/{alpha}/memories",
            json={"id": mid, "content": f"alpha secret {i}", "embedding": random_unit(16, i)},
        )
        await client.post(
            f"/api/v1/spaces/{beta}/memories",
            json={"id": mid, "content": f"beta note {i}", "embedding": random_unit(16, i)},
        )
    await client.post(
        f"/api/v1/spaces/{alpha}/memories",
        json={"id": "alpha-only", "content": "alpha only", "embedding": random_unit(16, 99)},
    )

    own = {
        alpha: {mid: f"alpha secret {i}" for i, mid in enumerate(shared)}
        | {"alpha-only": "alpha only"},
        beta: {mid: f"beta note {i}" for i, mid in enumerate(shared)},
    }
    for space, word in ((alpha, "alpha"), (beta, "beta")):
        for i, mid in enumerate(shared):
            got = (await client.get(f"/api/v1/spaces/{space}/memories/{mid}")).json()
            assert got["content"].startswith(word)
            rec = (
                await client.post(
                    f"/api/v1/spaces/{space}/recall",
                    json={"embedding": random_unit(16, i), "k": 20},
                )
            ).json()
            # an empty answer fails: the space's own memory is found, and only its own
            assert rec["results"], f"{space}: recall returned nothing"
            assert rec["results"][0]["memory"]["id"] == mid, (space, rec["results"][0])
            assert_own(space, own[space], rec["results"])
        text = (
            await client.post(
                f"/api/v1/spaces/{space}/recall", json={"query": "secret note only", "k": 20}
            )
        ).json()
        assert text["results"], f"{space}: text recall returned nothing"
        assert_own(space, own[space], text["results"])

    r = await client.get(f"/api/v1/spaces/{beta}/memories/alpha-only")
    assert r.status_code == 404
    assert (await client.get(f"/api/v1/spaces/{alpha}/memories/alpha-only")).status_code == 200
    counts = [(await client.get(f"/api/v1/spaces/{s}")).json()["memories"] for s in (alpha, beta)]
    assert counts == [6, 5]


async def test_ten_spaces_written_and_recalled_concurrently_stay_scoped(
    client: Client, new_space: object
) -> None:
    spaces = [new_space(f"iso{i}") for i in range(10)]  # type: ignore[operator]

    async def work(n: int, space: str) -> None:
        await client.post("/api/v1/spaces", json={"id": space, "dim": 16})
        for i in range(15):
            await client.post(
                f"/api/v1/spaces/{space}/memories",
                json={
                    "memories": [
                        {
                            "id": f"m{i}-{j}",
                            "content": f"{space} item {i}.{j}",
                            "embedding": random_unit(16, i * 10 + j),
                        }
                        for j in range(4)
                    ]
                },
            )
            rec = (
                await client.post(
                    f"/api/v1/spaces/{space}/recall",
                    json={"embedding": random_unit(16, i * 10), "k": 10},
                )
            ).json()
            assert rec["space"] == space
            assert rec["results"], f"{space}: recall returned nothing"
            written = {f"m{a}-{b}": f"{space} item {a}.{b}" for a in range(i + 1) for b in range(4)}
            assert_own(space, written, rec["results"])

    await asyncio.gather(*(work(n, s) for n, s in enumerate(spaces)))
    for space in spaces:
        page = (await client.get(f"/api/v1/spaces/{space}/memories", params={"limit": 1000})).json()
        assert len(page["memories"]) == 60
        assert all(m["content"].startswith(space) for m in page["memories"])
        assert {m["id"] for m in page["memories"]} == {
            f"m{i}-{j}" for i in range(15) for j in range(4)
        }
