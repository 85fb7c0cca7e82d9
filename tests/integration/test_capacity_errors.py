"""A capacity limit of the broker is named, never reported as a bug: opening
server-sent events past JetStream's consumer limit on the events stream
answers a problem naming the limit and the setting that raises it. On its own
nats-server: the limit is set low on the events stream, which every gateway
of a NATS shares."""

from __future__ import annotations

import asyncio

from engram_worker.worker import Worker
from tests.helpers import NatsServer, gateway_settings, running_gateway, worker_settings


async def test_sse_past_the_consumer_limit_is_a_named_problem(own_nats: NatsServer) -> None:
    worker = Worker(worker_settings(own_nats.url))
    await worker.start()
    try:
        settings = gateway_settings(own_nats.url, events_max_consumers=1)
        async with running_gateway(settings) as client:
            r = await client.post("/api/v1/spaces", json={"id": "capacity", "dim": 8})
            assert r.status_code == 201, r.text
            url = "/api/v1/spaces/capacity/events"
            async with client.stream("GET", url) as first:
                assert first.status_code == 200
                second = await client.get(url)
            assert second.status_code == 429, second.text
            problem = second.json()
            assert problem["title"] == "Capacity reached"
            assert "ENGRAM_EVENTS_MAX_CONSUMERS" in problem["hint"]
            assert "bug" not in second.text.lower()
            assert second.headers["retry-after"] == "2"
            # the first reader gone (its consumer deleted after the response), the
            # next one gets in
            for _ in range(100):
                async with client.stream("GET", url) as third:
                    if third.status_code == 200:
                        break
                await asyncio.sleep(0.05)
            assert third.status_code == 200
    finally:
        await worker.stop()


def test_only_the_unexplained_is_left_a_bug() -> None:
    import nats.errors
    import nats.js.errors

    from engram_gateway.infra_errors import classify

    assert classify(ValueError("x")) is None
    full = classify(nats.js.errors.APIError(code=400, err_code=10027, description="max streams"))
    assert full is not None and full.status == 503 and "max_streams" in (full.hint or "")
    down = classify(nats.errors.ConnectionClosedError())
    assert down is not None and down.status == 503 and down.title == "NATS unavailable"
    assert classify(nats.errors.TimeoutError()) is not None
