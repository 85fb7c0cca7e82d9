"""The contract for agents in other languages: the AsyncAPI document served by the
gateway, and ``memory_space_id`` in commands and queries published straight to NATS
(it must name the subject's space)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
from nats.aio.client import Client as Nats

from tests.helpers import EventRecorder, query_over_nats, random_unit, remember_over_nats


async def test_asyncapi_is_served(client: httpx.AsyncClient) -> None:
    for path in ("/asyncapi", "/asyncapi.json"):
        r = await client.get(path)
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/json")
        doc = r.json()
        assert doc["asyncapi"] == "3.0.0"
        addresses = {c["address"] for c in doc["channels"].values()}
        assert {"spaces.{space}.remember", "spaces.{space}.q.recall"} <= addresses
        assert "spaces.{space}.evt.rejected" in addresses


async def publish(nc: Nats, space: str, verb: str, body: dict[str, Any]) -> int:
    cid = uuid.uuid4().hex
    doc = {"schema_version": 1, "command_id": cid, **body}
    ack = await nc.jetstream().publish(
        f"spaces.{space}.{verb}", json.dumps(doc).encode(), headers={"Nats-Msg-Id": cid}
    )
    return int(ack.seq)


async def test_commands_naming_another_space_are_rejected(
    client: httpx.AsyncClient, nc: Nats, new_space: Any
) -> None:
    space, other = new_space("target"), new_space("other")
    for s in (space, other):
        await client.post("/api/v1/spaces", json={"id": s, "dim": 16})
    events = EventRecorder()
    await nc.subscribe(f"spaces.{space}.evt.>", cb=events.handle)

    kept = await remember_over_nats(
        nc,
        space,
        {"id": "kept", "content": "x", "embedding": random_unit(16, 0)},
        memory_space_id=space,
    )
    wrong = [
        # the fast path's shapes (remember, forget) and the referee's (link)
        await remember_over_nats(
            nc,
            space,
            {"id": "stray", "content": "y", "embedding": random_unit(16, 1)},
            memory_space_id=other,
        ),
        await remember_over_nats(
            nc, space, {"id": "stray2", "content": "text"}, memory_space_id=other
        ),
        await publish(nc, space, "forget", {"memory_id": "kept", "memory_space_id": other}),
        await publish(
            nc,
            space,
            "link",
            {"source": "kept", "target": "stray", "weight": 0.5, "memory_space_id": other},
        ),
    ]
    await events.wait_for(1 + len(wrong))
    subjects = [s.rpartition(".")[2] for s, _ in events.items]
    assert subjects == ["stored"] + ["rejected"] * len(wrong)
    assert events.items[0][1]["seq"] == kept
    for (_, event), seq in zip(events.items[1:], wrong, strict=True):
        assert event["seq"] == seq
        assert event["reason"].startswith("invalid message: memory_space_id")
        assert other in event["reason"] and space in event["reason"]
        assert event["command_id"]

    stats = await query_over_nats(nc, space, "stats", {"min_seq": wrong[-1]})
    assert stats["memories"] == 1 and stats["rejected"] == len(wrong)
    for mid, status in (("kept", 200), ("stray", 404), ("stray2", 404)):
        r = await client.get(f"/api/v1/spaces/{space}/memories/{mid}")
        assert r.status_code == status, mid
    # nothing reached the space it named either
    assert (await query_over_nats(nc, other, "stats", {}))["memories"] == 0


async def test_queries_naming_another_space_get_an_error(
    client: httpx.AsyncClient, nc: Nats, space_id: str, new_space: Any
) -> None:
    await client.post("/api/v1/spaces", json={"id": space_id, "dim": 16})
    seq = await remember_over_nats(
        nc, space_id, {"id": "a", "content": "x", "embedding": random_unit(16, 0)}
    )
    other = new_space("other")
    queries: list[tuple[str, dict[str, Any]]] = [
        ("recall", {"embedding": random_unit(16, 0), "k": 1, "min_seq": seq}),
        ("get", {"memory_id": "a", "min_seq": seq}),
        ("list", {"min_seq": seq}),
        ("stats", {"min_seq": seq}),
        ("consolidate", {"dry_run": True, "min_seq": seq}),
    ]
    for name, body in queries:
        right = await query_over_nats(nc, space_id, name, {**body, "memory_space_id": space_id})
        assert "error" not in right and right["space"] == space_id, (name, right)
        wrong = await query_over_nats(nc, space_id, name, {**body, "memory_space_id": other})
        assert wrong["error"]["status"] == 400, (name, wrong)
        assert wrong["error"]["title"] == "Wrong memory space"
        assert other in wrong["error"]["detail"]
    invalid = await query_over_nats(nc, space_id, "stats", {"memory_space_id": "NOT A SPACE"})
    assert invalid["error"]["status"] == 400 and "memory_space_id" in invalid["error"]["detail"]


async def test_http_recall_naming_another_space_is_a_400(
    client: httpx.AsyncClient, space_id: str
) -> None:
    await client.post("/api/v1/spaces", json={"id": space_id, "dim": 16})
    cue = {"embedding": random_unit(16, 0), "k": 1}
    ok = await client.post(
        f"/api/v1/spaces/{space_id}/recall", json={**cue, "memory_space_id": space_id}
    )
    assert ok.status_code == 200
    r = await client.post(
        f"/api/v1/spaces/{space_id}/recall", json={**cue, "memory_space_id": "somewhere-else"}
    )
    assert r.status_code == 400, r.text
    assert "memory_space_id" in r.json()["detail"]
