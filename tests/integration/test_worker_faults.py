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
