"""The Python SDK: one test suite, run over both transports (the gateway over HTTP
through a real uvicorn, and NATS straight to the test nats-server), a worker in
both cases. What a user notices: what is remembered is recalled, forgotten is
gone, links steer spreading activation, events belong to their space, and the
same mistakes raise the same errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import nats.js.errors
import numpy as np
import pytest
from nats.aio.client import Client as Nats

from engram_client import (
    Conflict,
    EngramClient,
    Event,
    InvalidInput,
    MemoryNotFound,
    SpaceNotFound,
)
from engram_contract.messages import EventsGap, MemoryForgotten, MemoryIn, MemoryStored
from engram_nats.streams import EVENTS_STREAM
from engram_worker.worker import Worker
from tests.helpers import NatsServer, free_port, gateway_settings, running_gateway

DIM = 16


def basis(i: int) -> list[float]:
    """Orthogonal unit vectors: memories that resemble nothing but themselves."""
    return [1.0 if j == i else 0.0 for j in range(DIM)]


@pytest.fixture(params=["http", "nats", "grpc"])
async def engram(
    request: pytest.FixtureRequest, nats_server: NatsServer, worker: Worker
) -> AsyncIterator[EngramClient]:
    if request.param == "http":
        async with (
            running_gateway(gateway_settings(nats_server.url)) as http,
            EngramClient.http(str(http.base_url)) as client,
        ):
            yield client
    elif request.param == "grpc":
        port = free_port()
        async with (
            running_gateway(gateway_settings(nats_server.url, grpc_port=port)),
            EngramClient.grpc(f"127.0.0.1:{port}") as client,
        ):
            yield client
    else:
        async with EngramClient.nats(nats_server.url) as client:
            yield client


async def next_event(events: Any, timeout: float = 10.0) -> Event:
    event: Event = await asyncio.wait_for(anext(events), timeout)
    return event


async def test_remember_then_recall_finds_it(engram: EngramClient, space_id: str) -> None:
    rec = await engram.create_space(space_id)
    assert rec.id == space_id and rec.status == "active"
    alpha = engram.space(space_id)
    pet = await alpha.remember("the user has a cat named Tom", id="pet", tags=["pets"])
    await alpha.remember("the deploy key lives in vault", confidence=0.9)
    assert pet.id == "pet" and pet.seq >= 1

    answer = await alpha.recall("what is the name of the cat?", k=1, mode="similarity")
    (best,) = answer.results
    assert best.memory.id == "pet" and best.memory.tags == ["pets"]
    assert best.memory.content == "the user has a cat named Tom"
    assert answer.space == space_id and answer.applied_seq >= pet.seq

    tagged = await alpha.recall("deploy key", k=5, tags=["pets"])
    assert [r.memory.id for r in tagged.results] == ["pet"]

    info = await engram.get_space(space_id)
    assert (info.id, info.memories) == (space_id, 2)
    assert space_id in {s.id for s in await engram.spaces()}


async def test_remember_many_and_paging(engram: EngramClient, space_id: str) -> None:
    alpha = engram.space(space_id)  # created by its first write
    written = await alpha.remember_many(
        [
            "plain text memory",
            {"id": "m-1", "content": "a dict", "tags": ["x"]},
            MemoryIn(id="m-2", content="a model", confidence=0.2),
            *(f"note {i}" for i in range(4)),
        ]
    )
    assert len(written.ids) == 7 and written.ids[1:3] == ["m-1", "m-2"]

    first = await alpha.list(limit=3)
    assert len(first.memories) == 3 and first.next_cursor is not None
    seen = [m.id for m in first.memories]
    cursor: str | None = first.next_cursor
    while cursor is not None:
        page = await alpha.list(limit=3, cursor=cursor)
        seen += [m.id for m in page.memories]
        cursor = page.next_cursor
    assert seen == written.ids  # stream order
    assert [m.id async for m in alpha.iter_memories(page_size=2)] == written.ids

    m2 = await alpha.get("m-2")
    assert (m2.content, m2.confidence) == ("a model", 0.2)
    with_vec = await alpha.get("m-1", include_embedding=True)
    assert with_vec.embedding is not None and len(with_vec.embedding) == 384


async def test_forget_removes_it_from_get_and_recall(engram: EngramClient, space_id: str) -> None:
    await engram.create_space(space_id, dim=DIM)
    alpha = engram.space(space_id)
    await alpha.remember("gone soon", id="gone", embedding=basis(0))
    await alpha.remember("stays", id="stays", embedding=basis(1))
    assert (await alpha.get("gone")).content == "gone soon"

    seq = await alpha.forget("gone")
    assert seq > 0
    with pytest.raises(MemoryNotFound) as err:
        await alpha.get("gone")
    assert err.value.status == 404
    answer = await alpha.recall(basis(0), k=10, mode="similarity")
    assert "gone" not in {r.memory.id for r in answer.results}
    assert [m.id async for m in alpha.iter_memories()] == ["stays"]
    await alpha.forget("never-was")  # forgetting an unknown id is a no-op


async def test_forget_many(engram: EngramClient, space_id: str) -> None:
    await engram.create_space(space_id, dim=DIM)
    alpha = engram.space(space_id)
    await alpha.remember_many(
        [MemoryIn(id=f"m{i}", content=f"memory {i}", embedding=basis(i)) for i in range(6)]
    )
    seq = await alpha.forget_many(["m0", "m2", "never-was", "m4"])  # unknown ids: no-ops
    assert seq > 0
    for gone in ("m0", "m2", "m4"):
        with pytest.raises(MemoryNotFound):
            await alpha.get(gone)
    answer = await alpha.recall(basis(0), k=10, mode="similarity", reinforce=False)
    assert {r.memory.id for r in answer.results} == {"m1", "m3", "m5"}
    # a numpy cue goes as embedding_b64: the same answer
    as_b64 = await alpha.recall(
        np.asarray(basis(0), dtype=np.float32), k=10, mode="similarity", reinforce=False
    )
    assert [(r.memory.id, r.similarity) for r in as_b64.results] == [
        (r.memory.id, r.similarity) for r in answer.results
    ]
    assert [m.id async for m in alpha.iter_memories()] == ["m1", "m3", "m5"]

    # more than one batch: several requests (HTTP) or pipelined batches (NATS)
    await alpha.remember_many(
        [
            MemoryIn(id=f"bulk-{i}", content="bulk", embedding=basis(i % DIM))
            for i in range(0, 2500, 97)
        ]
    )
    last = await alpha.forget_many([f"bulk-{i}" for i in range(2500)])
    assert last > seq
    assert [m.id async for m in alpha.iter_memories()] == ["m1", "m3", "m5"]

    # a retry with the same key is stored once and answers the same seq
    again = [await alpha.forget_many(["m0", "m2"], idempotency_key="retry") for _ in range(2)]
    assert again[0] == again[1] > last

    with pytest.raises(InvalidInput) as err:
        await alpha.forget_many(["m1", "not valid!"])
    assert err.value.errors[0]["field"] == "ids[1]"
    with pytest.raises(InvalidInput):
        await alpha.forget_many([])
    with pytest.raises(InvalidInput):
        await alpha.forget_many("m1")
    assert (await alpha.get("m1")).content == "memory 1"  # nothing refused was sent
    with pytest.raises(SpaceNotFound):
        await engram.space(f"{space_id}-x").forget_many(["m1"])


async def test_link_steers_spreading_activation(engram: EngramClient, space_id: str) -> None:
    # orthogonal memories, stored with temporal links off: only the explicit link joins them
    await engram.create_space(space_id, dim=DIM, links={"temporal_window_s": 0})
    alpha = engram.space(space_id)
    await alpha.remember_many(
        [MemoryIn(id=f"m{i}", content=f"memory {i}", embedding=basis(i)) for i in range(3)]
    )
    plain = await alpha.recall(basis(0), k=3, reinforce=False)
    assert [r.memory.id for r in plain.results if r.score > 0] == ["m0"]

    await alpha.link("m0", "m2", weight=0.9, kind="cause")
    linked = await alpha.recall(basis(0), k=3, trace=True, reinforce=False)
    by_id = {r.memory.id: r for r in linked.results if r.score > 0}
    assert set(by_id) == {"m0", "m2"}
    assert by_id["m2"].hops == 1
    assert by_id["m2"].trace is not None
    last = by_id["m2"].trace[-1]
    assert (last.memory_id, last.kind, last.weight) == ("m2", "cause", 0.9)

    with pytest.raises(MemoryNotFound) as err:
        await alpha.link("m0", "ghost", weight=0.5)
    assert [e["field"] for e in err.value.errors] == ["target"]


async def test_events_are_this_spaces_only(engram: EngramClient, new_space: Any) -> None:
    alpha, beta = engram.space(new_space("alpha")), engram.space(new_space("beta"))
    await alpha.remember("before", id="a-0")
    await beta.remember("before", id="b-0")
    async with alpha.events() as events:
        await beta.remember("beta's", id="b-1")
        await alpha.remember("one", id="a-1")
        await alpha.remember("two", id="a-2")
        await alpha.link("a-1", "a-2", weight=0.7)
        await alpha.forget("a-1")
        got: list[Event] = []
        while len(got) < 4:
            event = await next_event(events)
            # a-0's event may come too: the worker announces a write after its PubAck
            if getattr(event.data, "memory_id", None) != "a-0":
                got.append(event)
    assert [e.kind for e in got] == ["stored", "stored", "linked", "forgotten"]
    assert {e.data.space for e in got} == {alpha.id}
    first, second, link, forgotten = got
    assert second.data.memory_id == "a-2"  # type: ignore[union-attr]
    assert isinstance(first.data, MemoryStored) and first.data.memory_id == "a-1"
    assert isinstance(forgotten.data, MemoryForgotten) and forgotten.data.existed
    assert (link.data.source, link.data.target) == ("a-1", "a-2")  # type: ignore[union-attr]
    assert [e.id for e in got] == sorted(e.id for e in got)

    # resume after an event id, and only the kinds asked for
    async with alpha.events(types=["forgotten"], last_event_id=first.id) as events:
        again = await next_event(events)
    assert (again.kind, again.id) == ("forgotten", forgotten.id)


async def test_unknown_space_raises_space_not_found(engram: EngramClient, space_id: str) -> None:
    ghost = engram.space(space_id)
    with pytest.raises(SpaceNotFound):
        await engram.get_space(space_id)
    with pytest.raises(SpaceNotFound):
        await ghost.recall("anything")
    with pytest.raises(SpaceNotFound):
        await ghost.get("x")
    with pytest.raises(SpaceNotFound):
        await ghost.list()
    with pytest.raises(SpaceNotFound):
        await ghost.link("a", "b", weight=0.5)
    with pytest.raises(SpaceNotFound):
        await ghost.events().open()
    with pytest.raises(SpaceNotFound):
        await engram.delete_space(space_id)
    assert space_id not in {s.id for s in await engram.spaces()}


async def test_bad_input_raises_invalid_input(engram: EngramClient, space_id: str) -> None:
    await engram.create_space(space_id, dim=DIM)
    alpha = engram.space(space_id)
    with pytest.raises(InvalidInput, match="content"):
        await alpha.remember("   ")
    with pytest.raises(InvalidInput) as err:
        await alpha.remember("x", confidence=2.0)
    assert err.value.errors[0]["field"] == "confidence"
    with pytest.raises(InvalidInput) as err:
        await alpha.remember_many(["fine", {"content": "bad", "confidence": -1}])
    assert err.value.errors[0]["field"] == "memories[1].confidence"
    with pytest.raises(InvalidInput, match="16"):
        await alpha.remember("wrong dim", embedding=[1.0, 2.0])  # found by the space's dim
    with pytest.raises(InvalidInput, match="16"):
        await alpha.recall([1.0, 0.0])
    with pytest.raises(InvalidInput, match="embedding_b64: expected 16 values"):
        await alpha.recall(np.ones(3, dtype=np.float32))  # sent as embedding_b64
    with pytest.raises(InvalidInput):
        await alpha.recall("x", k=0)
    with pytest.raises(InvalidInput):
        await alpha.link("same", "same", weight=0.5)
    with pytest.raises(InvalidInput):
        alpha.events(types=["nope"])
    with pytest.raises(InvalidInput, match="space id"):
        engram.space("Not A Space")
    with pytest.raises(InvalidInput):
        await engram.create_space(space_id, dim=1)
    with pytest.raises(Conflict):
        await engram.create_space(space_id, dim=32)
    assert (await engram.create_space(space_id)).dim == DIM  # compatible: the same space
    # nothing of the refused writes was stored
    assert [m async for m in alpha.iter_memories()] == []


async def test_spaces_are_isolated(engram: EngramClient, new_space: Any) -> None:
    a, b = new_space("iso-a"), new_space("iso-b")
    alpha, beta = engram.space(a), engram.space(b)
    await alpha.remember("alpha's secret: the launch code is 1234", id="same")
    await beta.remember("beta's grocery list: milk and eggs", id="same")
    assert (await alpha.get("same")).content.startswith("alpha's")
    assert (await beta.get("same")).content.startswith("beta's")
    await alpha.remember("only in alpha", id="only-a")
    with pytest.raises(MemoryNotFound):
        await beta.get("only-a")
    answer = await beta.recall("launch code", k=10)
    assert {r.memory.content for r in answer.results} == {"beta's grocery list: milk and eggs"}

    await engram.delete_space(a)
    with pytest.raises(SpaceNotFound):
        await alpha.get("same")
    assert (await beta.get("same")).content.startswith("beta's")
    assert (await engram.get_space(b)).memories == 1


async def test_closing_events_frees_the_consumer(
    engram: EngramClient, nc: Nats, space_id: str
) -> None:
    async def consumers() -> int:
        try:
            info = await nc.jetstream().stream_info(EVENTS_STREAM)
        except nats.js.errors.NotFoundError:  # no gateway yet: the SDK creates it
            return 0
        return int(info.state.consumer_count)

    async def becomes(n: int) -> None:
        for _ in range(100):
            if await consumers() == n:
                return
            await asyncio.sleep(0.05)
        assert await consumers() == n

    alpha = engram.space(space_id)
    await alpha.remember("x", id="x")
    before = await consumers()
    async with alpha.events() as events:
        await becomes(before + 1)
        await alpha.remember("y", id="y")
        # x's event may come too: the worker announces a write after its PubAck
        while (await next_event(events)).data.memory_id != "y":  # type: ignore[union-attr]
            pass
    await becomes(before)


async def test_resuming_after_expired_events_yields_a_gap(
    engram: EngramClient, nc: Nats, space_id: str
) -> None:
    alpha = engram.space(space_id)
    await alpha.remember("before", id="m-0")
    async with alpha.events() as events:
        for m in ("m-1", "m-2", "m-3"):
            await alpha.remember(m, id=m)
        got: list[Event] = []
        while len(got) < 3:
            event = await next_event(events)
            if getattr(event.data, "memory_id", None) != "m-0":  # announced after its PubAck
                got.append(event)
    first, _, third = got
    # what ENGRAM_EVENTS_MAX_AGE does with time: the events before m-3's expire
    await nc.jetstream().purge_stream(EVENTS_STREAM, seq=third.id)
    async with alpha.events(last_event_id=first.id) as events:
        gap = await next_event(events)
        assert gap.kind == "gap"
        assert isinstance(gap.data, EventsGap)
        assert (gap.data.space, gap.data.after, gap.data.first_kept) == (
            space_id,
            first.id,
            third.id,
        )
        assert gap.id == first.id
        after = await next_event(events)
        assert (after.kind, after.id) == ("stored", third.id)
