"""A bug in the fold is a rejection, not a silent skip: the command is announced
on ``evt.rejected`` with an ``internal error`` reason (category ``internal``),
counted like any other rejection, and the fold moves on to the next message."""

from __future__ import annotations

import uuid
from datetime import datetime

import httpx
import pytest
from nats.aio.client import Client as Nats

from engram_contract.messages import LinkCommand
from engram_contract.subjects import command_subject, stream_name
from engram_worker.core import state as fold
from engram_worker.core.state import SpaceState
from engram_worker.metrics import rejection_category
from engram_worker.worker import Worker
from tests.helpers import (
    EventRecorder,
    basis,
    create_space_over_http,
    eventually,
    query_over_nats,
    store_vectors,
)


async def link(nc: Nats, space: str, source: str, target: str, weight: float) -> str:
    """Publish a ``link`` command into the space's WAL; returns its command id."""
    command = LinkCommand(command_id=uuid.uuid4().hex, source=source, target=target, weight=weight)
    await nc.jetstream().publish(
        command_subject(space, "link"),
        command.model_dump_json().encode(),
        stream=stream_name(space),
        headers={"Nats-Msg-Id": command.command_id},
    )
    return command.command_id


def _sample(worker: Worker, name: str, space: str, **labels: str) -> float:
    worker.probes.refresh_gauges()  # adds what the hosts counted to the counters
    # the space's label: past the label cap (a long test session) it is __other__
    labels["memory_space"] = worker.metrics.spaces.label(space)
    return worker.metrics.registry.get_sample_value(name, labels) or 0.0


async def test_an_exception_in_the_fold_is_an_internal_rejection(
    client: httpx.AsyncClient,
    nc: Nats,
    worker: Worker,
    space_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await create_space_over_http(client, space_id)
    stored = await store_vectors(client, space_id, {"a": basis(0), "b": basis(1)})
    await query_over_nats(nc, space_id, "stats", {"min_seq": stored})  # their events are out
    events = EventRecorder()
    await nc.subscribe(f"spaces.{space_id}.evt.>", cb=events.handle)
    await nc.flush()

    def broken(state: SpaceState, command: object, seq: int, at: datetime) -> None:
        raise RuntimeError("the link handler broke")

    monkeypatch.setitem(fold.FOLD, "link", broken)
    before = _sample(worker, "engram_rejected_messages_total", space_id, reason="internal")
    command_id = await link(nc, space_id, "a", "b", 0.5)
    await events.wait_for(1)
    subject, event = events.items[0]
    assert subject == f"spaces.{space_id}.evt.rejected"
    assert event["reason"] == "internal error: RuntimeError: the link handler broke"
    assert event["command_id"] == command_id
    assert rejection_category(event["reason"]) == "internal"
    after = _sample(worker, "engram_rejected_messages_total", space_id, reason="internal")
    assert after == before + 1
    assert (
        _sample(
            worker,
            "engram_commands_total",
            space_id,
            verb="link",
            outcome="rejected",
        )
        >= 1
    )

    # the fold moved on: the next command folds
    monkeypatch.undo()
    seq = await store_vectors(client, space_id, {"c": basis(2)})
    await events.wait_for(2)
    assert events.items[1][0] == f"spaces.{space_id}.evt.stored"
    got = await query_over_nats(nc, space_id, "get", {"memory_id": "c", "min_seq": seq})
    assert got["memory"]["id"] == "c"
    stats = await query_over_nats(nc, space_id, "stats", {"min_seq": seq})
    assert stats["rejected"] == 1


async def test_a_wal_deleted_behind_engrams_back_fails_the_space_instead_of_serving_memory(
    client: httpx.AsyncClient, nc: Nats, worker: Worker, space_id: str
) -> None:
    r = await client.post("/api/v1/spaces", json={"id": space_id, "dim": 8})
    assert r.status_code == 201, r.text
    r = await client.post(
        f"/api/v1/spaces/{space_id}/memories", json={"content": "x", "embedding": [1.0] * 8}
    )
    assert r.status_code == 202, r.text
    recall = {"embedding": [1.0] * 8, "k": 1}
    assert (await client.post(f"/api/v1/spaces/{space_id}/recall", json=recall)).status_code == 200

    await nc.jetstream().delete_stream(stream_name(space_id))  # not through Engram

    async def refused() -> httpx.Response | None:
        r = await client.post(f"/api/v1/spaces/{space_id}/recall", json=recall)
        return r if r.status_code != 200 else None

    r = await eventually(refused)
    assert r.status_code == 503 and "WAL stream is gone" in r.json()["detail"], r.text
    assert "bug" not in r.text.lower()
    status = (await client.get("/api/v1/status", params={"space": space_id})).json()
    (row,) = status["spaces"]
    assert "WAL stream is gone" in str(row), row
    assert "WAL stream is gone" in worker.hosting.failed[space_id]
    assert space_id not in worker.hosts  # not answered from memory any more
    r = await client.post(
        f"/api/v1/spaces/{space_id}/memories", json={"content": "y", "embedding": [1.0] * 8}
    )
    assert r.status_code == 503 and "WAL stream is gone" in r.json()["detail"], r.text
