"""Kill and restart workers and gateways: nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.helpers import (
    NatsServer,
    free_port,
    gateway_settings,
    random_unit,
    running_gateway,
    wait_ready,
    worker_settings,
)


def _probe(seed: int) -> dict[str, Any]:
    # by similarity and without reinforcement: what a replay must reproduce exactly,
    # and nothing written into the WALs under test
    return {
        "embedding": random_unit(16, seed),
        "k": 5,
        "consistency": "strong",
        "mode": "similarity",
        "reinforce": False,
    }


async def _recall_ids(c: httpx.AsyncClient, space: str, seed: int) -> list[str]:
    # until ok: a worker starting up answers once it has loaded every space
    r = await _until_ok(c, "POST", f"/api/v1/spaces/{space}/recall", json=_probe(seed))
    assert r.status_code == 200, r.text
    return [x["memory"]["id"] for x in r.json()["results"]]


async def _until_ok(c: httpx.AsyncClient, method: str, url: str, **kw: Any) -> httpx.Response:
    async with asyncio.timeout(30):
        while True:
            r = await c.request(method, url, **kw)
            if r.status_code < 500:
                return r
            await asyncio.sleep(0.2)


async def test_worker_killed_and_restarted_replays_and_answers_as_before(
    procs: Any, new_space: Any
) -> None:
    port = free_port()
    procs("gateway", ENGRAM_HTTP_PORT=str(port))
    worker = procs("worker")
    base = f"http://127.0.0.1:{port}"
    await asyncio.to_thread(wait_ready, base)
    spaces = [new_space("replay") for _ in range(3)]
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        for n, space in enumerate(spaces):
            await c.post("/api/v1/spaces", json={"id": space, "dim": 16})
            r = await c.post(
                f"/api/v1/spaces/{space}/memories",
                json={
                    "memories": [
                        {
                            "id": f"{space}-{i}",
                            "content": f"c{i}",
                            "embedding": random_unit(16, n * 1000 + i),
                        }
                        for i in range(300)
                    ]
                },
            )
            assert r.status_code == 202
        before = {s: await _recall_ids(c, s, n * 1000 + 7) for n, s in enumerate(spaces)}
        assert all(ids[0] == f"{s}-7" for s, ids in before.items())

        worker.kill()
        r = await c.post(f"/api/v1/spaces/{spaces[0]}/recall", json={"query": "x"})
        assert r.status_code == 503 and r.json()["title"] == "No worker"
        # writes are still acknowledged while no worker runs: the WAL holds them
        r = await c.post(
            f"/api/v1/spaces/{spaces[0]}/memories",
            json={"id": "while-down", "content": "d", "embedding": random_unit(16, 5555)},
        )
        assert r.status_code == 202

        procs("worker")
        for n, s in enumerate(spaces):
            r = await _until_ok(
                c,
                "POST",
                f"/api/v1/spaces/{s}/recall",
                json=_probe(n * 1000 + 7),
            )
            assert [x["memory"]["id"] for x in r.json()["results"]] == before[s]
        assert (await _recall_ids(c, spaces[0], 5555))[0] == "while-down"
        shown = (await c.get(f"/api/v1/spaces/{spaces[0]}")).json()
        assert shown["memories"] == 301


async def test_gateway_restarted_nothing_lost(procs: Any, new_space: Any) -> None:
    port = free_port()
    procs("worker")
    gw = procs("gateway", ENGRAM_HTTP_PORT=str(port))
    base = f"http://127.0.0.1:{port}"
    await asyncio.to_thread(wait_ready, base)
    space = new_space("gw")
    acked: list[str] = []
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        for i in range(5):
            r = await c.post(
                f"/api/v1/spaces/{space}/memories",
                json={"memories": [{"content": f"batch {i} item {j}"} for j in range(20)]},
            )
            assert r.status_code == 202
            acked += r.json()["ids"]
    gw.kill()
    procs("gateway", ENGRAM_HTTP_PORT=str(port))
    await asyncio.to_thread(wait_ready, base)
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        page = (await c.get(f"/api/v1/spaces/{space}/memories", params={"limit": 1000})).json()
        assert sorted(m["id"] for m in page["memories"]) == sorted(acked)


@pytest.mark.slow
async def test_nats_server_restart_keeps_spaces(tmp_path: Any, new_space: Any) -> None:
    """A fresh nats-server of our own (not the shared one), stopped and started again."""
    from engram_worker.worker import Worker

    server = NatsServer(tmp_path / "store")
    server.start()
    space = new_space("durable")
    try:
        w = Worker(worker_settings(server.url))
        await w.start()
        async with running_gateway(gateway_settings(server.url)) as c:
            r = await c.post(
                f"/api/v1/spaces/{space}/memories",
                json={"id": "keep", "content": "k", "embedding": random_unit(384, 1)},
            )
            assert r.status_code == 202
        await w.stop()
        server.stop()
        server.start()
        w = Worker(worker_settings(server.url))
        await w.start()
        async with running_gateway(gateway_settings(server.url)) as c:
            r = await c.post(
                f"/api/v1/spaces/{space}/recall",
                json={"embedding": random_unit(384, 1), "consistency": "strong"},
            )
            assert r.json()["results"][0]["memory"]["id"] == "keep"
        await w.stop()
    finally:
        server.stop()
