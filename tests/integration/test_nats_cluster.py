"""A 3-node JetStream cluster with R3 streams: one node killed during ingest loses
no acknowledged write and stores none twice; ingest goes on; recall answers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engram_cli.devstack import NodePorts, start_nats_cluster
from engram_worker.worker import Worker
from tests.helpers import (
    eventually,
    free_port,
    gateway_settings,
    random_unit,
    running_gateway,
    worker_settings,
)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[tuple[NodePorts, Any]]]:
    nodes = start_nats_cluster(tmp_path / "nats", 3, free_port(), name=f"t{uuid.uuid4().hex[:6]}")
    yield nodes
    for _, proc in nodes:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.mark.slow
async def test_a_node_lost_during_ingest_loses_and_doubles_nothing(
    cluster: list[tuple[NodePorts, Any]],
) -> None:
    url = ",".join(node.url for node, _ in cluster)
    worker = Worker(worker_settings(url, stream_replicas=3))
    await worker.start()
    space = f"clu-{uuid.uuid4().hex[:8]}"
    acked: list[str] = []
    try:
        async with running_gateway(gateway_settings(url, stream_replicas=3)) as c:
            r = await c.post("/api/v1/spaces", json={"id": space, "dim": 16})
            assert r.status_code == 201, r.text

            async def write(n: int) -> None:
                batch = [
                    {"id": f"m{n}-{j}", "content": f"item {n} {j}", "embedding": random_unit(16, n)}
                    for j in range(20)
                ]
                # a client that retries a 503 with the same key, as Retry-After asks
                for _ in range(30):
                    try:
                        r = await c.post(
                            f"/api/v1/spaces/{space}/memories",
                            json={"memories": batch},
                            headers={"Idempotency-Key": f"batch-{n}"},
                        )
                    except httpx.HTTPError:
                        await asyncio.sleep(0.5)
                        continue
                    if r.status_code == 202:
                        acked.extend(m["id"] for m in batch)
                        return
                    assert r.status_code == 503, r.text
                    await asyncio.sleep(0.5)
                raise AssertionError(f"batch {n} never acknowledged")

            for n in range(10):
                await write(n)

            async def cluster_seen() -> dict[str, Any] | None:
                state: dict[str, Any] | None = (await c.get("/ready")).json()["nats_cluster"]
                return state  # null while the state cannot be read (a busy cluster)

            state = await eventually(cluster_seen, timeout=30)
            assert state["degraded"] is False and len(state["nodes"]) == 3
            # kill the node the worker's NATS connection uses: it must resume elsewhere
            connected = worker.nc.connected_url
            victim = next(
                proc for node, proc in cluster if connected and node.client == connected.port
            )
            victim.kill()
            for n in range(10, 30):
                await write(n)

            # the worker's WAL consumer resumes on another node (two missed
            # heartbeats), then the read-your-writes recall is answered
            async def recalled() -> httpx.Response | None:
                r = await c.post(
                    f"/api/v1/spaces/{space}/recall",
                    json={"embedding": random_unit(16, 25), "k": 1, "mode": "similarity"},
                )
                if r.status_code in (503, 504):
                    return None
                return r

            r = await eventually(recalled, timeout=60)
            assert r.status_code == 200, r.text
            assert r.json()["results"][0]["memory"]["id"].startswith("m25-")
            stored: list[str] = []
            cursor = None
            while True:
                params: dict[str, Any] = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
                page = (await c.get(f"/api/v1/spaces/{space}/memories", params=params)).json()
                stored += [m["id"] for m in page["memories"]]
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            assert len(stored) == len(set(stored)) == len(acked) == 600
            assert sorted(stored) == sorted(acked)

            # the lost node shows: the cluster is degraded, and still serving
            async def degraded() -> dict[str, Any] | None:
                r = await c.get("/ready")
                body: dict[str, Any] = r.json()
                return body if r.status_code == 200 and body["nats_cluster"]["degraded"] else None

            body = await eventually(degraded, timeout=60)
            assert len(body["nats_cluster"]["offline"]) == 1
            status = (await c.get("/api/v1/status", params={"space": space})).json()
            assert status["nats_cluster"]["degraded"] is True
    finally:
        await worker.stop()
