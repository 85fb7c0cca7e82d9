"""Fixtures: a real nats-server (JetStream) from the venv on a free port with a
temporary store dir; in-process workers and gateways per test; processes for
kill/restart tests. Each test uses its own space ids, so tests never see each
other's data."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from nats.aio.client import Client

from engram_worker.worker import Worker
from tests.helpers import (
    EngramProcess,
    NatsServer,
    forget_workers,
    gateway_settings,
    purge_heartbeats,
    running_gateway,
    worker_settings,
)

# Spaces the tests create embed with hash-ngram-v1 (fast, any dim) unless a test
# names another embedder: the gateways and workers started here, the processes
# they spawn and the SDK read it. (New spaces default to e5-small otherwise.)
os.environ["ENGRAM_DEFAULT_EMBEDDER"] = "hash-ngram-v1"


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path_factory.mktemp("nats") / "store")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server of the test's own, for tests that kill it or change what the
    session's server shares (the events stream's limits)."""
    server = NatsServer(tmp_path / "store")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def space_id() -> str:
    """A fresh space id for this test."""
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def new_space() -> Any:
    return lambda prefix="t": f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def worker(nats_server: NatsServer) -> AsyncIterator[Worker]:
    w = Worker(worker_settings(nats_server.url))
    await w.start()
    yield w
    await w.stop()
    await purge_heartbeats(nats_server.url, [w.settings.worker_id])


@pytest.fixture
async def workers(nats_server: NatsServer) -> AsyncIterator[Any]:
    """Start workers (stopped gracefully at the end unless the test stopped them)."""
    started: list[Worker] = []

    async def start(**settings: Any) -> Worker:
        settings.setdefault("snapshot_interval", 3600)
        w = Worker(worker_settings(nats_server.url, **settings))
        await w.start()
        started.append(w)
        return w

    yield start
    for w in started:
        await w.stop()  # a no-op for those the test stopped
    await purge_heartbeats(nats_server.url, [w.settings.worker_id for w in started])


@pytest.fixture
async def client(nats_server: NatsServer, worker: Worker) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of a gateway (in process, real uvicorn), with a worker running."""
    async with running_gateway(gateway_settings(nats_server.url)) as c:
        yield c


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    conn = await nats.connect(nats_server.url)
    yield conn
    await conn.close()


@pytest.fixture
def procs(tmp_path: Path, nats_server: NatsServer) -> Iterator[Any]:
    started: list[EngramProcess] = []

    def spawn(role: str, **env: str) -> EngramProcess:
        p = EngramProcess(
            role,
            {"ENGRAM_NATS_URL": nats_server.url, "ENGRAM_LOG_LEVEL": "INFO", **env},
            tmp_path / f"{role}-{len(started)}.log",
        )
        p.start()
        started.append(p)
        return p

    yield spawn
    for p in started:
        p.kill()
    forget_workers(nats_server.url, started)
