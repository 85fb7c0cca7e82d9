"""Recall off the event loop: concurrent readers of a space overlap (each in a
thread), and the fold never interleaves with them — a recall sees the state at
one position, before or after each message, and a forget that was acknowledged
is never undone by a recall in flight."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import numpy as np
from nats.aio.client import Client as Nats

from engram_contract.messages import encode_embedding
from engram_worker.core.state import SpaceState
from engram_worker.host import SpaceHost
from engram_worker.worker import Worker
from tests.helpers import (
    DIM,
    eventually,
    publish_remembers,
    query_over_nats,
    random_unit,
    register_space,
)


async def hosted(worker: Worker, nc: Nats, space: str, count: int) -> tuple[SpaceHost, int]:
    await register_space(nc, space)
    seq = await publish_remembers(nc, space, range(count))
    host = await eventually(lambda: _host(worker, space))
    await host.wait_applied(seq, 10)
    return host, seq


async def _host(worker: Worker, space: str) -> SpaceHost | None:
    return worker.hosts.get(space)


async def test_readers_of_one_space_overlap_in_threads(
    worker: Worker, nc: Nats, new_space: Any
) -> None:
    host, _ = await hosted(worker, nc, new_space("rc"), 50)
    n = 4
    # each reader waits in its thread until all n are inside at once: readers
    # that queued behind one another would break the barrier (timeout) instead
    barrier = threading.Barrier(n, timeout=30)
    cue = np.asarray(random_unit(DIM, 7), dtype=np.float32)

    def reader(st: SpaceState) -> list[str]:
        barrier.wait()
        return [r.memory.id for r in st.recall(cue, 3)]

    answers = await asyncio.gather(*(host.with_index(reader, thread=True) for _ in range(n)))
    assert all(a == answers[0] and a[0] == "m7" for a in answers)
    assert host.indexer.lock.idle and host.state_lock.idle


async def test_readers_of_two_spaces_overlap(worker: Worker, nc: Nats, new_space: Any) -> None:
    a, _ = await hosted(worker, nc, new_space("rc"), 10)
    b, _ = await hosted(worker, nc, new_space("rc"), 10)
    barrier = threading.Barrier(2, timeout=30)

    def reader(st: SpaceState) -> int:
        barrier.wait()
        return len(st)

    assert await asyncio.gather(
        a.with_index(reader, thread=True), b.with_index(reader, thread=True)
    ) == [10, 10]


async def test_fold_waits_for_a_recall_in_flight_and_forget_sticks(
    worker: Worker, nc: Nats, new_space: Any
) -> None:
    space = new_space("rc")
    host, _ = await hosted(worker, nc, space, 20)
    inside, release = threading.Event(), threading.Event()
    seen: list[bool] = []

    def slow_reader(st: SpaceState) -> None:
        inside.set()
        seen.append(st.get("m3") is not None)
        release.wait(30)
        # the forget was folded while we read? then m3 is gone under our feet
        seen.append(st.get("m3") is not None)

    reading = asyncio.create_task(host.with_index(slow_reader, thread=True))
    await asyncio.to_thread(inside.wait, 30)
    cid = "forget-m3"
    ack = await nc.jetstream().publish(
        f"spaces.{space}.forget",
        json.dumps({"schema_version": 1, "command_id": cid, "memory_id": "m3"}).encode(),
        headers={"Nats-Msg-Id": cid},
    )
    # the fold has the forget and waits for the reader: it does not apply it
    await eventually(lambda: _waiting(host))
    assert host.state.applied_seq < ack.seq and host.state.get("m3") is not None
    release.set()
    await reading
    assert seen == [True, True]
    await host.wait_applied(ack.seq, 10)
    assert host.state.get("m3") is None
    # acknowledged: no recall after it returns m3, whatever else is in flight
    answers = await asyncio.gather(
        *(
            query_over_nats(
                nc,
                space,
                "recall",
                {"embedding": random_unit(DIM, 3), "k": 20, "mode": mode, "min_seq": ack.seq},
            )
            for mode in ("similarity", "spreading", "hybrid") * 3
        )
    )
    for answer in answers:
        ids = [r["memory"]["id"] for r in answer["results"]]
        assert "m3" not in ids and len(ids) == 19


async def _waiting(host: SpaceHost) -> bool | None:
    return True if host.state_lock._waiters else None


async def test_recall_during_a_big_batch_sees_one_position(
    worker: Worker, nc: Nats, new_space: Any
) -> None:
    space = new_space("rc")
    _, first = await hosted(worker, nc, space, 1)
    js = nc.jetstream()
    count = 600
    acks = []
    for i in range(1, count + 1):
        cid = f"{space}-t{i}"
        body = {
            "schema_version": 1,
            "command_id": cid,
            "memory": {
                "id": f"t{i}",
                "content": f"tagged {i}",
                "tags": ["t"],
                "embedding_b64": encode_embedding(random_unit(DIM, 1000 + i)),
            },
        }
        acks.append(
            await js.publish_async(
                f"spaces.{space}.remember",
                json.dumps(body).encode(),
                headers={"Nats-Msg-Id": cid},
            )
        )
    # recalls race the fold of the batch (no wait: eventual); the tag filter
    # makes the search exact, so each answer must hold exactly the tagged
    # memories folded at its applied_seq, none later
    answers: list[dict[str, Any]] = []
    while True:
        batch = await asyncio.gather(
            *(
                query_over_nats(
                    nc,
                    space,
                    "recall",
                    {
                        "embedding": random_unit(DIM, 5),
                        "k": 1000,
                        "mode": "similarity",
                        "tags": ["t"],
                        "consistency": "eventual",
                        "reinforce": False,
                    },
                )
                for _ in range(4)
            )
        )
        answers.extend(batch)
        if all(a["applied_seq"] >= first + count for a in batch):
            break
    await asyncio.gather(*acks)
    for answer in answers:
        applied = answer["applied_seq"]
        folded = max(0, min(count, applied - first))
        ids = {r["memory"]["id"] for r in answer["results"]}
        assert ids == {f"t{i}" for i in range(1, folded + 1)}, applied
        assert all(r["memory"]["seq"] <= applied for r in answer["results"])
