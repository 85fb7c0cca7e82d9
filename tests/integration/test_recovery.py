"""Recovery from snapshots: a restarted worker restores the newest snapshot and
tails the WAL after it; a damaged, foreign or missing snapshot means a full
replay; one broken space never keeps the others from loading; a forgotten memory
leaves the snapshots too."""

from __future__ import annotations

import json
import uuid
from typing import Any

import nats
import numpy as np
import pytest
from nats.aio.client import Client as Nats

from engram_nats.registry import SpaceRegistry
from engram_worker.snapshots import SnapshotStore
from engram_worker.worker import Worker
from tests.helpers import (
    NatsServer,
    files_containing,
    publish_remembers,
    query_over_nats,
    random_unit,
    register_space,
    similar_ids_over_nats,
    wait_gone_from_disk,
    worker_settings,
)

DIM = 16


async def store(nc: Nats) -> SnapshotStore:
    snapshots = SnapshotStore(nc.jetstream())
    await snapshots.open()
    return snapshots


async def test_restart_restores_the_snapshot_then_tails_newer_messages(
    nc: Nats, workers: Any, space_id: str
) -> None:
    await register_space(nc, space_id)
    seq = await publish_remembers(nc, space_id, range(300))
    first = await workers()
    before = {i: await similar_ids_over_nats(nc, space_id, i, seq) for i in (0, 150, 299)}
    header = await first.hosts[space_id].snapshotter.snapshot()
    assert (header.applied_seq, header.memories) == (300, 300)
    await first.stop()  # nothing changed since: no second snapshot

    seq = await publish_remembers(nc, space_id, range(300, 350))  # written while no worker runs
    second = await workers()
    host = second.hosts[space_id]
    assert host.snapshotter.recovery.startswith("restored from snapshot at seq 300"), (
        host.snapshotter.recovery
    )
    stats = await query_over_nats(nc, space_id, "stats", {"min_seq": seq})
    assert (stats["memories"], stats["applied_seq"], stats["snapshot_seq"]) == (350, 350, 300)
    assert stats["recovery"] == host.snapshotter.recovery
    for i, ids in before.items():
        assert await similar_ids_over_nats(nc, space_id, i, seq) == ids
    assert (await similar_ids_over_nats(nc, space_id, 333, seq))[0] == "m333"
    got = await query_over_nats(
        nc, space_id, "get", {"memory_id": "m7", "include_embedding": True, "min_seq": seq}
    )
    assert got["memory"]["content"] == "memory 7"
    assert np.array_equal(
        np.asarray(got["memory"]["embedding"], dtype=np.float32),
        np.asarray(random_unit(DIM, 7), dtype=np.float32),
    )
    # the next memory gets a fresh key: nothing collides with restored ones
    seq = await publish_remembers(nc, space_id, range(350, 351))
    assert (await similar_ids_over_nats(nc, space_id, 350, seq))[0] == "m350"
    assert (await similar_ids_over_nats(nc, space_id, 5, seq))[0] == "m5"


async def test_graceful_stop_writes_a_snapshot(nc: Nats, workers: Any, space_id: str) -> None:
    await register_space(nc, space_id)
    w = await workers()
    seq = await publish_remembers(nc, space_id, range(40))
    await query_over_nats(nc, space_id, "stats", {"min_seq": seq})
    assert await w.snapshots.info(space_id) is None
    await w.stop()
    info = await (await store(nc)).info(space_id)
    assert info is not None and info.headers is not None
    assert info.headers["Engram-Applied-Seq"] == [str(seq)]


