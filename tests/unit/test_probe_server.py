"""The worker's probe server (engram_worker.probes.ProbeServer) speaks enough HTTP
for what scrapes and probes send: GET and HEAD on /metrics, /health and /ready,
404 and 405 otherwise, keep-alive, and a 400 for what is not a request. A stand-in
for the worker answers (the answers themselves: tests/integration/test_metrics.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from engram_worker.probes import ProbeServer


class FakeWorker:
    def __init__(self) -> None:
        self.healthy = True
        self.scrapes = 0

    def health(self) -> tuple[bool, dict[str, Any]]:
        if self.healthy:
            return True, {"status": "ok"}
        return False, {"status": "unhealthy", "problems": ["not connected to NATS"]}

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        return False, {"status": "not ready", "behind": {"s1": 3}}

    def metrics_text(self) -> bytes:
        self.scrapes += 1
        if self.scrapes > 2:
            raise RuntimeError("broken collector")
        return b"# HELP up x\n# TYPE up gauge\nup 1.0\n"


@pytest.fixture
async def served() -> AsyncIterator[tuple[FakeWorker, ProbeServer, str]]:
    worker = FakeWorker()
    server = ProbeServer(worker)
    assert await server.start("127.0.0.1", 0)
    assert server.port is not None
    yield worker, server, f"http://127.0.0.1:{server.port}"
    await server.stop()
    assert server.port is None


async def test_routes_statuses_and_bodies(served: tuple[FakeWorker, ProbeServer, str]) -> None:
    worker, _, url = served
    async with httpx.AsyncClient(base_url=url, timeout=5) as http:
        r = await http.get("/health")
        assert (r.status_code, r.json()) == (200, {"status": "ok"})
        assert r.headers["content-type"] == "application/json"
        worker.healthy = False
        r = await http.get("/health?verbose=1")  # a query string does not change the route
        assert r.status_code == 503
        assert r.json()["problems"] == ["not connected to NATS"]
        r = await http.get("/ready")
        assert (r.status_code, r.json()["behind"]) == (503, {"s1": 3})
        r = await http.get("/metrics")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain")
        assert "up 1.0" in r.text
        r = await http.head("/metrics")
        assert r.status_code == 200 and r.content == b""
        assert int(r.headers["content-length"]) > 0
        assert (await http.get("/nope")).status_code == 404
        r = await http.post("/health", content=b"{}")
        assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
        # an answer that fails is a 500, and the server goes on
        assert (await http.get("/metrics")).status_code == 500
        assert (await http.get("/ready")).status_code == 503


async def test_keep_alive_serves_many_requests_on_one_connection(
    served: tuple[FakeWorker, ProbeServer, str],
) -> None:
    _, server, _ = served
    assert server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        for _ in range(3):
            writer.write(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            assert await reader.readexactly(length) == b'{"status":"ok"}'
        writer.write(b"GET /health HTTP/1.1\r\nconnection: close\r\n\r\n")
        await writer.drain()
        answer = await reader.read()  # the server closes after it
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b'{"status":"ok"}')
    finally:
        writer.close()


async def test_what_is_not_a_request_gets_a_400(
    served: tuple[FakeWorker, ProbeServer, str],
) -> None:
    _, server, url = served
    assert server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(b"hello there\r\n\r\n")
        await writer.drain()
        answer = await reader.read()
        assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        assert b"not an HTTP/1.x request line" in answer
    finally:
        writer.close()
    async with httpx.AsyncClient(base_url=url, timeout=5) as http:  # still serving
        assert (await http.get("/health")).status_code == 200


async def test_a_port_in_use_is_refused_without_raising() -> None:
    first = ProbeServer(FakeWorker())
    assert await first.start("127.0.0.1", 0)
    assert first.port is not None
    second = ProbeServer(FakeWorker())
    assert not await second.start("127.0.0.1", first.port)
    assert second.port is None
    await first.stop()
