"""Explicit links: POST …/links and ``spaces.<id>.link`` over NATS. A link makes
spreading activation reach a memory that is not similar to the cue; weight 0
takes it away again; links to memories the space does not hold are refused."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from nats.aio.client import Client as Nats

from engram_contract.messages import LinkCommand
from tests.helpers import (
    NO_DERIVED_LINKS,
    EventRecorder,
    basis,
    create_space_over_http,
    last_wal_seq,
    post_link,
    result_ids,
    store_vectors,
    weighted_sum,
)

Client = httpx.AsyncClient


async def spread(
    client: Client, space: str, cue: list[float], k: int = 2, **extra: Any
) -> list[Any]:
    """Spreading recall with traces. Recall seeds activation at the max(seed_k, k)
    memories most similar to the cue, so a memory only shows as reached over a
    link (hops > 0) when k others are more similar: the tests keep k small and
    give each cue a weakly similar filler as its second seed."""
    body = {
        "embedding": cue,
        "mode": "spreading",
        "seed_k": 1,
        "k": k,
        "trace": True,
        "reinforce": False,
        **extra,
    }
    r = await client.post(f"/api/v1/spaces/{space}/recall", json=body)
    assert r.status_code == 200, r.text
    results: list[Any] = r.json()["results"]
    return results


async def test_a_link_makes_spreading_recall_reach_a_dissimilar_memory(
    client: Client, space_id: str
) -> None:
    await create_space_over_http(client, space_id, links=NO_DERIVED_LINKS)
    fill = 0.91**0.5
    stored = await store_vectors(
        client,
        space_id,
        {
            "a": basis(0),
            "b": basis(1),
            "c": basis(2),
            "near-a": weighted_sum((0.3, basis(0)), (fill, basis(3))),  # cosine 0.3 to a
            "near-b": weighted_sum((0.3, basis(1)), (fill, basis(4))),
        },
    )
    assert result_ids(await spread(client, space_id, basis(0))) == ["a", "near-a"]

    r = await post_link(client, space_id, source="a", target="b", weight=0.8)
    assert r.status_code == 202, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {"seq": stored + 1}

    results = await spread(client, space_id, basis(0))
    assert result_ids(results) == ["a", "b"]
    b = results[1]
    assert b["hops"] == 1
    assert b["similarity"] == pytest.approx(0.0, abs=1e-6)
    assert b["activation"] == pytest.approx(1.0 * 0.8 * 0.5, rel=1e-4)  # seed × weight × decay
    trace = b["trace"]
    assert [s["memory_id"] for s in trace] == ["a", "b"]
    assert trace[0]["hops"] == 0 and trace[0]["kind"] is None and trace[0]["weight"] is None
    assert trace[-1]["hops"] == 1 and trace[-1]["kind"] == "related"
    assert trace[-1]["weight"] == pytest.approx(0.8, rel=1e-4)

    # links are undirected
    back = await spread(client, space_id, basis(1))
    assert result_ids(back) == ["b", "a"] and back[1]["hops"] == 1

    # a kind of one's own is kept; the stronger link wins the second place
    r = await post_link(client, space_id, source="c", target="a", weight=0.9, kind="caused_by")
    assert r.status_code == 202, r.text
    results = await spread(client, space_id, basis(0))
    assert result_ids(results) == ["a", "c"]
    assert results[1]["trace"][-1]["kind"] == "caused_by"
    assert results[1]["trace"][-1]["weight"] == pytest.approx(0.9, rel=1e-4)

    # weight 0 removes the explicit link again
    for source, target in (("a", "c"), ("b", "a")):
        r = await post_link(client, space_id, source=source, target=target, weight=0)
        assert r.status_code == 202, r.text
    assert result_ids(await spread(client, space_id, basis(0))) == ["a", "near-a"]
    assert result_ids(await spread(client, space_id, basis(1))) == ["b", "near-b"]


async def test_a_link_overrides_the_derived_one_until_it_is_removed(
    client: Client, space_id: str
) -> None:
    # a and b are similar (cosine 0.6): the space links them semantically (weight
    # 0.6); the cue is similar to a (0.8) but not to b, and "far" (cosine 0.1 to
    # the cue, linked to neither) is the second seed
    await create_space_over_http(client, space_id, links={"temporal_window_s": 0})
    cue = weighted_sum((0.8, basis(0)), (-0.6, basis(1)))
    await store_vectors(
        client,
        space_id,
        {
            "a": basis(0),
            "b": weighted_sum((0.6, basis(0)), (0.8, basis(1))),
            "far": weighted_sum((0.1, cue), (0.99**0.5, basis(3))),
        },
    )

    async def reached_b() -> Any:
        results = await spread(client, space_id, cue)
        assert result_ids(results) == ["a", "b"]
        assert results[1]["hops"] == 1
        return results[1]["trace"][-1]

    derived = await reached_b()
    assert derived["kind"] == "semantic" and derived["weight"] == pytest.approx(0.6, rel=1e-4)

    assert (
        await post_link(client, space_id, source="a", target="b", weight=0.9)
    ).status_code == 202
    linked = await reached_b()
    assert linked["kind"] == "related" and linked["weight"] == pytest.approx(0.9, rel=1e-4)

    assert (
        await post_link(client, space_id, source="b", target="a", weight=0.0)
    ).status_code == 202
    back = await reached_b()
    assert back["kind"] == "semantic" and back["weight"] == pytest.approx(0.6, rel=1e-4)


async def test_linking_a_memory_the_space_lacks_is_404_and_writes_nothing(
    client: Client, nc: Nats, space_id: str, new_space: Any
) -> None:
    await create_space_over_http(client, space_id, links=NO_DERIVED_LINKS)
    other = new_space("other")
    await create_space_over_http(client, other)
    await store_vectors(client, space_id, {"a": basis(0)})
    await store_vectors(
        client, other, {"elsewhere": basis(1)}
    )  # another space's id counts for nothing
    before = await last_wal_seq(nc, space_id)

    for body, missing in (
        ({"source": "a", "target": "ghost"}, {"target": "ghost"}),
        ({"source": "ghost", "target": "a"}, {"source": "ghost"}),
        ({"source": "a", "target": "elsewhere"}, {"target": "elsewhere"}),
        ({"source": "nope", "target": "ghost"}, {"source": "nope", "target": "ghost"}),
    ):
        r = await post_link(client, space_id, weight=0.5, **body)
        assert r.status_code == 404, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        problem = r.json()
        assert problem["title"] == "Memory not found"
        assert problem["instance"] == f"/api/v1/spaces/{space_id}/links"
        assert {e["field"]: e["message"] for e in problem["errors"]}.keys() == missing.keys()
        for field, memory_id in missing.items():
            assert f"{field}: memory {memory_id!r} does not exist" in problem["detail"]
    assert await last_wal_seq(nc, space_id) == before

    # an unknown space is a 404 too, and linking does not create it
    unknown = f"t-{uuid.uuid4().hex[:12]}"
    r = await post_link(client, unknown, source="a", target="b", weight=0.5)
    assert r.status_code == 404 and r.json()["title"] == "Space not found"
    assert (await client.get(f"/api/v1/spaces/{unknown}")).status_code == 404


async def test_a_memory_stored_just_before_can_be_linked_at_once(
    client: Client, space_id: str
) -> None:
    # the existence check waits for this gateway's own writes (read-your-writes)
    await create_space_over_http(client, space_id, links=NO_DERIVED_LINKS)
    for i in range(5):
        await store_vectors(client, space_id, {f"m{i}": basis(i)})
        if i:
            r = await post_link(client, space_id, source=f"m{i - 1}", target=f"m{i}", weight=1.0)
            assert r.status_code == 202, r.text


INVALID: list[tuple[dict[str, Any], str]] = [
    ({"source": "a", "target": "a", "weight": 0.5}, "body"),  # a self-link
    ({"source": "a", "target": "b", "weight": 1.5}, "weight"),
    ({"source": "a", "target": "b", "weight": -0.1}, "weight"),
    ({"source": "a", "target": "b"}, "weight"),
    ({"source": "a", "target": "b", "weight": 0.5, "kind": "Not A Kind"}, "kind"),
    ({"source": "a b", "target": "b", "weight": 0.5}, "source"),
    ({"source": "a", "target": "b", "weight": 0.5, "wieght": 1}, "wieght"),
]


async def test_invalid_link_bodies_are_400_and_write_nothing(
    client: Client, nc: Nats, space_id: str
) -> None:
    await create_space_over_http(client, space_id)
    await store_vectors(client, space_id, {"a": basis(0), "b": basis(1)})
    before = await last_wal_seq(nc, space_id)
    for body, field in INVALID:
        r = await post_link(client, space_id, **body)
        assert r.status_code == 400, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert field in [e["field"] for e in r.json()["errors"]], (body, r.text)
    r = await client.post(
        f"/api/v1/spaces/{space_id}/links",
        content=b'{"source": "a",',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["title"] == "Malformed JSON"
    r = await client.post(f"/api/v1/spaces/{space_id}/links")
    assert r.status_code == 400
    assert await last_wal_seq(nc, space_id) == before


async def test_a_retried_link_with_an_idempotency_key_is_stored_once(
    client: Client, nc: Nats, space_id: str
) -> None:
    await create_space_over_http(client, space_id)
    await store_vectors(client, space_id, {"a": basis(0), "b": basis(1)})
    url = f"/api/v1/spaces/{space_id}/links"
    body = {"source": "a", "target": "b", "weight": 0.7}
    headers = {"Idempotency-Key": f"link-{uuid.uuid4().hex}"}
    first = await client.post(url, json=body, headers=headers)
    again = await client.post(url, json=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    assert await last_wal_seq(nc, space_id) == first.json()["seq"]


async def test_links_over_nats_are_announced_or_rejected(
    client: Client, nc: Nats, space_id: str
) -> None:
    await create_space_over_http(client, space_id, links=NO_DERIVED_LINKS)
    await store_vectors(client, space_id, {"a": basis(0), "b": basis(1)})
    events = EventRecorder()
    for kind in ("linked", "rejected"):
        await nc.subscribe(f"spaces.{space_id}.evt.{kind}", cb=events.handle)
    js = nc.jetstream()

    async def publish(command: LinkCommand) -> int:
        ack = await js.publish(
            f"spaces.{space_id}.link",
            command.model_dump_json().encode(),
            headers={"Nats-Msg-Id": command.command_id},
        )
        return int(ack.seq)

    bad = await publish(LinkCommand(command_id="to-ghost", source="a", target="ghost", weight=1))
    good = await publish(LinkCommand(command_id="a-b", source="a", target="b", weight=0.5))
    # a self-link cannot even be built as a LinkCommand; a raw one is rejected too
    raw = {"schema_version": 1, "command_id": "self", "source": "a", "target": "a", "weight": 1}
    selfish = int((await js.publish(f"spaces.{space_id}.link", json.dumps(raw).encode())).seq)

    await events.wait_for(3)
    (subject, rejected), (linked_subject, linked), (_, self_rejected) = sorted(
        events.items, key=lambda item: int(item[1]["seq"])
    )
    assert subject == f"spaces.{space_id}.evt.rejected"
    assert rejected["seq"] == bad and rejected["command_id"] == "to-ghost"
    assert "target" in rejected["reason"] and "'ghost'" in rejected["reason"]
    assert linked_subject == f"spaces.{space_id}.evt.linked"
    assert linked["seq"] == good
    assert (linked["source"], linked["target"], linked["kind"]) == ("a", "b", "related")
    assert linked["weight"] == pytest.approx(0.5)
    assert self_rejected["seq"] == selfish and "itself" in self_rejected["reason"]

    # only the good link took effect
    results = await spread(client, space_id, basis(0), k=1, max_hops=1, consistency="strong")
    assert result_ids(results) == ["a"]
    got = await client.get(f"/api/v1/spaces/{space_id}/memories/a")
    assert got.status_code == 200