@pytest.mark.parametrize("damage", ["garbage", "flipped byte", "truncated"])
async def test_damaged_snapshot_means_a_full_replay(
    nc: Nats, workers: Any, space_id: str, damage: str
) -> None:
    await register_space(nc, space_id)
    seq = await publish_remembers(nc, space_id, range(100))
    w = await workers()
    await query_over_nats(nc, space_id, "stats", {"min_seq": seq})
    await w.hosts[space_id].snapshotter.snapshot()
    await w.stop()
    snapshots = await store(nc)
    loaded = await snapshots.load(space_id)
    assert loaded is not None
    data = bytearray(loaded[1])
    if damage == "garbage":
        data = bytearray(b"not a snapshot at all")
    elif damage == "flipped byte":
        data[len(data) * 3 // 4] ^= 0x55  # inside the index section
    else:
        data = data[: len(data) - 100]
    await snapshots.save(space_id, [data], {})

    again = await workers()
    host = again.hosts[space_id]
    assert (
        "replayed the WAL" in host.snapshotter.recovery and "snapshot" in host.snapshotter.recovery
    ), host.snapshotter.recovery
    stats = await query_over_nats(nc, space_id, "stats", {"min_seq": seq})
    assert stats["memories"] == 100
    assert (await similar_ids_over_nats(nc, space_id, 42, seq))[0] == "m42"


async def test_a_snapshot_of_another_space_is_not_used(
    nc: Nats, workers: Any, new_space: Any
) -> None:
    a, b = new_space("snap-a"), new_space("snap-b")
    for space in (a, b):
        await register_space(nc, space)
    seq_a = await publish_remembers(nc, a, range(30))
    seq_b = await publish_remembers(nc, b, range(100, 110))
    w = await workers()
    await query_over_nats(nc, a, "stats", {"min_seq": seq_a})
    await w.hosts[a].snapshotter.snapshot()
    await w.stop()
    snapshots = await store(nc)
    loaded = await snapshots.load(a)
    assert loaded is not None
    await snapshots.save(b, [loaded[1]], {})  # a's state under b's name

    again = await workers()
    assert "earlier space" in again.hosts[b].snapshotter.recovery
    stats = await query_over_nats(nc, b, "stats", {"min_seq": seq_b})
    assert stats["memories"] == 10
    assert await similar_ids_over_nats(nc, b, 5, seq_b) != []
    assert all(i.startswith("m10") for i in await similar_ids_over_nats(nc, b, 5, seq_b, k=10))


async def test_a_broken_space_never_keeps_the_others_from_loading(
    nc: Nats, workers: Any, new_space: Any
) -> None:
    good, broken = new_space("good"), new_space("broken")
    for space in (good, broken):
        await register_space(nc, space)
    seq = await publish_remembers(nc, good, range(20))
    await publish_remembers(nc, broken, range(20))
    # the broken space's stream disappears behind the registry's back
    await nc.jetstream().delete_stream(f"ENGRAM_SPACE_{broken}")
    try:
        w = await workers()
        assert good in w.hosts and broken not in w.hosts
        assert "its WAL stream is gone" in w.hosting.failed[broken]  # the reason, in words
        assert (await similar_ids_over_nats(nc, good, 3, seq))[0] == "m3"
        reply = await query_over_nats(nc, broken, "stats", {})
        assert reply["error"]["status"] == 503
        assert "failed to load" in reply["error"]["detail"]
    finally:
        registry = SpaceRegistry(nc.jetstream())
        await registry.open()
        await registry.remove(broken)


async def test_a_forgotten_memory_leaves_the_snapshot_and_its_vector_too(
    nc: Nats, nats_server: NatsServer, workers: Any, space_id: str
) -> None:
    await register_space(nc, space_id)
    marker = f"marker-{uuid.uuid4().hex}"
    await publish_remembers(nc, space_id, range(10))
    seq = await publish_remembers(
        nc, space_id, range(10, 11), content=f"the secret is {marker} ({{i}})"
    )
    w = await workers(snapshot_forget_delay=0.2)
    await query_over_nats(nc, space_id, "stats", {"min_seq": seq})
    await w.hosts[space_id].snapshotter.snapshot()
    snap = await w.snapshots.load(space_id)
    assert snap is not None and marker.encode() in bytes(snap[1])
    secret_vector = np.asarray(random_unit(DIM, 10), dtype=np.float32).tobytes()
    assert secret_vector in bytes(snap[1]), "precondition: the raw vector is in the index"

    cmd = {"schema_version": 1, "command_id": f"forget-{space_id}", "memory_id": "m10"}
    ack = await nc.jetstream().publish(f"spaces.{space_id}.forget", json.dumps(cmd).encode())
    # within snapshot_forget_delay a new snapshot replaces the old, which is erased
    await wait_gone_from_disk(nats_server.store_dir, marker.encode())
    snap = await w.snapshots.load(space_id)
    assert snap is not None
    assert (snap[0].headers or {}).get("Engram-Applied-Seq") == [str(ack.seq)]
    assert secret_vector not in bytes(snap[1])  # scrubbed from the index, not only unmapped
    assert np.asarray(random_unit(DIM, 3), dtype=np.float32).tobytes() in bytes(
        snap[1]
    )  # the others are kept
    assert "m10" not in await similar_ids_over_nats(nc, space_id, 10, ack.seq, k=11)

    await w.stop()
    again = await workers()
    assert again.hosts[space_id].snapshotter.recovery.startswith(
        f"restored from snapshot at seq {ack.seq}"
    )
    assert "m10" not in await similar_ids_over_nats(nc, space_id, 10, ack.seq, k=11)
    assert not files_containing(nats_server.store_dir, marker.encode())


@pytest.mark.slow
async def test_forgotten_stays_forgotten_across_nats_and_worker_restarts(
    tmp_path: Any,
) -> None:
    server = NatsServer(tmp_path / "store")
    server.start()
    try:
        conn = await nats.connect(server.url)
        space = f"t-{uuid.uuid4().hex[:12]}"
        marker = f"marker-{uuid.uuid4().hex}"
        await register_space(conn, space)
        await publish_remembers(conn, space, range(5))
        await publish_remembers(conn, space, range(5, 6), content=f"{marker} {{i}}")
        w = Worker(worker_settings(server.url, snapshot_forget_delay=0.2))
        await w.start()
        await query_over_nats(conn, space, "stats", {"min_seq": 6})
        await w.hosts[space].snapshotter.snapshot()
        cmd = {"schema_version": 1, "command_id": "forget-1", "memory_id": "m5"}
        ack = await conn.jetstream().publish(f"spaces.{space}.forget", json.dumps(cmd).encode())
        await wait_gone_from_disk(server.store_dir, marker.encode())
        await w.stop()
        await conn.close()

        server.stop()
        server.start()
        conn = await nats.connect(server.url)
        w = Worker(worker_settings(server.url))
        await w.start()
        try:
            assert "m5" not in await similar_ids_over_nats(conn, space, 5, ack.seq, k=6)
            stats = await query_over_nats(conn, space, "stats", {"min_seq": ack.seq})
            assert stats["memories"] == 5
            assert not files_containing(server.store_dir, marker.encode())
        finally:
            await w.stop()
            await conn.close()
    finally:
        server.stop()
