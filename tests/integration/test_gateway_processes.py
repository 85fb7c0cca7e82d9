"""A gateway of several processes (``ENGRAM_HTTP_WORKERS``): a client's requests
land on any of them, and it still reads its own writes, sees every request in
/metrics and gets its events."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.aio.client import Client as Nats
from prometheus_client.mmap_dict import MmapedDict

from engram_gateway.processes import SHARED_DIR_ENV, shared_state
from engram_worker.worker import Worker
from tests.helpers import (
    DIM,
    NatsServer,
    free_port,
    gateway_settings,
    random_unit,
    running_gateway,
    wait_ready,
)
from tests.integration.test_events_sse import events

BATCH = 100  # memories per write


def _batch(round_: int) -> dict[str, Any]:
    return {
        "memories": [
            {
                "content": f"round {round_} fact {i}",
                "embedding": random_unit(DIM, 1000 * round_ + i),
            }
            for i in range(BATCH)
        ]
    }


async def _fresh(url: str, method: str, path: str, **kw: Any) -> httpx.Response:
    """One request on a connection of its own (so it may reach any process)."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        return await c.request(method, path, **kw)


Send = Callable[..., Awaitable[httpx.Response]]


def fresh(url: str) -> Send:
    return lambda method, path, **kw: _fresh(url, method, path, **kw)


async def _write_then_read(nc: Nats, write: Send, read: Send, space: str, rounds: int) -> None:
    """Each round: a batch through one connection, then the space's stats through
    another: the read asks the worker to wait for the write (the ``min_seq`` of the
    stats query the worker gets, seen here on the wire) and shows every memory."""
    asked = await nc.subscribe(f"spaces.{space}.q.stats")
    try:
        for round_ in range(rounds):
            r = await write("POST", f"/api/v1/spaces/{space}/memories", json=_batch(round_))
            assert r.status_code == 202, r.text
            seq = r.json()["seq"]
            shown = (await read("GET", f"/api/v1/spaces/{space}")).json()
            assert shown["applied_seq"] >= seq
            assert shown["memories"] == BATCH * (round_ + 1)
            query = json.loads((await asked.next_msg(timeout=5)).data)
            assert (query.get("min_seq") or 0) >= seq
    finally:
        await asked.unsubscribe()


@pytest.fixture
async def shared_dir(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    """What the parent of several gateway processes gives them (the acked table
    only: the metrics' multiprocess mode is chosen when prometheus_client is
    imported, which in this process it was long ago)."""
    with shared_state(max_spaces=100) as env:
        monkeypatch.setenv(SHARED_DIR_ENV, env[SHARED_DIR_ENV])
        yield


async def test_a_write_through_one_process_holds_back_a_read_through_another(
    nats_server: NatsServer, worker: Worker, nc: Nats, space_id: str, shared_dir: None
) -> None:
    settings = gateway_settings(nats_server.url)
    async with running_gateway(settings) as one, running_gateway(settings) as other:
        r = await one.post("/api/v1/spaces", json={"id": space_id, "dim": DIM})
        assert r.status_code == 201, r.text
        await _write_then_read(nc, one.request, other.request, space_id, rounds=3)
        reverse = space_id + "-r"
        r = await other.post("/api/v1/spaces", json={"id": reverse, "dim": DIM})
        assert r.status_code == 201, r.text
        await _write_then_read(nc, other.request, one.request, reverse, rounds=3)


# -- a real gateway of two processes --------------------------------------------------


def _server_processes(parent: int) -> list[int]:
    """The gateway's server processes: the children of uvicorn's parent process
    started by multiprocessing's spawn (not its resource tracker)."""
    pids = []
    for task in Path(f"/proc/{parent}/task").iterdir():
        pids += [int(p) for p in (task / "children").read_text().split()]
    return [p for p in pids if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]


def _shared_dir_of(pid: int) -> Path:
    env = dict(
        item.split(b"=", 1)
        for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if item
    )
    return Path(env[SHARED_DIR_ENV.encode()].decode())


def _served(metrics_dir: Path, route: str) -> dict[int, float]:
    """Requests on ``route`` counted by each process (its own metrics file)."""
    counts = {}
    for path in metrics_dir.glob("counter_*.db"):
        pid = int(path.stem.split("_")[1])
        values = MmapedDict(str(path), read_mode=True)
        try:
            counts[pid] = sum(
                value
                for key, value, _ in values.read_all_values()
                if "engram_http_requests_total" in key and f'"route": "{route}"' in key
            )
        finally:
            values.close()
    return counts


def _alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc")
async def test_two_gateway_processes_share_writes_metrics_and_events(
    procs: Any, worker: Worker, nc: Nats, space_id: str
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    gateway = procs("gateway", ENGRAM_HTTP_PORT=str(port), ENGRAM_HTTP_WORKERS="2")
    try:
        await asyncio.to_thread(wait_ready, url)
        assert gateway.proc is not None
        servers = _server_processes(gateway.proc.pid)
        assert len(servers) == 2
        shared = _shared_dir_of(servers[0])
        # fresh connections until both processes have answered some (the kernel
        # hands each connection to one of them)
        for _ in range(200):
            assert (await _fresh(url, "GET", "/health")).status_code == 200
            served = _served(shared / "metrics", "/health")
            if sorted(served) == sorted(servers) and all(served.values()):
                break
        else:
            pytest.fail(f"one process answered every connection: {served}")

        r = await _fresh(url, "POST", "/api/v1/spaces", json={"id": space_id, "dim": DIM})
        assert r.status_code == 201, r.text
        async with (
            httpx.AsyncClient(base_url=url, timeout=30) as listener,
            events(listener, space_id, types="stored") as feed,
        ):
            rounds = 4
            await _write_then_read(nc, fresh(url), fresh(url), space_id, rounds)
            stored = await feed.take(rounds * BATCH, timeout=30)
            assert len({e.id for e in stored}) == rounds * BATCH

        text = (await _fresh(url, "GET", "/metrics")).text
        route = "/api/v1/spaces/{space}/memories"
        assert _metric(text, "engram_http_requests_total", route=route, status="202") == rounds
        assert _metric(text, "engram_http_request_duration_seconds_count", route=route) == rounds
        assert _metric(text, "engram_spaces", status="active") >= 1
        # both processes counted some of the /health answers; /metrics sums them
        served = _served(shared / "metrics", "/health")
        assert _metric(text, "engram_http_requests_total", route="/health") == sum(served.values())
    finally:
        gateway.stop()  # SIGTERM: uvicorn stops its processes, then the directory goes
    assert gateway.proc is not None and gateway.proc.returncode == 0
    assert not shared.exists()
    assert not _alive(servers)
    assert os.environ.get(SHARED_DIR_ENV) is None
