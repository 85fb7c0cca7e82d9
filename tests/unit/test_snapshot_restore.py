"""``RestoreSink``: the worker's two restore threads behind the chunks the event
loop receives. A whole snapshot comes out as the state decoding gives; damage
found by either thread stops the read at the next chunk (the rest is not
read for nothing) and is raised as it was found, never a state."""

from __future__ import annotations

import asyncio

import pytest
from nats.js import api

from engram_worker.core.snapshot import SnapshotInvalid, read_header
from engram_worker.snapshot_restore import RestoreSink
from tests.helpers import empty_state
from tests.unit.test_snapshot import DIM, assert_same, busy_wal, load, replay, write


@pytest.fixture(scope="module")
def snapshot() -> bytes:
    return write(replay(busy_wal()))


def sink(data: bytes, check: str | None = None, size: int | None = None) -> RestoreSink:
    info = api.ObjectInfo(
        name="alpha", bucket="b", nuid="n", size=len(data) if size is None else size
    )
    return RestoreSink(info, lambda _: check, empty_state(DIM))


async def test_a_whole_snapshot_restores_as_decoding_does(snapshot: bytes) -> None:
    into = sink(snapshot)
    try:
        for at in range(0, len(snapshot), 700):
            into.feed(snapshot[at : at + 700])
        await into.end()
    finally:
        into.close()
    assert into.header is not None and into.state is not None
    assert_same(load(snapshot), into.state)
    assert set(into.times) == {"header", "records", "index read", "index"}


async def test_damage_stops_the_read_at_the_next_chunk(snapshot: bytes) -> None:
    data = bytearray(snapshot)
    data[: len(b"ENGRAM")] = b"XXXXXX"
    into = sink(bytes(data))
    into.feed(bytes(data[:100]))

    async def feed_on() -> None:
        for _ in range(500):  # the read thread's refusal reaches the loop's next feed
            into.feed(b"\0" * 10)
            await asyncio.sleep(0.01)

    with pytest.raises(SnapshotInvalid, match="magic"):
        await feed_on()
    with pytest.raises(SnapshotInvalid, match="magic"):
        await into.end()
    into.close()
    assert into.state is None


async def test_a_snapshot_that_will_not_do_is_refused_at_its_end_too(snapshot: bytes) -> None:
    into = sink(snapshot, check="it belongs to an earlier space with this id")
    head = read_header(snapshot)[1]
    into.feed(snapshot[:head])
    with pytest.raises(SnapshotInvalid, match="earlier space"):
        await into.end()
    into.close()
    assert into.state is None


async def test_a_truncated_snapshot_is_refused_at_its_end(snapshot: bytes) -> None:
    into = sink(snapshot[:-10], size=len(snapshot))
    into.feed(snapshot[:-10])
    with pytest.raises(SnapshotInvalid, match="truncated"):
        await into.end()
    into.close()
    assert into.state is None
