"""A space's embedder is the one that embeds its text, through the gateway and the
SDK over NATS: unknown names and dims it cannot make are refused at creation;
an ``openai`` space embeds through its endpoint (a local one, started here),
a failing endpoint is a 503/502 naming it and writes nothing; a large import
being embedded does not hold up a recall."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from engram_client import EngramClient, InvalidInput
from engram_worker.worker import Worker
from tests.embed_server import EmbedEndpoint, Reply, serve
from tests.helpers import NatsServer, gateway_settings, running_gateway

DIM = 32


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmbedEndpoint]:
    for ep in serve(EmbedEndpoint(dim=DIM)):
        monkeypatch.setenv("ENGRAM_EMBED_URL", ep.url)
        monkeypatch.setenv("ENGRAM_EMBED_API_KEY", "sk-never-shown-0123456789")
        monkeypatch.setenv("ENGRAM_EMBED_RETRIES", "1")
        monkeypatch.setenv("ENGRAM_EMBED_MAX_BATCH", "1000")
        yield ep


@pytest.fixture
async def gateway(nats_server: NatsServer, worker: Worker) -> AsyncIterator[httpx.AsyncClient]:
    async with running_gateway(gateway_settings(nats_server.url)) as c:
        yield c


async def test_unknown_embedder_is_refused_with_the_available_ones(
    gateway: httpx.AsyncClient, nats_server: NatsServer, space_id: str
) -> None:
    r = await gateway.post("/api/v1/spaces", json={"id": space_id, "embedder": "bert-9000"})
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["errors"][0]["field"] == "embedder"
    for name in ("e5-small", "hash-ngram-v1", "openai"):
        assert name in problem["detail"]
    async with EngramClient.nats(nats_server.url) as sdk:
        with pytest.raises(InvalidInput, match="available: e5-small, hash-ngram-v1, openai"):
            await sdk.create_space(space_id, embedder="bert-9000")


async def test_a_dim_the_embedder_cannot_make_is_refused(
    gateway: httpx.AsyncClient, space_id: str
) -> None:
    r = await gateway.post(
        "/api/v1/spaces", json={"id": space_id, "embedder": "e5-small", "dim": 16}
    )
    assert r.status_code == 400
    assert "produces 384-d vectors, space needs 16" in r.json()["detail"]
    # no embedder named: a dim the default cannot make gets one that can
    r = await gateway.post("/api/v1/spaces", json={"id": space_id, "dim": 16})
    assert r.status_code == 201, r.text
    assert r.json()["embedder"] == "hash-ngram-v1"


async def test_openai_without_an_endpoint_is_refused(
    gateway: httpx.AsyncClient, space_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ENGRAM_EMBED_URL", raising=False)
    r = await gateway.post("/api/v1/spaces", json={"id": space_id, "embedder": "openai"})
    assert r.status_code == 400
    assert "needs ENGRAM_EMBED_URL" in r.json()["detail"]


async def test_an_openai_space_embeds_through_its_endpoint(
    gateway: httpx.AsyncClient, endpoint: EmbedEndpoint, space_id: str
) -> None:
    body = {"id": space_id, "embedder": "openai", "dim": DIM}
    assert (await gateway.post("/api/v1/spaces", json=body)).status_code == 201
    memories = [{"content": f"memory number {i} about topic {i % 7}"} for i in range(300)]
    memories.append({"content": "The user has a cat called Miso"})
    r = await gateway.post(f"/api/v1/spaces/{space_id}/memories", json={"memories": memories})
    assert r.status_code == 202, r.text
    assert len(endpoint.requests) == 1  # 301 texts: one batched call
    r = await gateway.post(
        f"/api/v1/spaces/{space_id}/recall",
        json={"query": "cat called Miso", "k": 1, "mode": "similarity"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["memory"]["content"] == "The user has a cat called Miso"
    assert endpoint.requests[-1]["input"] == ["cat called Miso"]  # the cue, by the endpoint


async def test_a_failing_endpoint_writes_nothing_and_says_what_failed(
    gateway: httpx.AsyncClient, endpoint: EmbedEndpoint, space_id: str
) -> None:
    body = {"id": space_id, "embedder": "openai", "dim": DIM}
    assert (await gateway.post("/api/v1/spaces", json=body)).status_code == 201
    endpoint.script = lambda _: Reply(500)
    r = await gateway.post(f"/api/v1/spaces/{space_id}/memories", json={"content": "lost?"})
    assert r.status_code == 503
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert f"{endpoint.url}/v1/embeddings" in problem["detail"]
    assert "sk-never-shown" not in r.text
    assert len(endpoint.requests) == 2  # tried again once (ENGRAM_EMBED_RETRIES=1)
    r = await gateway.post(
        f"/api/v1/spaces/{space_id}/recall", json={"query": "lost?", "mode": "similarity"}
    )
    assert r.status_code == 503

    endpoint.script = lambda _: Reply(dim=DIM * 2)
    r = await gateway.post(f"/api/v1/spaces/{space_id}/memories", json={"content": "lost?"})
    assert r.status_code == 502
    assert f"returned {DIM * 2}-d vectors, the space needs {DIM}" in r.json()["detail"]

    stats = (await gateway.get(f"/api/v1/spaces/{space_id}")).json()
    assert stats["memories"] == 0
    listed = (await gateway.get(f"/api/v1/spaces/{space_id}/memories")).json()
    assert listed["memories"] == []

    endpoint.script = lambda _: Reply()  # back up: the same request now succeeds
    r = await gateway.post(f"/api/v1/spaces/{space_id}/memories", json={"content": "kept"})
    assert r.status_code == 202


async def test_a_recall_completes_while_a_large_import_is_embedding(
    gateway: httpx.AsyncClient, endpoint: EmbedEndpoint, space_id: str
) -> None:
    body = {"id": space_id, "embedder": "openai", "dim": DIM}
    assert (await gateway.post("/api/v1/spaces", json=body)).status_code == 201
    r = await gateway.post(f"/api/v1/spaces/{space_id}/memories", json={"content": "a first fact"})
    assert r.status_code == 202
    big_started, release = threading.Event(), threading.Event()

    def script(doc: dict[str, Any]) -> Reply:
        if len(doc["input"]) > 1:  # the import: held until the recall is answered
            big_started.set()
            release.wait(30)
        return Reply()

    endpoint.script = script
    memories = [{"content": f"imported memory {i}"} for i in range(1000)]
    bulk = asyncio.create_task(
        gateway.post(f"/api/v1/spaces/{space_id}/memories", json={"memories": memories}, timeout=60)
    )
    try:
        assert await asyncio.to_thread(big_started.wait, 30)
        r = await gateway.post(
            f"/api/v1/spaces/{space_id}/recall",
            json={"query": "a first fact", "k": 1, "consistency": "eventual"},
            timeout=20,
        )
        assert r.status_code == 200, r.text
        assert r.json()["results"][0]["memory"]["content"] == "a first fact"
        assert not bulk.done()  # the import was still embedding
    finally:
        release.set()
    r = await bulk
    assert r.status_code == 202, r.text
    assert len(r.json()["ids"]) == 1000
