"""Fixtures: a real nats-server (JetStream) from the venv on a free port with a
temporary store dir; in-process workers and gateways per test; processes for
kill/restart tests. Each test uses its own space ids, so tests never see each
other's data."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
import uvicorn
from nats.aio.client import Client

from engram_cli.devstack import start_nats_server, wait_for_port
from engram_contract.settings import GatewaySettings, WorkerSettings
from engram_gateway.app import create_app
from engram_worker.worker import Worker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class NatsServer:
    store_dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = start_nats_server(
            self.store_dir, self.port, log_file=self.store_dir.parent / "nats.log"
        )

    def stop(self, kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            self.proc.wait(15)
        self.proc = None


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path_factory.mktemp("nats") / "store")
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


def worker_settings(url: str, **over: Any) -> WorkerSettings:
    # no metrics endpoint unless a test asks for one (tests pass a free port):
    # many workers in one run would all try the default port
    over.setdefault("metrics_port", 0)
    return WorkerSettings(nats_url=url, **over)


def gateway_settings(url: str, **over: Any) -> GatewaySettings:
    return GatewaySettings(nats_url=url, **over)


@pytest.fixture
async def worker(nats_server: NatsServer) -> AsyncIterator[Worker]:
    w = Worker(worker_settings(nats_server.url))
    await w.start()
    yield w
    await w.stop()


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
        if w.hosts:
            await w.stop()


@contextlib.asynccontextmanager
async def running_gateway(settings: GatewaySettings) -> AsyncIterator[httpx.AsyncClient]:
    """A real uvicorn serving ``create_app(settings)`` on a free loopback port, in this
    event loop, and an httpx client for it."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("gateway exited during start-up")
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            yield c
    finally:
        server.should_exit = True
        await task


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


class Proc:
    """An engram process (``engram worker`` / ``engram gateway``) for kill tests."""

    def __init__(self, role: str, env: dict[str, str], log: Path) -> None:
        self.role, self.env, self.log = role, env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = open(self.log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engram_cli", self.role],
            env={**os.environ, **self.env},
            stdout=out,
            stderr=out,
        )

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture
def procs(tmp_path: Path, nats_server: NatsServer) -> Iterator[Any]:
    started: list[Proc] = []

    def spawn(role: str, **env: str) -> Proc:
        p = Proc(
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


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/ready", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout}s")


__all__ = [
    "NatsServer",
    "free_port",
    "gateway_settings",
    "running_gateway",
    "wait_for_port",
    "wait_http",
    "worker_settings",
]
