"""A worker killed with ``kill -9`` during ingest: nothing acknowledged is lost or
doubled; with one replica its spaces answer again within the TTL + 10 s, with two
no recall fails (the gateway asks the other replica again)."""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any

import httpx
import pytest

from engram_contract.placement import hosts
from tests.helpers import eventually, free_port, random_unit, wait_ready

TTL = 2.0  # the worker processes' ENGRAM_WORKER_TTL (tests.helpers.EngramProcess)


@pytest.mark.slow
@pytest.mark.parametrize("replicas", [1, 2])
async def test_kill_9_during_ingest(procs: Any, new_space: Any, replicas: int) -> None:
    env = {"ENGRAM_SPACE_REPLICAS": str(replicas)}
    port = free_port()
    procs("gateway", ENGRAM_HTTP_PORT=str(port), **env)
    workers = [procs("worker", **env) for _ in range(2)]
    ids = [w.env["ENGRAM_WORKER_ID"] for w in workers]
    base = f"http://127.0.0.1:{port}"
    await asyncio.to_thread(wait_ready, base)
    spaces = [new_space("fo") for _ in range(4)]
    acked: dict[str, list[str]] = {s: [] for s in spaces}
    recalls: list[tuple[float, str, int]] = []  # (when, space, status)
    stop = asyncio.Event()
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        for space in spaces:
            r = await c.post("/api/v1/spaces", json={"id": space, "dim": 16})
            assert r.status_code == 201, r.text
        # the victim hosts spaces[0] (as its primary, with two replicas)
        victim = workers[ids.index(hosts(spaces[0], ids, replicas)[0])]
        theirs = [s for s in spaces if victim.env["ENGRAM_WORKER_ID"] in hosts(s, ids, replicas)]

        async def ingest() -> None:
            n = 0
            while not stop.is_set():
                for space in spaces:
                    batch: list[dict[str, Any]] = [
                        {
                            "id": f"{space}-{n}-{j}",
                            "content": f"item {n} {j}",
                            "embedding": random_unit(16, n * 10 + j),
                        }
                        for j in range(10)
                    ]
                    r = await c.post(f"/api/v1/spaces/{space}/memories", json={"memories": batch})
                    assert r.status_code == 202, r.text  # the WAL takes writes without workers
                    acked[space] += [str(m["id"]) for m in batch]
                n += 1

        async def recall() -> None:
            while not stop.is_set():
                for space in spaces:
                    r = await c.post(
                        f"/api/v1/spaces/{space}/recall",
                        json={"embedding": random_unit(16, 3), "k": 3, "reinforce": False},
                    )
                    recalls.append((time.monotonic(), space, r.status_code))

        async def answering(space: str) -> bool | None:
            r = await c.post(
                f"/api/v1/spaces/{space}/recall", json={"embedding": random_unit(16, 3), "k": 1}
            )
            return True if r.status_code == 200 else None

        # both workers serve before the kill
        for space in spaces:
            await eventually(functools.partial(answering, space), timeout=30)
        tasks = [asyncio.create_task(ingest()), asyncio.create_task(recall())]
        await asyncio.sleep(1.5)
        victim.kill()
        killed = time.monotonic()
        await asyncio.sleep(TTL + 1.0)
        stop.set()
        await asyncio.gather(*tasks)
        # replicas 1: the victim's spaces answer again within TTL + 10 s
        back: dict[str, float] = {}
        for space in theirs:
            await eventually(functools.partial(answering, space), timeout=TTL + 10)
            back[space] = time.monotonic() - killed
        assert all(t <= TTL + 10 for t in back.values()), back
        # every acknowledged memory is there, exactly once
        for space in spaces:
            stored: list[str] = []
            cursor: str | None = None
            while True:
                params: dict[str, Any] = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
                r = await c.get(f"/api/v1/spaces/{space}/memories", params=params)
                assert r.status_code == 200, r.text
                stored += [m["id"] for m in r.json()["memories"]]
                cursor = r.json()["next_cursor"]
                if cursor is None:
                    break
            assert len(stored) == len(set(stored)), space
            assert sorted(stored) == sorted(acked[space]), space
    failed = [(round(t - killed, 2), s, code) for t, s, code in recalls if code != 200]
    if replicas == 2:
        assert not failed, failed[:5]
    else:  # only the victim's spaces, and only between the kill and their new host
        assert all(s in theirs and code == 503 for _, s, code in failed), failed[:5]
    assert sum(1 for t, _, _ in recalls if t > killed) > 0
