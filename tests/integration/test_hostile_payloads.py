"""Random and malformed payloads on every ``spaces.<id>.<verb>`` command and
``spaces.<id>.q.<query>`` (wrong types, huge strings, invalid UTF-8, NaN, deep
nesting, near-1 MB bodies): the worker never crashes, the space keeps answering,
every bad command is counted as rejected and every bad query gets an error
reply. The default suite sends 400 of them; the slow suite 10 000."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from typing import Any

import pytest
from nats.aio.client import Client as Nats

from engram_contract.verbs import COMMANDS, QUERIES
from tests.helpers import publish_remembers, query_over_nats, register_space, similar_ids_over_nats

DIM = 16


def _junk_values(rng: random.Random) -> list[Any]:
    return [
        None,
        True,
        -1,
        2**70,
        1.5,
        "x" * rng.choice([0, 1, 300, 150_000]),
        [],
        {},
        [None] * 5,
        {"$gt": 1},
        "\ud800",  # a lone surrogate: not encodable as UTF-8 JSON by most writers
    ]


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def payloads(seed: int, count: int) -> Iterator[bytes]:
    """``count`` bad bodies: raw noise, broken JSON and JSON of the wrong shape."""
    rng = random.Random(seed)
    fields = [
        "schema_version",
        "command_id",
        "memory",
        "id",
        "ids",
        "source",
        "target",
        "weight",
        "embedding",
        "embedding_b64",
        "content",
        "k",
        "mode",
        "members",
    ]
    for i in range(count):
        kind = i % 8
        if kind == 0:  # noise, often invalid UTF-8
            yield bytes(rng.getrandbits(8) for _ in range(rng.choice([1, 17, 512])))
        elif kind == 1:  # truncated JSON
            doc = json.dumps({"schema_version": 1, "command_id": f"c{i}", "memory": {"id": "m"}})
            yield doc[: rng.randrange(1, len(doc))].encode()
        elif kind == 2:  # NaN and infinities (Python's json writes them)
            vec = [float("nan")] + [1.0] * (DIM - 1)
            yield json.dumps(
                {
                    "schema_version": 1,
                    "command_id": f"c{i}",
                    "memory": {"id": f"n{i}", "content": "x", "embedding": vec},
                    "embedding": [float("inf")] * DIM,
                    "k": float("nan"),
                }
            ).encode()
        elif kind == 3:  # deep nesting
            nested = _deep(rng.choice([50, 5000]))
            yield f'{{"schema_version": 1, "command_id": "c{i}", "memory": {nested}}}'.encode()
        elif kind == 4:  # a near-1 MB body
            yield json.dumps(
                {
                    "schema_version": 1,
                    "command_id": f"c{i}",
                    "memory": {"id": f"b{i}", "content": "y" * 900_000},
                }
            ).encode()
        elif kind == 5:  # invalid UTF-8 inside otherwise fine JSON
            yield (
                b'{"schema_version": 1, "command_id": "c'
                + str(i).encode()
                + b'", "memory": {"id": "u", "content": "\xff\xfe"}}'
            )
        else:  # the right keys with the wrong types
            junk: dict[str, Any] = {
                f: rng.choice(_junk_values(rng)) for f in rng.sample(fields, rng.randrange(1, 6))
            }
            text = json.dumps(junk, ensure_ascii=True) if kind == 6 else json.dumps(junk)
            yield text.encode("utf-8", "surrogatepass")


async def _attack(nc: Nats, space: str, count: int) -> None:
    seq = await publish_remembers(nc, space, range(3))
    before = await query_over_nats(nc, space, "stats", {"min_seq": seq})
    js = nc.jetstream()
    verbs = sorted(COMMANDS)
    queries = sorted(QUERIES)
    acks = []
    bad_queries = 0
    for i, body in enumerate(payloads(seed=count, count=count)):
        if i % 4 == 3:  # a quarter are queries
            query = queries[i % len(queries)]
            msg = await nc.request(f"spaces.{space}.q.{query}", body, timeout=10)
            assert msg.data, query
            answer = json.loads(msg.data)
            assert "error" in answer, (query, body[:200], answer)
            bad_queries += 1
        else:
            verb = verbs[i % len(verbs)]
            acks.append(await js.publish_async(f"spaces.{space}.{verb}", body))
    last = max(int(a.seq) for a in await asyncio.gather(*acks))
    after = await query_over_nats(nc, space, "stats", {"min_seq": last})
    assert "error" not in after, after
    # every bad command was folded as rejected, nothing else changed
    assert after["applied_seq"] == last
    assert after["rejected"] - before["rejected"] == len(acks)
    assert after["memories"] == before["memories"] == 3
    assert bad_queries > count // 8
    # and the space still answers
    assert (await similar_ids_over_nats(nc, space, 1, last, k=1))[0] == "m1"


@pytest.mark.usefixtures("worker")
async def test_bad_payloads_are_rejected_and_the_space_keeps_answering(
    nc: Nats, space_id: str
) -> None:
    await register_space(nc, space_id)
    await _attack(nc, space_id, 400)


@pytest.mark.slow
@pytest.mark.usefixtures("worker")
async def test_ten_thousand_bad_payloads(nc: Nats, space_id: str) -> None:
    await register_space(nc, space_id)
    await _attack(nc, space_id, 10_000)
