"""``engram migrate --embedder``: a space copied into a new one with another
embedder, every memory's text embedded again (ids, contents, links kept), so a
paraphrased question the old embedder missed is found in the new space."""

from __future__ import annotations

import json

import httpx

from tests.integration.test_migrate_cli import engram, url_of

Client = httpx.AsyncClient

FACTS = {
    "pet": "The user has a cat called Miso",
    "job": "The user works night shifts as an ICU nurse",
    "car": "Tom drives a blue Toyota Corolla",
    "food": "Sarah is allergic to peanuts",
    "music": "The user plays bass guitar in a jazz trio",
}


async def test_migrate_into_a_space_with_another_embedder(client: Client, space_id: str) -> None:
    source, target = space_id, f"{space_id}-e5"
    r = await client.post(
        "/api/v1/spaces", json={"id": source, "dim": 64, "embedder": "hash-ngram-v1"}
    )
    assert r.status_code == 201
    memories = [{"id": k, "content": v} for k, v in FACTS.items()]
    r = await client.post(f"/api/v1/spaces/{source}/memories", json={"memories": memories})
    assert r.status_code == 202
    r = await client.post(
        f"/api/v1/spaces/{source}/links", json={"source": "pet", "target": "job", "weight": 0.8}
    )
    assert r.status_code == 202

    code, _, err = await engram(
        "migrate", "--from", source, "--to", target, "--embedder", "e5-small", "--dim", "384",
        "--url", url_of(client),
    )  # fmt: skip
    assert code == 0, err
    assert "embed with e5-small" in err  # the progress bar says what it is doing

    rec = (await client.get(f"/api/v1/spaces/{target}")).json()
    assert (rec["embedder"], rec["dim"], rec["memories"]) == ("e5-small", 384, len(FACTS))
    assert rec["links"]["semantic_threshold"] == 0.9  # e5's, not the source's default
    got = (await client.get(f"/api/v1/spaces/{target}/memories/pet")).json()
    assert got["content"] == FACTS["pet"]
    r = await client.post(
        f"/api/v1/spaces/{target}/recall",
        json={"query": "what instrument does the user play?", "k": 1, "mode": "similarity"},
    )
    assert r.json()["results"][0]["memory"]["id"] == "music"
    r = await client.post(
        f"/api/v1/spaces/{target}/recall",
        json={"query": "which animal lives with them?", "k": 3, "trace": True},
    )
    assert r.json()["results"][0]["memory"]["id"] == "pet"
    # the explicit link came along (the export lists it on the later memory's line)
    export = (await client.get(f"/api/v1/spaces/{target}/export")).text.splitlines()
    lines = [json.loads(line) for line in export if line.strip()]
    linked = {(d["id"], link["target"]) for d in lines if "id" in d for link in d.get("links", [])}
    assert linked & {("job", "pet"), ("pet", "job")}

    # into an existing space with another embedder: refused, nothing copied
    code, _, err = await engram(
        "migrate", "--from", source, "--to", target, "--embedder", "hash-ngram-v1",
        "--url", url_of(client),
    )  # fmt: skip
    assert code == 1
    assert "embeds with 'e5-small', not 'hash-ngram-v1'" in err

    # an embedder that does not exist: the gateway's list of those that do
    code, _, err = await engram(
        "migrate", "--from", source, "--to", f"{space_id}-x", "--embedder", "bert-9000",
        "--url", url_of(client),
    )  # fmt: skip
    assert code == 1
    assert "available: e5-small, hash-ngram-v1, openai" in err
