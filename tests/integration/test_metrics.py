"""Prometheus metrics, read as Prometheus reads them: by scraping the worker's own
HTTP port and the gateway's /metrics, parsed with prometheus_client's parser.
Per-space series move for their space only; rejections count by category; the
gateway labels requests by route template; a deleted space's series go away."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from nats.aio.client import Client as Nats
from prometheus_client.parser import text_string_to_metric_families

from engram_contract.subjects import command_subject, stream_name
from engram_worker.worker import Worker
from tests.helpers import (
    NatsServer,
    basis,
    create_space_over_http,
    eventually,
    free_port,
    gateway_settings,
    running_gateway,
    store_vectors,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def spaces_in(samples: Samples) -> set[str]:
    return {v for (_, ls), _ in samples.items() for k, v in ls if k == "memory_space"}


async def scrape(url: str) -> Samples:
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.get(url)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return parse(r.text)


@pytest.fixture
async def metered(
    nats_server: NatsServer, workers: Callable[..., Any]
) -> AsyncIterator[tuple[Worker, httpx.AsyncClient]]:
    """A worker serving /metrics on a free port, and a gateway's client."""
    # the worker hosts every space earlier tests of the session left: keep each one's
    # series (the __other__ cap is tested in tests/unit/test_metrics.py)
    worker: Worker = await workers(metrics_port=free_port(), max_metric_spaces=10_000)
    async with running_gateway(gateway_settings(nats_server.url)) as client:
        yield worker, client


def worker_url(worker: Worker, path: str = "/metrics") -> str:
    assert worker.metrics_port is not None
    return f"http://127.0.0.1:{worker.metrics_port}{path}"


async def test_store_and_recall_move_only_their_spaces_series(
    metered: tuple[Worker, httpx.AsyncClient], new_space: Callable[[str], str]
) -> None:
    worker, client = metered
    a, b = new_space("ma"), new_space("mb")
    await create_space_over_http(client, a)
    await create_space_over_http(client, b)
    await store_vectors(client, b, {"b1": basis(0)})
    await eventually(lambda: _applied(worker, b, 1))
    before = await scrape(worker_url(worker))

    seq = await store_vectors(client, a, {"x": basis(0), "y": basis(1), "z": basis(2)})
    r = await client.post(f"/api/v1/spaces/{a}/recall", json={"embedding": basis(0), "k": 2})
    assert r.status_code == 200, r.text
    after = await scrape(worker_url(worker))

    commands = "engram_commands_total"
    assert value(after, commands, memory_space=a, verb="remember", outcome="applied") == 3
    assert value(after, "engram_recall_duration_seconds_count", memory_space=a) == 1
    recalls = "engram_recall_duration_seconds_count"
    assert value(after, recalls, memory_space=a, mode="spreading") == 1  # the default mode
    assert value(after, "engram_memories", memory_space=a) == 3
    assert value(after, "engram_applied_seq", memory_space=a) >= seq
    assert value(after, "engram_wal_lag", memory_space=a) == 0
    assert value(after, "engram_index_memory_bytes", memory_space=a) > 0
    # B's series did not move
    for name in (
        commands,
        "engram_recall_duration_seconds_count",
        "engram_memories",
        "engram_applied_seq",
    ):
        assert value(after, name, memory_space=b) == value(before, name, memory_space=b), name
    assert value(after, "engram_memories", memory_space=b) == 1


async def _applied(worker: Worker, space: str, seq: int) -> bool | None:
    host = worker.hosts.get(space)
    return True if host is not None and host.state.applied_seq >= seq else None


async def test_a_rejected_message_counts_by_reason(
    metered: tuple[Worker, httpx.AsyncClient], space_id: str, nc: Nats
) -> None:
    worker, client = metered
    await create_space_over_http(client, space_id)
    js = nc.jetstream()
    await js.publish(
        command_subject(space_id, "remember"), b"{not json", stream=stream_name(space_id)
    )
    ack = await js.publish(
        command_subject(space_id, "remember"),
        json.dumps({"schema_version": 2, "command_id": "c1"}).encode(),
        stream=stream_name(space_id),
    )
    await eventually(lambda: _applied(worker, space_id, ack.seq))
    samples = await scrape(worker_url(worker))
    rejected = "engram_rejected_messages_total"
    assert value(samples, rejected, memory_space=space_id, reason="not_json") == 1
    assert value(samples, rejected, memory_space=space_id, reason="schema_version") == 1
    assert value(samples, rejected, memory_space=space_id) == 2
    assert (
        value(
            samples,
            "engram_commands_total",
            memory_space=space_id,
            verb="remember",
            outcome="rejected",
        )
        == 2
    )
    # the reason's free text never becomes a label value
    reasons = {v for (n, ls), _ in samples.items() if n == rejected for k, v in ls if k == "reason"}
    assert reasons <= {
        "not_json",
        "invalid",
        "schema_version",
        "unknown_command",
        "unknown_memory",
        "bad_vector",
        "other",
    }


