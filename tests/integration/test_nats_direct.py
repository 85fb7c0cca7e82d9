"""Agents that publish straight to NATS: commands into the WAL, queries by request."""

from __future__ import annotations

import json
from typing import Any

import httpx
import nats.errors
import pytest
from nats.aio.client import Client as Nats

from engram_contract.messages import encode_embedding
from tests.helpers import EventRecorder, query_over_nats, random_unit, remember_over_nats


async def test_agent_remembers_and_recalls_over_nats(
    client: httpx.AsyncClient, nc: Nats, space_id: str
) -> None:
    await client.post("/api/v1/spaces", json={"id": space_id, "dim": 16})
    events = EventRecorder()
    await nc.subscribe(f"spaces.{space_id}.evt.>", cb=events.handle)
    s1 = await remember_over_nats(
        nc, space_id, {"id": "a", "content": "list", "embedding": random_unit(16, 1)}
    )
    s2 = await remember_over_nats(
        nc,
        space_id,
        {"id": "b", "content": "b64", "embedding_b64": encode_embedding(random_unit(16, 2))},
    )
    s3 = await remember_over_nats(
        nc, space_id, {"content": "text only: the deploy key lives in vault"}
    )
    await events.wait_for(3)
    assert [s for s, _ in events.items] == [f"spaces.{space_id}.evt.stored"] * 3
    assert [e["seq"] for _, e in events.items] == [s1, s2, s3]
    assert [e["memory_id"] for _, e in events.items][:2] == ["a", "b"]

    for i, mid in ((1, "a"), (2, "b")):
        rec = await query_over_nats(
            nc, space_id, "recall", {"embedding": random_unit(16, i), "k": 1, "min_seq": s3}
        )
        assert rec["results"][0]["memory"]["id"] == mid
        assert rec["results"][0]["similarity"] > 0.99
    cue = {"query": "where is the deploy key", "k": 1}
    text = await query_over_nats(nc, space_id, "recall", cue)
    assert text["results"][0]["memory"]["content"].startswith("text only")
    got = await query_over_nats(nc, space_id, "get", {"memory_id": "b"})
    assert got["memory"]["content"] == "b64"
    # the HTTP API sees what the agent wrote over NATS
    r = await client.get(f"/api/v1/spaces/{space_id}/memories/a")
    assert r.status_code == 200 and r.json()["content"] == "list"


POISON = [
    (b"not json at all", "not JSON"),
    (b"[1, 2, 3]", "JSON object"),
    (b'{"schema_version": 99, "command_id": "c", "memory": {"content": "x"}}', "schema_version"),
    (b'{"schema_version": 1, "command_id": "c"}', "memory"),
    (b'{"schema_version": 1, "command_id": "c", "memory": {"content": ""}}', "content"),
    (
        b'{"schema_version": 1, "command_id": "c", '
        b'"memory": {"content": "x", "embedding": [1, 2]}}',
        "dim",
    ),
    (
        b'{"schema_version": 1, "command_id": "c", "memory": {"content": "x", "confidence": 9}}',
        "confidence",
    ),
    (b"\xff\xfe\x00garbage", "not JSON"),
]


async def test_poison_messages_are_rejected_and_nothing_else_is_lost(
    client: httpx.AsyncClient, nc: Nats, new_space: Any
) -> None:
    victim, bystander = new_space("poison"), new_space("bystander")
    for s in (victim, bystander):
        await client.post("/api/v1/spaces", json={"id": s, "dim": 16})
    events = EventRecorder()
    await nc.subscribe(f"spaces.{victim}.evt.rejected", cb=events.handle)
    js = nc.jetstream()

    before = await remember_over_nats(
        nc, victim, {"id": "before", "content": "x", "embedding": random_unit(16, 0)}
    )
    seqs = []
    for payload, _ in POISON:
        seqs.append(int((await js.publish(f"spaces.{victim}.remember", payload)).seq))
    seqs.append(int((await js.publish(f"spaces.{victim}.frobnicate", b"{}")).seq))
    after = await remember_over_nats(
        nc, victim, {"id": "after", "content": "y", "embedding": random_unit(16, 1)}
    )
    await remember_over_nats(
        nc, bystander, {"id": "ok", "content": "z", "embedding": random_unit(16, 2)}
    )

    await events.wait_for(len(seqs))
    rejected = [e for _, e in events.items]
    assert [e["seq"] for e in rejected] == seqs
    for e, (_, needle) in zip(rejected, [*POISON, (b"", "unknown command")], strict=True):
        assert needle in e["reason"], e
    # the space keeps serving, with every good memory
    stats = await query_over_nats(nc, victim, "stats", {"min_seq": after})
    assert stats["memories"] == 2 and stats["rejected"] == len(seqs)
    assert stats["applied_seq"] == after
    for mid in ("before", "after"):
        assert (await client.get(f"/api/v1/spaces/{victim}/memories/{mid}")).status_code == 200
    assert before < seqs[0]
    # and so does every other space
    rec = await query_over_nats(
        nc, bystander, "recall", {"embedding": random_unit(16, 2), "k": 1, "consistency": "strong"}
    )
    assert rec["results"][0]["memory"]["id"] == "ok"


