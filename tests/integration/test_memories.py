"""Remember, get, list, recall through the gateway; bad input; idempotency."""

from __future__ import annotations

import asyncio
import math

import httpx
import numpy as np
import pytest

from engram_contract.messages import encode_embedding
from tests.helpers import random_unit

Client = httpx.AsyncClient


async def make_space(client: Client, space: str, dim: int = 16) -> None:
    r = await client.post("/api/v1/spaces", json={"id": space, "dim": dim})
    assert r.status_code == 201, r.text


async def test_remember_get_and_recall_by_text(client: Client, space_id: str) -> None:
    r = await client.post(
        f"/api/v1/spaces/{space_id}/memories",
        json={
            "content": "The user's cat is called Miso",
            "tags": ["pets"],
            "metadata": {"source": "chat"},
            "confidence": 0.9,
        },
    )
    assert r.status_code == 202
    body = r.json()
    (mid,) = body["ids"]
    assert body["seq"] == 1

    got = (await client.get(f"/api/v1/spaces/{space_id}/memories/{mid}")).json()
    assert got["content"] == "The user's cat is called Miso"
    assert got["tags"] == ["pets"] and got["metadata"] == {"source": "chat"}
    assert got["confidence"] == 0.9 and got["embedding"] is None and got["seq"] == 1

    with_vec = (
        await client.get(
            f"/api/v1/spaces/{space_id}/memories/{mid}", params={"include_embedding": "true"}
        )
    ).json()
    assert len(with_vec["embedding"]) == 384
    assert math.isclose(float(np.linalg.norm(with_vec["embedding"])), 1.0, rel_tol=1e-4)

    await client.post(
        f"/api/v1/spaces/{space_id}/memories",
        json={"content": "Quarterly revenue grew by four percent"},
    )
    rec = (
        await client.post(
            f"/api/v1/spaces/{space_id}/recall",
            json={"query": "what is the cat called?", "k": 2, "mode": "similarity"},
        )
    ).json()
    assert rec["space"] == space_id and rec["applied_seq"] == 2
    top = rec["results"][0]
    assert top["memory"]["id"] == mid
    assert top["hops"] == 0 and top["activation"] == pytest.approx(top["similarity"])
    assert top["score"] == pytest.approx(top["similarity"] * 0.9, rel=1e-5)
    assert 0 <= top["score"] <= 1
    assert set(top) == {
        "memory",
        "score",
        "similarity",
        "activation",
        "confidence",
        "retention",
        "hops",
        "trace",
    }
    assert top["trace"] is None  # only when asked for
    assert top["memory"]["kind"] == "episodic"


async def test_read_your_writes(client: Client, space_id: str) -> None:
    """A memory is returned by the recall that immediately follows its write."""
    await make_space(client, space_id)
    for i in range(20):
        vec = random_unit(16, i)
        r = await client.post(
            f"/api/v1/spaces/{space_id}/memories",
            json={"content": f"memory {i}", "id": f"m{i}", "embedding": vec},
        )
        assert r.status_code == 202
        rec = (
            await client.post(f"/api/v1/spaces/{space_id}/recall", json={"embedding": vec, "k": 1})
        ).json()
        assert rec["results"][0]["memory"]["id"] == f"m{i}"
        assert rec["applied_seq"] >= r.json()["seq"]


