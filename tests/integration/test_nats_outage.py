"""nats-server killed under a running gateway and worker: every route class
answers 503 "NATS unavailable" (with Retry-After) promptly — not a 10 s hang,
not a 500 blaming a bug — /ready says not ready, and once nats-server is back
the same requests succeed without restarting anything. On its own
nats-server, which the test kills and starts again on the same port and store."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from engram_cli.devstack import free_port
from engram_client import EngramClient
from engram_client.errors import Unavailable
from engram_worker.worker import Worker
from tests.helpers import NatsServer, gateway_settings, running_gateway, worker_settings

DIM = 8


def _requests(space: str) -> list[tuple[str, str, object]]:
    """One of each route class: write, read, query, listing, lifecycle, status, SSE."""
    return [
        ("POST", f"/api/v1/spaces/{space}/memories", {"content": "x", "embedding": [1.0] * DIM}),
        ("POST", f"/api/v1/spaces/{space}/recall", {"embedding": [1.0] * DIM, "k": 1}),
        ("GET", f"/api/v1/spaces/{space}/memories/m1", None),
        ("GET", f"/api/v1/spaces/{space}", None),
        ("POST", "/api/v1/spaces", {"id": f"{space}-new", "dim": DIM}),
        ("GET", "/api/v1/status", None),
        ("GET", f"/api/v1/spaces/{space}/events", None),
    ]


async def _ask(client: httpx.AsyncClient, method: str, path: str, body: object) -> httpx.Response:
    async with client.stream(method, path, json=body) as r:
        if not r.headers.get("content-type", "").startswith("text/event-stream"):
            await r.aread()
        return r


async def test_nats_down_is_a_prompt_503_and_everything_comes_back(own_nats: NatsServer) -> None:
    worker = Worker(worker_settings(own_nats.url))
    await worker.start()
    try:
        grpc_port = free_port()
        settings = gateway_settings(own_nats.url, nats_unavailable_after=1.0, grpc_port=grpc_port)
        async with (
            running_gateway(settings) as client,
            EngramClient.grpc(f"127.0.0.1:{grpc_port}", timeout=10) as over_grpc,
        ):
            space = "outage"
            r = await client.post("/api/v1/spaces", json={"id": space, "dim": DIM})
            assert r.status_code == 201, r.text
            memory = {"id": "m1", "content": "x", "embedding": [1.0] * DIM}
            r = await client.post(f"/api/v1/spaces/{space}/memories", json=memory)
            assert r.status_code == 202, r.text

            own_nats.stop(kill=True)
            for method, path, body in _requests(space):
                # well within the 10 s a request used to hang
                r = await asyncio.wait_for(_ask(client, method, path, body), 5)
                assert r.status_code == 503, (method, path, r.status_code, r.text)
                problem = r.json()
                assert problem["title"] == "NATS unavailable", (method, path, problem)
                assert "bug" not in r.text.lower()
                assert r.headers.get("retry-after") == "2"
            ready = await client.get("/ready")
            assert ready.status_code == 503 and ready.json()["nats_connected"] is False
            # gRPC too: UNAVAILABLE with the same words, promptly
            with pytest.raises(Unavailable, match="NATS unavailable"):
                await asyncio.wait_for(over_grpc.space(space).get("m1"), 5)

            own_nats.start()  # the same port and store: nothing restarts but the broker
            for method, path, body in _requests(space):
                if path.endswith("/events"):
                    continue  # an event stream does not end: its 200 is checked below

                async def served(m: str = method, p: str = path, b: object = body) -> int:
                    while True:
                        r = await _ask(client, m, p, b)
                        if r.status_code < 500:
                            return r.status_code
                        await asyncio.sleep(0.2)

                status = await asyncio.wait_for(served(), 20)
                assert status < 400, (method, path, status)
            async with client.stream("GET", f"/api/v1/spaces/{space}/events") as events:
                assert events.status_code == 200
            assert (await client.get("/ready")).status_code == 200
            assert (await over_grpc.space(space).get("m1")).id == "m1"
    finally:
        await worker.stop()
