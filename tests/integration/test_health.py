"""``/health``: 200 only while the gateway's NATS connection is up and its
registry watch runs; otherwise 503 problem+json saying why."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from litestar.testing import AsyncTestClient

from engram_gateway.app import create_app
from tests.helpers import NatsServer, gateway_settings, running_gateway


async def _health_until(c: httpx.AsyncClient, status: int, timeout: float = 20) -> httpx.Response:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        r = await c.get("/health")
        if r.status_code == status or asyncio.get_running_loop().time() > deadline:
            return r
        await asyncio.sleep(0.1)


async def test_health_is_503_while_nats_is_gone(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "store")
    server.start()
    try:
        async with running_gateway(gateway_settings(server.url)) as c:
            r = await c.get("/health")
            assert r.status_code == 200 and r.json() == {"status": "ok"}

            server.stop(kill=True)
            r = await _health_until(c, 503)
            assert r.status_code == 503, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
            problem = r.json()
            assert problem["status"] == 503 and problem["title"] == "Unhealthy"
            assert "not connected to NATS" in problem["detail"]
            assert (await c.get("/ready")).status_code == 503  # unchanged semantics

            server.start()  # the gateway reconnects by itself
            r = await _health_until(c, 200, timeout=30)
            assert r.status_code == 200, r.text
    finally:
        server.stop()


async def test_health_is_503_when_the_registry_watch_stopped(nats_server: NatsServer) -> None:
    app = create_app(gateway_settings(nats_server.url))
    async with AsyncTestClient(app) as c:
        assert (await c.get("/health")).status_code == 200
        await app.state.bridge.registry.close()  # the watch ends, the connection stays
        r = await c.get("/health")
        assert r.status_code == 503, r.text
        assert "registry watch is not running" in r.json()["detail"]
