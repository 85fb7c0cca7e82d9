"""``engram replay``: rebuild a space from its WAL alone; the hosting worker then
serves the rebuilt state."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

import pytest
from nats.aio.client import Client as Nats
from nats.js.errors import NotFoundError

from engram_contract.settings import WorkerSettings
from engram_contract.subjects import SNAPSHOT_BUCKET, stream_name
from engram_worker.replay import replay
from tests.helpers import (
    NatsServer,
    publish_remembers,
    query_over_nats,
    register_space,
    similar_ids_over_nats,
)


async def test_replay_rebuilds_and_the_worker_serves_the_rebuilt_state(
    nc: Nats, nats_server: NatsServer, workers: Any, space_id: str
) -> None:
    await register_space(nc, space_id)
    await publish_remembers(nc, space_id, range(150))
    forget = {"schema_version": 1, "command_id": "f1", "memory_id": "m3"}
    await nc.jetstream().publish(f"spaces.{space_id}.forget", json.dumps(forget).encode())
    await nc.jetstream().publish(f"spaces.{space_id}.remember", b"not json")
    seq = await publish_remembers(
        nc, space_id, range(150, 200)
    )  # 200 memories, 1 forgotten, 1 rejected
    w = await workers()
    before = await similar_ids_over_nats(nc, space_id, 77, seq)

    phases: dict[str, tuple[int, int]] = {}
    report = await replay(
        nc,
        space_id,
        WorkerSettings(nats_url=nats_server.url),
        progress=lambda phase, done, total: phases.__setitem__(phase, (done, total)),
    )
    # the worker erased m3's source message when it folded the forget
    assert (report.messages, report.to_seq) == (seq - 1, seq)
    assert (report.memories, report.rejected) == (199, 1)
    assert report.snapshot_bytes > 0 and not report.reload_errors
    assert phases["fold"][0] == phases["fold"][1] == seq
    assert phases["index"] == (199, 199)
    (reloaded,) = report.reloaded
    assert reloaded.worker == w.settings.worker_id
    assert "written by replay" in reloaded.recovery
    assert (reloaded.applied_seq, reloaded.memories) == (seq, 199)
    assert "written by replay" in w.hosts[space_id].snapshotter.recovery

    assert await similar_ids_over_nats(nc, space_id, 77, seq) == before
    stats = await query_over_nats(nc, space_id, "stats", {"min_seq": seq})
    assert (stats["memories"], stats["rejected"], stats["snapshot_seq"]) == (199, 1, seq)
    # new writes after the reload are tailed as usual
    seq = await publish_remembers(nc, space_id, range(200, 201))
    assert (await similar_ids_over_nats(nc, space_id, 200, seq))[0] == "m200"


async def test_replay_from_seq_keeps_only_the_tail(
    nc: Nats, nats_server: NatsServer, workers: Any, space_id: str
) -> None:
    await register_space(nc, space_id)
    seq = await publish_remembers(nc, space_id, range(100))
    await workers()
    report = await replay(nc, space_id, WorkerSettings(nats_url=nats_server.url), from_seq=61)
    assert (report.messages, report.memories) == (40, 40)
    stats = await query_over_nats(nc, space_id, "stats", {"min_seq": seq})
    assert stats["memories"] == 40
    got = await query_over_nats(nc, space_id, "get", {"memory_id": "m10"})
    assert got["error"]["status"] == 404
    assert (await similar_ids_over_nats(nc, space_id, 70, seq))[0] == "m70"


async def test_dry_run_writes_nothing(
    nc: Nats, nats_server: NatsServer, workers: Any, space_id: str
) -> None:
    await register_space(nc, space_id)
    await publish_remembers(nc, space_id, range(20))
    w = await workers()
    report = await replay(nc, space_id, WorkerSettings(nats_url=nats_server.url), dry_run=True)
    assert (report.messages, report.memories, report.snapshot_bytes) == (20, 20, 0)
    assert report.reloaded == []
    assert await w.snapshots.info(space_id) is None


def _engram(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engram_cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "ENGRAM_NATS_URL": url},
    )


async def test_engram_replay_command(nc: Nats, nats_server: NatsServer, space_id: str) -> None:
    await register_space(nc, space_id)
    seq = await publish_remembers(nc, space_id, range(30))
    done = await asyncio.to_thread(_engram, "replay", space_id, "--json", url=nats_server.url)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["messages"], summary["memories"], summary["to_seq"]) == (30, 30, seq)
    assert summary["snapshot_bytes"] > 0

    done = await asyncio.to_thread(_engram, "replay", space_id, url=nats_server.url)
    assert done.returncode == 0, done.stderr
    assert f"replayed space {space_id}: 30 messages (seq 1..{seq})" in done.stdout
    assert "memories 30" in done.stdout

    done = await asyncio.to_thread(_engram, "replay", "no-such-space", url=nats_server.url)
    assert done.returncode == 1
    assert "'no-such-space' does not exist" in done.stderr

    # past the WAL's end: a usage error, and nothing is written
    snapshots = await nc.jetstream().object_store(SNAPSHOT_BUCKET)
    before = await snapshots.get_info(space_id)
    done = await asyncio.to_thread(
        _engram, "replay", space_id, "--from-seq", str(seq + 100), url=nats_server.url
    )
    assert done.returncode == 2, done.stderr
    assert f"--from-seq {seq + 100} is past the end" in done.stderr
    assert f"its last seq is {seq}" in done.stderr
    assert (await snapshots.get_info(space_id)).nuid == before.nuid  # the one from before


async def test_replay_erases_what_no_worker_erased_yet(
    nc: Nats, nats_server: NatsServer, space_id: str
) -> None:
    # no worker runs: nobody has folded the forget and the upsert, so their old
    # versions' messages are still in the WAL until the replay erases them
    await register_space(nc, space_id)
    js = nc.jetstream()
    await publish_remembers(nc, space_id, range(5))  # m0..m4 at seqs 1..5
    forget = {"schema_version": 1, "command_id": "f1", "memory_id": "m1"}
    await js.publish(f"spaces.{space_id}.forget", json.dumps(forget).encode())
    again = {"schema_version": 1, "command_id": "u1", "memory": {"id": "m3", "content": "new"}}
    ack = await js.publish(f"spaces.{space_id}.remember", json.dumps(again).encode())
    seq = ack.seq  # m3 again: its first version, seq 4, is replaced
    stream = stream_name(space_id)
    assert (await js.get_msg(stream, 2)).data  # m1's message, still there

    report = await replay(nc, space_id, WorkerSettings(nats_url=nats_server.url))
    assert (report.memories, report.erased, report.to_seq) == (4, 2, seq)
    for erased in (2, 4):
        with pytest.raises(NotFoundError):
            await js.get_msg(stream, erased)
    assert (await js.get_msg(stream, 1)).data  # the rest stays
    summary = await asyncio.to_thread(_engram, "replay", space_id, "--json", url=nats_server.url)
    assert json.loads(summary.stdout)["erased"] == 0  # nothing left to erase
