"""Consolidation on a schedule (a space created with ``consolidation.interval_s``
is consolidated by its worker without being asked, once per dense group), and
groups that only become consolidatable later: densely linked after they were
stored, or after their semantic memory was forgotten."""

from __future__ import annotations

from typing import Any

import httpx
from nats.aio.client import Client as Nats

from tests.helpers import (
    CLUSTER,
    CONSOLIDATION_SETTINGS,
    basis,
    consolidate_over_http,
    consolidation_memories,
    create_space_over_http,
    eventually,
    last_wal_seq,
    post_link,
    store_vectors,
)

Client = httpx.AsyncClient
INTERVAL = 0.3
SCHEDULED: dict[str, Any] = {
    **CONSOLIDATION_SETTINGS,
    "consolidation": {**CONSOLIDATION_SETTINGS["consolidation"], "interval_s": INTERVAL},
}


async def semantic(client: Client, space: str) -> list[dict[str, Any]]:
    r = await client.get(f"/api/v1/spaces/{space}/memories", params={"limit": 1000})
    assert r.status_code == 200, r.text
    return [m for m in r.json()["memories"] if m["kind"] == "semantic"]


async def scheduled_rounds_pass(client: Client, space: str, rounds: int = 3) -> None:
    """A positive signal that the worker's schedules ran: ``rounds`` spaces scheduled
    every INTERVAL, created one after the other, each consolidated by its own
    schedule (a first round comes an INTERVAL after the space is hosted). So at
    least ``rounds`` intervals pass, in which every scheduled space on the worker
    has its rounds too."""
    for n in range(rounds):
        clock = f"{space}-r{n}"
        await create_space_over_http(client, clock, **SCHEDULED)
        await store_vectors(client, clock, consolidation_memories())

        async def made(clock: str = clock) -> list[dict[str, Any]] | None:
            return await semantic(client, clock) or None

        await eventually(made)


async def test_a_scheduled_space_consolidates_itself_once(
    client: Client, nc: Nats, space_id: str
) -> None:
    await create_space_over_http(client, space_id, **SCHEDULED)
    shown = (await client.get(f"/api/v1/spaces/{space_id}")).json()
    assert shown["consolidation"]["interval_s"] == INTERVAL
    written = await store_vectors(client, space_id, consolidation_memories())

    async def made() -> list[dict[str, Any]] | None:
        found = await semantic(client, space_id)
        return found or None

    (sem,) = await eventually(made)
    assert sem["content"].startswith(f"Consolidated from {len(CLUSTER)} memories: ")
    assert await last_wal_seq(nc, space_id) == written + 1  # one consolidate command
    await scheduled_rounds_pass(client, space_id)  # later rounds find nothing new to do
    assert await last_wal_seq(nc, space_id) == written + 1
    assert [m["id"] for m in await semantic(client, space_id)] == [sem["id"]]


async def test_spaces_without_a_schedule_are_left_alone(
    client: Client, nc: Nats, space_id: str
) -> None:
    # interval_s 0: only on request
    await create_space_over_http(client, space_id, **CONSOLIDATION_SETTINGS)
    written = await store_vectors(client, space_id, consolidation_memories())
    # it could be consolidated (a dry run finds the group), but no schedule does it
    (group,) = (await consolidate_over_http(client, space_id, dry_run=True))["groups"]
    assert group["members"] == CLUSTER
    await scheduled_rounds_pass(client, space_id)
    assert await semantic(client, space_id) == []
    assert await last_wal_seq(nc, space_id) == written


async def test_a_group_linked_densely_later_is_consolidated(client: Client, space_id: str) -> None:
    await create_space_over_http(client, space_id, **CONSOLIDATION_SETTINGS)
    await store_vectors(client, space_id, {f"o{i}": basis(i) for i in range(3)})  # unrelated
    assert (await consolidate_over_http(client, space_id))["groups"] == []
    for a, b in (("o0", "o1"), ("o1", "o2"), ("o0", "o2")):
        r = await post_link(client, space_id, source=a, target=b, weight=0.9)
        assert r.status_code == 202, r.text
    (group,) = (await consolidate_over_http(client, space_id))["groups"]
    assert group["members"] == ["o0", "o1", "o2"]


async def test_forgetting_a_semantic_memory_lets_its_members_consolidate_again(
    client: Client, nc: Nats, space_id: str
) -> None:
    await create_space_over_http(client, space_id, **CONSOLIDATION_SETTINGS)
    await store_vectors(client, space_id, consolidation_memories())
    (first,) = (await consolidate_over_http(client, space_id))["groups"]
    r = await client.delete(f"/api/v1/spaces/{space_id}/memories/{first['memory_id']}")
    assert r.status_code == 202
    again = await consolidate_over_http(client, space_id)  # within JetStream's duplicate window
    assert again["groups"] == [first]
    assert again["seq"] == await last_wal_seq(nc, space_id)  # a new command, not a duplicate
    r = await client.get(f"/api/v1/spaces/{space_id}/memories/{first['memory_id']}")
    assert r.status_code == 200 and r.json()["kind"] == "semantic"
