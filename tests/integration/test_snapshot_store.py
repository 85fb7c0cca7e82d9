"""The snapshot store on a real JetStream Object Store: what it writes is readable by
nats-py's own ``get``, and a replaced or erased snapshot leaves no bytes on disk."""

from __future__ import annotations

import asyncio
import os
import uuid

from nats.aio.client import Client as Nats

from engram_nats.snapshots import CHUNK_SIZE, STREAM, chunk_subject
from engram_worker.snapshots import SnapshotStore
from tests.helpers import NatsServer, wait_gone_from_disk, wait_on_disk


async def _store(nc: Nats) -> SnapshotStore:
    store = SnapshotStore(nc.jetstream())
    await store.open()
    return store


async def _chunk_subjects(nc: Nats) -> dict[str, int]:
    info = await nc.jetstream().stream_info(STREAM, subjects_filter="$O.ENGRAM_SNAPSHOTS.C.>")
    return dict(info.state.subjects or {})


async def test_save_then_load_round_trips_and_nats_py_reads_it(nc: Nats, space_id: str) -> None:
    store = await _store(nc)
    body = os.urandom(3 * CHUNK_SIZE + 123)
    info = await store.save(space_id, [b"head", body, b"tail"], {"Engram-Applied-Seq": "7"})
    assert info.size == len(body) + 8
    assert info.chunks == 4

    loaded = await store.load(space_id)
    assert loaded is not None
    got_info, data = loaded
    assert bytes(data) == b"head" + body + b"tail"
    assert got_info.headers == {"Engram-Applied-Seq": ["7"]}
    # the plain client reads the same object (so does `nats object get`)
    plain = await nc.jetstream().object_store("ENGRAM_SNAPSHOTS")
    assert (await plain.get(space_id)).data == b"head" + body + b"tail"


async def test_missing_snapshot_loads_as_none(nc: Nats, space_id: str) -> None:
    store = await _store(nc)
    assert await store.load(space_id) is None
    assert await store.erase(space_id) == 0


async def test_replacing_a_snapshot_erases_the_old_bytes(
    nc: Nats, nats_server: NatsServer, space_id: str
) -> None:
    store = await _store(nc)
    marker = f"snap-{uuid.uuid4().hex}".encode()
    first = await store.save(space_id, [b"x" * 1000, marker, b"y" * 1000], {})
    await wait_on_disk(nats_server.store_dir, marker)  # precondition: the snapshot is on disk

    second = await store.save(space_id, [b"the newer snapshot"], {})
    await wait_gone_from_disk(nats_server.store_dir, marker)
    subjects = await _chunk_subjects(nc)
    assert chunk_subject(first.nuid) not in subjects
    assert subjects[chunk_subject(second.nuid)] == 1
    loaded = await store.load(space_id)
    assert loaded is not None and bytes(loaded[1]) == b"the newer snapshot"


async def test_erase_removes_the_snapshot_and_its_bytes(
    nc: Nats, nats_server: NatsServer, space_id: str
) -> None:
    store = await _store(nc)
    marker = f"snap-{uuid.uuid4().hex}".encode()
    info = await store.save(space_id, [marker * 100], {})
    assert await store.erase(space_id) == 1
    assert await store.load(space_id) is None
    assert chunk_subject(info.nuid) not in await _chunk_subjects(nc)
    await wait_gone_from_disk(nats_server.store_dir, marker)


async def test_concurrent_writers_leave_exactly_one_snapshot(nc: Nats, space_id: str) -> None:
    store = await _store(nc)
    infos = await asyncio.gather(
        *(store.save(space_id, [os.urandom(CHUNK_SIZE + i)], {}) for i in range(5))
    )
    loaded = await store.load(space_id)
    assert loaded is not None
    current, _ = loaded
    assert current.nuid in {i.nuid for i in infos}
    mine = {chunk_subject(i.nuid) for i in infos}
    assert set(await _chunk_subjects(nc)) & mine == {chunk_subject(current.nuid)}


async def test_sweep_erases_orphaned_chunks_but_not_live_ones(nc: Nats, space_id: str) -> None:
    store = await _store(nc)
    live = await store.save(space_id, [b"live snapshot"], {})
    orphan = f"{space_id}-orphan".replace("-", "")
    await nc.jetstream().publish(chunk_subject(orphan), b"left by a crashed writer")
    assert await store.sweep(min_age=3600) == 0  # too young: maybe a put in progress
    assert await store.sweep(min_age=0) >= 1
    subjects = await _chunk_subjects(nc)
    assert chunk_subject(orphan) not in subjects
    assert chunk_subject(live.nuid) in subjects


async def test_reads_leave_no_consumer_behind(nc: Nats, space_id: str) -> None:
    """Each read is an ephemeral consumer on the one snapshot stream, and a stream
    holds at most 1000 consumers: a worker loading hundreds of spaces, or a
    test run, hit that limit while unsubscribed consumers waited to expire."""
    store = await _store(nc)
    js = nc.jetstream()
    for i in range(3):
        await store.save(f"{space_id}-{i}", [os.urandom(2 * CHUNK_SIZE + 1)], {})
    before = {c.name for c in await js.consumers_info(STREAM)}
    for _ in range(10):
        for i in range(3):
            assert await store.load(f"{space_id}-{i}") is not None
    await store.erase(f"{space_id}-0")  # lists the chunks with a consumer too
    left = {c.name for c in await js.consumers_info(STREAM)} - before
    assert left == set()
