"""``GET /api/v1/status``: every space's WAL position and what its worker reports,
including the spaces no worker could load and why."""

from __future__ import annotations

import asyncio
from typing import Any

from nats.aio.client import Client as Nats

from engram_contract.subjects import stream_name
from engram_nats.registry import SpaceRegistry
from tests.helpers import (
    NatsServer,
    gateway_settings,
    publish_remembers,
    register_space,
    running_gateway,
    wait_gateway_sees_space,
)


async def test_status_reports_each_space_from_its_worker_and_stream(
    nc: Nats, nats_server: NatsServer, workers: Any, new_space: Any
) -> None:
    a, b = new_space("st"), new_space("st")
    for space in (a, b):
        await register_space(nc, space)
    seq_a = await publish_remembers(nc, a, range(12))
    seq_b = await publish_remembers(nc, b, range(5))
    w = await workers()
    await w.hosts[a].wait_applied(seq_a, 5)
    await w.hosts[b].wait_applied(seq_b, 5)
    async with running_gateway(gateway_settings(nats_server.url)) as client:
        await wait_gateway_sees_space(client, b)
        r = await client.get(f"/api/v1/status?space={a}")
        assert r.status_code == 200
        body = r.json()
        assert w.settings.worker_id in body["workers"]
        (row,) = body["spaces"]
        assert row["id"] == a and row["status"] == "active"
        assert (row["stream_seq"], row["applied_seq"], row["wal_lag"]) == (seq_a, seq_a, 0)
        assert (row["memories"], row["rejected"]) == (12, 0)
        assert row["worker"] == w.settings.worker_id
        assert row["recovery"] and row["failed"] is None

        every = {s["id"]: s for s in (await client.get("/api/v1/status")).json()["spaces"]}
        assert every[b]["memories"] == 5 and every[b]["stream_seq"] == seq_b
        assert every[a] == row | {"snapshot_age_s": every[a]["snapshot_age_s"]}

        r = await client.get("/api/v1/status?space=no-such-space")
        assert r.status_code == 404
        r = await client.get("/api/v1/status?space=Bad!Id")
        assert r.status_code == 400


async def test_status_names_the_spaces_no_worker_could_load(
    nc: Nats, nats_server: NatsServer, workers: Any, new_space: Any
) -> None:
    good, broken = new_space("ok"), new_space("broken")
    for space in (good, broken):
        await register_space(nc, space)
    await publish_remembers(nc, good, range(3))
    await publish_remembers(nc, broken, range(3))
    await nc.jetstream().delete_stream(stream_name(broken))  # behind the registry's back
    try:
        w = await workers()
        async with running_gateway(gateway_settings(nats_server.url)) as client:
            await wait_gateway_sees_space(client, broken)
            rows = {s["id"]: s for s in (await client.get("/api/v1/status")).json()["spaces"]}
            bad = rows[broken]
            assert bad["failed"].startswith(f"{w.settings.worker_id}: ")
            assert "its WAL stream is gone" in bad["failed"]  # the reason, in words
            assert bad["stream_seq"] is None and bad["applied_seq"] is None
            assert bad["worker"] is None and bad["memories"] is None
            assert rows[good]["failed"] is None and rows[good]["memories"] == 3
    finally:
        registry = SpaceRegistry(nc.jetstream())
        await registry.open()
        await registry.remove(broken)


async def test_status_without_workers_shows_the_wal_only(
    nc: Nats, nats_server: NatsServer, new_space: Any
) -> None:
    space = new_space("idle")
    await register_space(nc, space)
    seq = await publish_remembers(nc, space, range(4))
    async with running_gateway(gateway_settings(nats_server.url)) as client:
        await wait_gateway_sees_space(client, space)
        body = (await client.get(f"/api/v1/status?space={space}")).json()
        (row,) = body["spaces"]
        assert row["stream_seq"] == seq
        assert row["applied_seq"] is None and row["worker"] is None and row["failed"] is None
        # no snapshot either: a worker would fold every message
        assert (row["wal_lag"], row["snapshot_seq"], row["memories"]) == (seq, 0, None)
        assert "replay the WAL from seq 1" in row["recovery"]


async def test_wal_lag_rises_while_no_worker_runs_and_returns_to_zero(
    nc: Nats, nats_server: NatsServer, workers: Any, new_space: Any
) -> None:
    space = new_space("lag")
    await register_space(nc, space)
    seq = await publish_remembers(nc, space, range(10))
    w = await workers()
    await w.hosts[space].wait_applied(seq, 5)
    async with running_gateway(gateway_settings(nats_server.url)) as client:
        await wait_gateway_sees_space(client, space)

        async def row() -> dict[str, Any]:
            body = (await client.get(f"/api/v1/status?space={space}")).json()
            (found,) = body["spaces"]
            result: dict[str, Any] = found
            return result

        assert (await row())["wal_lag"] == 0
        await w.stop()  # graceful: a snapshot at seq 10
        lags = []
        for batch in (range(10, 15), range(15, 18)):
            last = await publish_remembers(nc, space, batch)
            now = await row()
            assert now["worker"] is None and now["stream_seq"] == last
            assert (now["snapshot_seq"], now["memories"]) == (seq, 10)
            lags.append(now["wal_lag"])
        assert lags == [5, 8]  # grows with every write while nobody folds them

        await workers()
        for _ in range(200):
            now = await row()
            if now["wal_lag"] == 0:
                break
            await asyncio.sleep(0.05)
        assert (now["wal_lag"], now["applied_seq"], now["memories"]) == (0, last, 18)
