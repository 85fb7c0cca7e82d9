"""No space ever sees another's memories."""

from __future__ import annotations

import asyncio

import httpx

from tests.helpers import random_unit

Client = httpx.AsyncClient


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
            assert rec["results"], space
            assert all(r["memory"]["content"].startswith(word) for r in rec["results"])
        text = (
            await client.post(
                f"/api/v1/spaces/{space}/recall", json={"query": "secret note only", "k": 20}
            )
        ).json()
        assert all(r["memory"]["content"].startswith(word) for r in text["results"])

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
            assert rec["results"], space
            for r in rec["results"]:
                assert r["memory"]["content"].startswith(space), (space, r)

    await asyncio.gather(*(work(n, s) for n, s in enumerate(spaces)))
    for space in spaces:
        page = (await client.get(f"/api/v1/spaces/{space}/memories", params={"limit": 1000})).json()
        assert len(page["memories"]) == 60
        assert all(m["content"].startswith(space) for m in page["memories"])