async def test_batch_and_paging(client: Client, space_id: str) -> None:
    await make_space(client, space_id)
    mems = [
        {"content": f"note {i}", "id": f"n{i:03d}", "embedding": random_unit(16, i)}
        for i in range(250)
    ]
    r = await client.post(f"/api/v1/spaces/{space_id}/memories", json={"memories": mems})
    assert r.status_code == 202
    assert r.json()["ids"] == [m["id"] for m in mems]
    assert r.json()["seq"] == 250

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 100}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get(f"/api/v1/spaces/{space_id}/memories", params=params)).json()
        seen += [m["id"] for m in page["memories"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [m["id"] for m in mems]


async def test_pages_too_big_for_one_nats_message_are_cut_short(
    client: Client, space_id: str
) -> None:
    # 30 memories of ~90 KB: a page of all of them would be ~2.7 MB, over NATS's
    # 1 MiB max_payload; pages come back shorter and the cursor walks every memory
    await make_space(client, space_id)
    mems = [
        {"content": f"{i} " + "y" * 90_000, "id": f"big{i:02d}", "embedding": random_unit(16, i)}
        for i in range(30)
    ]
    for i in range(0, 30, 10):
        r = await client.post(
            f"/api/v1/spaces/{space_id}/memories", json={"memories": mems[i : i + 10]}
        )
        assert r.status_code == 202, r.text
    seen: list[str] = []
    sizes: list[int] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 200}
        if cursor:
            params["cursor"] = cursor
        r = await client.get(f"/api/v1/spaces/{space_id}/memories", params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        sizes.append(len(page["memories"]))
        seen += [m["id"] for m in page["memories"]]
        assert all(len(m["content"]) > 90_000 for m in page["memories"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [m["id"] for m in mems]
    assert len(sizes) >= 3 and max(sizes) < 30


async def test_a_recall_answer_too_big_for_nats_is_a_clear_error(
    client: Client, space_id: str
) -> None:
    await make_space(client, space_id)
    mems = [{"content": "z" * 100_000, "embedding": random_unit(16, i)} for i in range(12)]
    r = await client.post(f"/api/v1/spaces/{space_id}/memories", json={"memories": mems})
    assert r.status_code == 202, r.text
    url = f"/api/v1/spaces/{space_id}/recall"
    r = await client.post(url, json={"embedding": random_unit(16, 0), "k": 12})
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "fewer results" in r.json()["detail"]
    r = await client.post(url, json={"embedding": random_unit(16, 0), "k": 3})
    assert r.status_code == 200 and len(r.json()["results"]) == 3


async def test_upsert_replaces(client: Client, space_id: str) -> None:
    await make_space(client, space_id)
    url = f"/api/v1/spaces/{space_id}/memories"
    await client.post(
        url,
        json={"id": "fav", "content": "favourite colour is blue", "embedding": random_unit(16, 1)},
    )
    await client.post(
        url,
        json={"id": "fav", "content": "favourite colour is green", "embedding": random_unit(16, 2)},
    )
    got = (await client.get(f"{url}/fav")).json()
    assert got["content"] == "favourite colour is green"
    shown = (await client.get(f"/api/v1/spaces/{space_id}")).json()
    assert shown["memories"] == 1
    rec = (
        await client.post(
            f"/api/v1/spaces/{space_id}/recall", json={"embedding": random_unit(16, 1), "k": 5}
        )
    ).json()
    assert [r["memory"]["content"] for r in rec["results"]] == ["favourite colour is green"]


async def test_idempotency_key_retry_returns_same_ids_and_seq(
    client: Client, space_id: str
) -> None:
    await make_space(client, space_id)
    url = f"/api/v1/spaces/{space_id}/memories"
    batch = {
        "memories": [{"content": f"fact {i}", "embedding": random_unit(16, i)} for i in range(5)]
    }
    headers = {"Idempotency-Key": "req-123"}
    first = await client.post(url, json=batch, headers=headers)
    retry = await client.post(url, json=batch, headers=headers)
    assert first.status_code == retry.status_code == 202
    assert first.json() == retry.json()
    shown = (await client.get(f"/api/v1/spaces/{space_id}")).json()
    assert shown["memories"] == 5 and shown["applied_seq"] == 5


async def test_memory_not_found(client: Client, space_id: str) -> None:
    await make_space(client, space_id)
    r = await client.get(f"/api/v1/spaces/{space_id}/memories/nope")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "nope" in r.json()["detail"]


BAD_INPUTS = [
    ({"content": ""}, "content"),
    ({"content": "   "}, "blank"),
    ({"content": "x" * (100 * 1024 + 1)}, "100 KiB"),
    ({"content": "x", "embedding": [0.1] * 5}, "embedding"),
    ({"content": "x", "confidence": 1.5}, "confidence"),
    ({"content": "x", "confidence": -0.1}, "confidence"),
    ({"content": "x", "tags": "not-a-list"}, "tags"),
    ({"content": "x", "metadata": {"k": 1}}, "metadata.k"),
    ({"content": "x", "colour": "red"}, "colour"),
    ({"memories": [{"content": "ok"}] * 1001}, "memories"),
    (
        {"memories": [{"content": "ok"}, {"content": "x", "confidence": 7}]},
        "memories[1].confidence",
    ),
    ({"memories": []}, "memories"),
    ({"content": "x", "embedding_b64": "%%%"}, "base64"),
    ({"content": "x", "embedding": [0.0] * 16}, "all zeros"),
    ({"content": "x", "embedding": [1e39] * 16}, "float32"),
]


@pytest.mark.parametrize(("body", "names"), BAD_INPUTS)
async def test_bad_input_is_a_400_naming_the_field_and_stores_nothing(
    client: Client, space_id: str, body: dict[str, object], names: str
) -> None:
    await make_space(client, space_id)
    r = await client.post(f"/api/v1/spaces/{space_id}/memories", json=body)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["status"] == 400 and problem["title"] and problem["type"]
    assert names in problem["detail"], problem["detail"]
    shown = (await client.get(f"/api/v1/spaces/{space_id}")).json()
    assert shown["memories"] == 0 and shown["applied_seq"] == 0


async def test_nan_and_infinity_are_rejected(client: Client, space_id: str) -> None:
    await make_space(client, space_id, dim=3)
    for literal in ("NaN", "Infinity", "-Infinity"):
        raw = f'{{"content": "x", "embedding": [0.1, {literal}, 0.3]}}'
        r = await client.post(
            f"/api/v1/spaces/{space_id}/memories",
            content=raw,
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 400, literal
        assert "embedding[1]" in r.json()["detail"]
    b64 = encode_embedding([0.1, float("nan"), 0.3])
    r = await client.post(
        f"/api/v1/spaces/{space_id}/memories", json={"content": "x", "embedding_b64": b64}
    )
    assert r.status_code == 400 and "NaN" in r.json()["detail"]


async def test_malformed_json(client: Client, space_id: str) -> None:
    r = await client.post(
        f"/api/v1/spaces/{space_id}/memories",
        content=b'{"content": "x',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400
    assert r.json()["title"] == "Malformed JSON"


async def test_bad_recall_requests(client: Client, space_id: str) -> None:
    await make_space(client, space_id)
    url = f"/api/v1/spaces/{space_id}/recall"
    cases = [
        ({}, "query"),
        ({"query": "a", "embedding": random_unit(16, 0)}, "exactly one"),
        ({"embedding": [0.0] * 3}, "embedding"),
        ({"query": "a", "k": 0}, "k"),
        ({"query": "a", "consistency": "sometimes"}, "consistency"),
        ({"query": "a", "tags": ["ok", ""]}, "tags[1]: String should have at least 1"),
        ({"embedding_b64": "not base64!"}, "embedding_b64 is not valid base64"),
        ({"embedding_b64": encode_embedding([0.1, float("nan")])}, "NaN"),
        ({"embedding_b64": encode_embedding([0.5] * 3)}, "embedding_b64: expected 16 values"),
        (
            {"embedding": [0.5] * 16, "embedding_b64": encode_embedding([0.5] * 16)},
            "either embedding or embedding_b64",
        ),
    ]
    for body, name in cases:
        r = await client.post(url, json=body)
        assert r.status_code == 400, body
        assert r.headers["content-type"].startswith("application/problem+json")
        assert name in r.json()["detail"], r.json()
    # the same cue as a list and as base64: the same answer
    await client.post(url.replace("/recall", "/memories"), json={"content": "x", "id": "v"})
    vec = random_unit(16, 4)
    answers = [
        (await client.post(url, json={**cue, "mode": "similarity", "reinforce": False})).json()
        for cue in ({"embedding": vec}, {"embedding_b64": encode_embedding(vec)})
    ]
    found = [[(x["memory"]["id"], x["similarity"]) for x in a["results"]] for a in answers]
    assert found[0] and found[0] == found[1]


async def test_recall_consistency_modes(client: Client, space_id: str) -> None:
    await make_space(client, space_id)
    await client.post(
        f"/api/v1/spaces/{space_id}/memories",
        json={"content": "x", "id": "only", "embedding": random_unit(16, 3)},
    )
    # without reinforcement: its write-back (a WAL command of its own, 0.25 s after
    # a recall) would move the stream past seq 1 on a slow machine
    cue = {"embedding": random_unit(16, 3), "reinforce": False}
    for mode in ("read_your_writes", "strong", "eventual"):
        r = await client.post(
            f"/api/v1/spaces/{space_id}/recall", json={**cue, "consistency": mode}
        )
        assert r.status_code == 200
    strong = (
        await client.post(
            f"/api/v1/spaces/{space_id}/recall", json={**cue, "consistency": "strong"}
        )
    ).json()
    assert strong["applied_seq"] == 1 and strong["results"][0]["memory"]["id"] == "only"


async def test_concurrent_writers_lose_nothing(client: Client, space_id: str) -> None:
    await make_space(client, space_id)

    async def writer(w: int) -> list[str]:
        ids = []
        for i in range(10):
            r = await client.post(
                f"/api/v1/spaces/{space_id}/memories",
                json={"content": f"w{w} m{i}", "embedding": random_unit(16, w * 100 + i)},
            )
            ids += r.json()["ids"]
        return ids

    all_ids = [i for ids in await asyncio.gather(*(writer(w) for w in range(8))) for i in ids]
    page = (await client.get(f"/api/v1/spaces/{space_id}/memories", params={"limit": 1000})).json()
    assert sorted(m["id"] for m in page["memories"]) == sorted(all_ids)


async def test_validation_errors_name_the_field_the_client_sent(
    client: httpx.AsyncClient, space_id: str
) -> None:
    assert (await client.post("/api/v1/spaces", json={"id": space_id, "dim": 8})).status_code == 201
    for query, field in (("limit=0", "limit"), ("limit=abc", "limit")):
        r = await client.get(f"/api/v1/spaces/{space_id}/memories?{query}")
        assert r.status_code == 400, r.text
        assert [e["field"] for e in r.json()["errors"]] == [field]
        assert r.json()["detail"].startswith(f"{field}: ")
    huge = {"content": "x" * 200_000, "embedding": [1.0] * 8}
    r = await client.post(f"/api/v1/spaces/{space_id}/memories", json=huge)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "content", r.text
    r = await client.post(
        f"/api/v1/spaces/{space_id}/memories", json={"memories": [{"content": "ok"}, huge]}
    )
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "memories[1].content"