async def test_gateway_counts_requests_by_route_template(
    metered: tuple[Worker, httpx.AsyncClient], space_id: str
) -> None:
    _, client = metered
    await create_space_over_http(client, space_id)
    await store_vectors(client, space_id, {"m-1": basis(0)})
    r = await client.post(f"/api/v1/spaces/{space_id}/recall", json={"embedding": basis(0)})
    assert r.status_code == 200, r.text
    assert (await client.get(f"/api/v1/spaces/{space_id}/memories/m-1")).status_code == 200
    assert (await client.get(f"/api/v1/spaces/{space_id}/memories/nope")).status_code == 404
    assert (await client.get(f"/no/such/path/{space_id}")).status_code == 404

    r = await client.get("/metrics")
    assert r.status_code == 200
    samples = parse(r.text)
    requests = "engram_http_requests_total"
    recall = "/api/v1/spaces/{space}/recall"
    memory = "/api/v1/spaces/{space}/memories/{memory_id}"
    assert value(samples, requests, method="POST", route=recall, status="200") == 1
    assert value(samples, requests, method="GET", route=memory, status="200") == 1
    assert value(samples, requests, method="GET", route=memory, status="404") == 1
    assert value(samples, requests, route="__unmatched__", status="404") == 1
    assert value(samples, "engram_http_request_duration_seconds_count", route=recall) == 1
    assert value(samples, "engram_spaces", status="active") >= 2  # this one and the default
    assert ("engram_memory_space_default_fallback_total", frozenset()) in samples
    # no space id or memory id in any label value
    label_values = {v for (_, ls), _ in samples.items() for _, v in ls}
    assert not any(space_id in v or "m-1" in v or "nope" in v for v in label_values)


async def test_worker_health_and_ready_when_caught_up(
    metered: tuple[Worker, httpx.AsyncClient], space_id: str
) -> None:
    worker, client = metered
    await create_space_over_http(client, space_id)
    await store_vectors(client, space_id, {"m-1": basis(0)})
    async with httpx.AsyncClient(timeout=10) as http:
        health = await http.get(worker_url(worker, "/health"))
        assert health.status_code == 200
        assert health.json() == {"status": "ok"}
        ready = await http.get(worker_url(worker, "/ready"))
        assert ready.status_code == 200, ready.text
        body = ready.json()
        assert body["status"] == "ready"
        assert body["nats_connected"] and body["registry_loaded"]
        assert space_id not in body["behind"]
        assert (await http.get(worker_url(worker, "/nope"))).status_code == 404


async def test_ready_fails_while_a_space_is_stuck_behind(
    metered: tuple[Worker, httpx.AsyncClient], space_id: str
) -> None:
    """A space behind its WAL whose fold has not moved for ENGRAM_STUCK_AFTER is
    what an operator must hear about: /ready answers 503 and names it; a space
    merely catching up does not."""
    worker, client = metered
    await create_space_over_http(client, space_id)
    seq = await store_vectors(client, space_id, {"m-1": basis(0)})
    await eventually(lambda: _applied(worker, space_id, seq))
    host = worker.hosts[space_id]
    # what a stuck fold looks like from outside: messages pending, nothing folded
    host.wal.stream_last = host.state.applied_seq + 5
    async with httpx.AsyncClient(timeout=10) as http:
        ready = await http.get(worker_url(worker, "/ready"))
        assert ready.status_code == 200, ready.text  # behind, but moving a moment ago
        assert ready.json()["behind"][space_id] == 5
        assert ready.json()["stuck"] == {}
        host.wal.progress_at -= worker.settings.stuck_after + 1
        ready = await http.get(worker_url(worker, "/ready"))
        assert ready.status_code == 503, ready.text
        body = ready.json()
        assert body["status"] == "not ready"
        assert body["stuck"][space_id]["lag"] == 5
        assert body["stuck"][space_id]["no_progress_s"] > worker.settings.stuck_after
        # the fold moves again: ready
        seq = await store_vectors(client, space_id, {"m-2": basis(1)})
        await eventually(lambda: _applied(worker, space_id, seq))
        ready = await http.get(worker_url(worker, "/ready"))
        assert ready.status_code == 200, ready.text
        assert ready.json()["stuck"] == {}


async def test_deleting_a_space_removes_its_series(
    metered: tuple[Worker, httpx.AsyncClient], new_space: Callable[[str], str]
) -> None:
    worker, client = metered
    doomed, kept = new_space("md"), new_space("mk")
    for space in (doomed, kept):
        await create_space_over_http(client, space)
        await store_vectors(client, space, {"m-1": basis(0)})
        r = await client.post(f"/api/v1/spaces/{space}/recall", json={"embedding": basis(0)})
        assert r.status_code == 200, r.text
    assert {doomed, kept} <= spaces_in(await scrape(worker_url(worker)))

    assert (await client.delete(f"/api/v1/spaces/{doomed}")).status_code in (200, 202, 204)

    async def gone() -> Samples | None:
        samples = await scrape(worker_url(worker))
        return samples if doomed not in spaces_in(samples) else None

    samples = await eventually(gone)
    assert kept in spaces_in(samples)
    assert value(samples, "engram_memories", memory_space=kept) == 1


async def test_worker_health_fails_once_its_nats_connection_is_closed(
    workers: Callable[..., Any],
) -> None:
    """/health means the worker can serve: 200 while its NATS connection and its
    subscriptions are up, 503 saying why once the connection is gone."""
    worker: Worker = await workers(metrics_port=free_port())
    async with httpx.AsyncClient(timeout=10) as http:
        health = await http.get(worker_url(worker, "/health"))
        assert health.status_code == 200, health.text
        assert health.json() == {"status": "ok"}
        await worker.nc.close()
        health = await http.get(worker_url(worker, "/health"))
        assert health.status_code == 503, health.text
        body = health.json()
        assert body["status"] == "unhealthy"
        assert "not connected to NATS" in body["problems"]
    await worker.stop()
    worker.hosts.clear()