async def test_bad_queries_get_error_replies(
    client: httpx.AsyncClient, nc: Nats, space_id: str
) -> None:
    await client.post("/api/v1/spaces", json={"id": space_id, "dim": 16})
    # a new space is served a moment after it is created (its worker loads it
    # first): a NATS client retries "no responders", as query_over_nats does
    assert "memories" in await query_over_nats(nc, space_id, "stats", {})
    bad = await nc.request(f"spaces.{space_id}.q.recall", b"garbage", timeout=10)
    assert json.loads(bad.data)["error"]["status"] == 400
    dims = await query_over_nats(nc, space_id, "recall", {"embedding": [1.0, 2.0]})
    assert dims["error"]["status"] == 400 and "16" in dims["error"]["detail"]
    # no worker serves a space that does not exist: NATS itself says so
    with pytest.raises(nats.errors.NoRespondersError):
        await nc.request("spaces.no-such-space-x.q.recall", b'{"query": "x"}', timeout=10)
    unknown = await query_over_nats(nc, space_id, "frobnicate", {})
    assert unknown["error"]["status"] == 404
    assert "recall" in unknown["error"]["detail"]


async def test_recalls_of_an_idle_hosted_space_answer_alike(
    client: httpx.AsyncClient, nc: Nats, space_id: str
) -> None:
    """A recall of a hosted, caught-up space with nothing to wait for is answered
    as it arrives (engram_worker.queries.recall_now); its errors are the same
    clear replies, and one that must wait still waits."""
    await client.post("/api/v1/spaces", json={"id": space_id, "dim": 16})
    seq = await remember_over_nats(
        nc, space_id, {"id": "a", "content": "a", "embedding": random_unit(16, 1)}
    )
    warm = await query_over_nats(
        nc, space_id, "recall", {"embedding": random_unit(16, 1), "k": 1, "min_seq": seq}
    )
    assert warm["results"][0]["memory"]["id"] == "a"
    for consistency in ("eventual", "read_your_writes"):
        rec = await query_over_nats(
            nc,
            space_id,
            "recall",
            {"embedding": random_unit(16, 1), "k": 1, "consistency": consistency},
        )
        assert rec["results"][0]["memory"]["id"] == "a" and rec["applied_seq"] >= seq
    bad = await nc.request(f"spaces.{space_id}.q.recall", b"garbage", timeout=10)
    assert json.loads(bad.data)["error"]["status"] == 400
    dims = await query_over_nats(nc, space_id, "recall", {"embedding": [1.0, 2.0]})
    assert dims["error"]["status"] == 400 and "16" in dims["error"]["detail"]
    other = await query_over_nats(
        nc,
        space_id,
        "recall",
        {"embedding": random_unit(16, 1), "memory_space_id": "some-other-space"},
    )
    assert other["error"]["status"] == 400 and other["error"]["title"] == "Wrong memory space"
    # a min_seq not yet applied is waited for: the recall sees the memory written then
    later = await remember_over_nats(
        nc, space_id, {"id": "b", "content": "b", "embedding": random_unit(16, 2)}
    )
    rec = await query_over_nats(
        nc, space_id, "recall", {"embedding": random_unit(16, 2), "k": 1, "min_seq": later}
    )
    assert rec["results"][0]["memory"]["id"] == "b" and rec["applied_seq"] >= later
