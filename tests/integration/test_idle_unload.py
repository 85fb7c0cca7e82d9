"""ENGRAM_SPACE_IDLE_UNLOAD: an idle space leaves memory (snapshotted first) and
comes back on its next query or write, answering exactly as before."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client as Nats

from engram_worker.hosting import RECLAIM_AFTER_S
from engram_worker.worker import Worker
from tests.helpers import (
    eventually,
    gateway_settings,
    publish_remembers,
    register_space,
    running_gateway,
    similar_ids_over_nats,
)

Start = Callable[..., Awaitable[Worker]]


async def test_an_idle_space_is_unloaded_and_answers_the_same_when_used_again(
    nats_server: Any, nc: Nats, workers: Start, new_space: Any
) -> None:
    space = new_space("idle")
    await register_space(nc, space)
    seq = await publish_remembers(nc, space, range(40))
    w = await workers(space_idle_unload=0.6)
    before = await similar_ids_over_nats(nc, space, 7, seq, k=5)  # loads it
    assert before[0] == "m7" and space in w.hosts
    index_bytes = w.hosts[space].index_memory_bytes()
    assert index_bytes > 0

    async def cold() -> bool | None:
        return True if space not in w.hosts and space in w.placement.idle.cold else None

    await eventually(cold)
    async with running_gateway(gateway_settings(nats_server.url)) as client:
        body = (await client.get("/api/v1/status", params={"space": space})).json()
        (row,) = body["spaces"]
        assert row["loaded"] is False and row["hosts"] == [w.settings.worker_id]
        assert row["memories"] == 40  # from its snapshot, written on the way out
        (mine,) = [p for p in body["placement"] if p["worker"] == w.settings.worker_id]
        assert mine["index_bytes"] < index_bytes or mine["loaded"] < mine["hosted"]
    # the next query loads it and answers as before
    assert await similar_ids_over_nats(nc, space, 7, seq, k=5) == before
    assert space in w.hosts and space not in w.placement.idle.cold
    assert w.hosts[space].snapshotter.recovery.startswith("restored from snapshot")

    await eventually(cold)
    # a write to a cold space loads it too
    seq = await publish_remembers(nc, space, range(40, 45))

    async def loaded() -> bool | None:
        host = w.hosts.get(space)
        return True if host is not None and host.state.applied_seq >= seq else None

    await eventually(loaded)
    assert (await similar_ids_over_nats(nc, space, 42, seq, k=1)) == ["m42"]


async def test_with_idle_unload_a_starting_worker_loads_spaces_on_first_use(
    nc: Nats, workers: Start, new_space: Any
) -> None:
    spaces = [new_space("lazy") for _ in range(3)]
    seqs = {}
    for space in spaces:
        await register_space(nc, space)
        seqs[space] = await publish_remembers(nc, space, range(10))
    w = await workers(space_idle_unload=60)
    assert all(s in w.placement.idle.cold and s not in w.hosts for s in spaces)
    assert (await similar_ids_over_nats(nc, spaces[1], 3, seqs[spaces[1]]))[0] == "m3"
    assert spaces[1] in w.hosts
    assert spaces[0] not in w.hosts and spaces[2] not in w.hosts


async def test_a_let_go_spaces_memory_is_freed_without_waiting_for_pythons_collector(
    nc: Nats, workers: Start, new_space: Any
) -> None:
    """A host and its consumers point at each other: unloaded, it stays in memory
    until a full collection, which Python runs rarely once the heap is large (the
    cluster bench's workers kept the spaces they had handed over). The worker
    collects and trims itself shortly after a burst of unloads."""
    space = new_space("freed")
    await register_space(nc, space)
    await publish_remembers(nc, space, range(20))
    w = await workers()
    host = await w.hosting.ensure_host(space)
    gone_host, gone_state = weakref.ref(host), weakref.ref(host.state)
    del host
    gc.disable()  # as good as off for a big heap, and no luck in the test
    try:
        await w.hosting.unload(space)

        async def freed() -> bool | None:
            return True if gone_host() is None and gone_state() is None else None

        await eventually(freed, timeout=RECLAIM_AFTER_S + 10)
    finally:
        gc.enable()
