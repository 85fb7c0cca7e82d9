"""Recalls are answered while a snapshot is taken: the snapshot holds the index
lock for writing only to insert what is pending, then reads the state in threads
(the fold paused) and writes it holding nothing queries need. Each test holds
the snapshot inside one of its steps and asks meanwhile."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest
from nats.aio.client import Client as Nats

from engram_worker import snapshotter
from engram_worker.core.index import VectorIndex
from engram_worker.core.persistence import capture
from engram_worker.core.snapshot import decode
from engram_worker.host import SpaceHost
from engram_worker.snapshots import SnapshotStore
from engram_worker.worker import Worker
from tests.helpers import (
    DIM,
    eventually,
    publish_remembers,
    register_space,
    similar_ids_over_nats,
)


async def hosted(workers: Any, nc: Nats, space: str, count: int) -> tuple[Worker, SpaceHost, int]:
    await register_space(nc, space)
    seq = await publish_remembers(nc, space, range(count))
    worker = await workers()
    host = worker.hosts[space]
    await host.wait_applied(seq, 10)
    return worker, host, seq


class Gate:
    """Holds a thread at :meth:`pass_` until :meth:`open`; says when one is there."""

    def __init__(self) -> None:
        self.inside = threading.Event()
        self._open = threading.Event()

    def pass_(self) -> None:
        self.inside.set()
        assert self._open.wait(30), "never let through"

    def open(self) -> None:
        self._open.set()

    async def reached(self) -> None:
        assert await asyncio.to_thread(self.inside.wait, 30), "the snapshot never got there"


def held(gate: Gate, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        gate.pass_()
        return fn(*args, **kwargs)

    return wrapper


@pytest.mark.parametrize("step", ["capture", "to_bytes"])
async def test_a_recall_is_answered_while_the_snapshot_reads_the_state(
    nc: Nats, workers: Any, space_id: str, step: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker, host, seq = await hosted(workers, nc, space_id, 60)
    gate = Gate()
    if step == "capture":
        monkeypatch.setattr(snapshotter, "capture", held(gate, capture))
    else:
        index = host.state.index
        monkeypatch.setattr(index, "to_bytes", held(gate, index.to_bytes))
    snapshot = asyncio.create_task(host.snapshotter.snapshot())
    try:
        await gate.reached()
        # a memory stored meanwhile waits for the capture (the fold is paused)...
        later = await publish_remembers(nc, space_id, range(60, 61))
        # ...and recalls are answered, at the captured position
        assert (await similar_ids_over_nats(nc, space_id, 17, seq))[0] == "m17"
        assert not snapshot.done() and host.state.applied_seq == seq
    finally:
        gate.open()
    header = await snapshot
    assert (header.applied_seq, header.memories) == (seq, 60)
    assert (await similar_ids_over_nats(nc, space_id, 60, later))[0] == "m60"
    # the snapshot holds what was captured: the same 60 memories in its records
    # and in its index
    loaded = await worker.snapshots.load(space_id)
    assert loaded is not None
    snap = decode(loaded[1])
    assert sorted(snap.records["id"]) == sorted(f"m{i}" for i in range(60))
    index = VectorIndex.from_bytes(snap.index, DIM, "cos")
    assert len(index) == 60 and index.contains_all([int(k) for k in snap.records["key"]])


async def test_memories_are_stored_and_recalled_while_the_snapshot_is_written(
    nc: Nats, workers: Any, space_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, host, seq = await hosted(workers, nc, space_id, 40)
    writing, release = asyncio.Event(), asyncio.Event()
    save = SnapshotStore.save

    async def slow_save(self: SnapshotStore, *args: Any, **kwargs: Any) -> Any:
        writing.set()
        await release.wait()
        return await save(self, *args, **kwargs)

    monkeypatch.setattr(SnapshotStore, "save", slow_save)
    snapshot = asyncio.create_task(host.snapshotter.snapshot())
    try:
        async with asyncio.timeout(30):
            await writing.wait()
        later = await publish_remembers(nc, space_id, range(40, 45))
        # folded, indexed and found while the snapshot is still being written
        assert (await similar_ids_over_nats(nc, space_id, 43, later))[0] == "m43"
        assert not snapshot.done()
    finally:
        release.set()
    header = await snapshot
    assert (header.applied_seq, header.memories) == (seq, 40)
    assert host.snapshotter.snapshot_seq == seq


async def test_a_fold_step_waiting_for_a_reader_goes_in_before_the_capture(
    nc: Nats, workers: Any, space_id: str
) -> None:
    """The fold steps already past the pause finish before the capture: a fold
    step waiting for a query to finish is applied first, then the fold waits."""
    _, host, seq = await hosted(workers, nc, space_id, 20)
    inside, release = threading.Event(), threading.Event()

    def slow_reader(_: Any) -> None:
        inside.set()
        release.wait(30)

    reading = asyncio.create_task(host.with_index(slow_reader, thread=True))
    await asyncio.to_thread(inside.wait, 30)
    later = await publish_remembers(nc, space_id, range(20, 21))
    # the fold holds the remember until the reader is done
    await eventually(lambda: _fold_waits(host))
    snapshot = asyncio.create_task(host.snapshotter.snapshot())
    await asyncio.sleep(0.05)
    release.set()
    await reading
    header = await snapshot
    # the step that was waiting went in before the capture, not beside it
    assert (header.applied_seq, header.memories) == (later, 21)
    assert later > seq


async def _fold_waits(host: SpaceHost) -> bool | None:
    return True if host.state_lock._waiters else None
