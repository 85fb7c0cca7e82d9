"""Crash tests with real processes: SIGKILL a worker, the nats-server or a gateway in
the middle of an ingest; afterwards every acknowledged memory is there exactly once.

Each test asserts on exact id sets and counts (through the list pages, the space's
stats and the WAL stream itself), not on "roughly everything". On failure the
messages name the log files of the processes involved.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import numpy as np
import pytest
from nats.aio.msg import Msg

from engram_contract.messages import encode_embedding
from engram_contract.settings import WorkerSettings
from engram_contract.subjects import stream_name
from tests.helpers import EngramProcess, NatsServer, free_port, wait_ready

pytestmark = pytest.mark.slow

DIM = 16
BATCH = 1000  # the API's largest batch

#: (ids in request order, seq) of every batch the gateway acknowledged with 202
Acked = list[tuple[list[str], int]]


# -- helpers -------------------------------------------------------------------


def memories(
    space: str, start: int, n: int, *, with_ids: bool = True, pad: int = 0
) -> list[dict[str, Any]]:
    """``n`` memories with unique contents (``pad`` more bytes each), ids
    ``<space>-<i>`` unless ``with_ids`` is false, and unit vectors."""
    rng = np.random.default_rng(zlib.crc32(f"{space}:{start}".encode()))
    vecs = rng.standard_normal((n, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    out = []
    for i, v in enumerate(vecs, start):
        m: dict[str, Any] = {
            "content": f"{space} memory {i}" + " ." * (pad // 2),
            "embedding_b64": encode_embedding(v),
        }
        if with_ids:
            m["id"] = f"{space}-{i}"
        out.append(m)
    return out


def snapshot_env() -> dict[str, str]:
    """Make the worker snapshot often, so restarts restore a snapshot and tail the WAL
    after it (the riskiest path for a lost or doubled memory), not only replay."""
    fields = WorkerSettings.model_fields.keys()
    assert {"snapshot_every", "snapshot_interval"} <= fields, "snapshot settings renamed?"
    return {"ENGRAM_SNAPSHOT_EVERY": "1500", "ENGRAM_SNAPSHOT_INTERVAL": "0.5"}


def recall_body(consistency: str) -> dict[str, Any]:
    # a probe: reinforce=false, so that it writes nothing into the WAL it checks
    return {
        "embedding": [1.0] + [0.0] * (DIM - 1),
        "k": 1,
        "consistency": consistency,
        "reinforce": False,
    }


async def until_status(
    c: httpx.AsyncClient, method: str, url: str, timeout: float, **kw: Any
) -> httpx.Response:
    """Repeat a request until it answers 200 (a worker may be starting, catching up, or
    the broker reconnecting); fail with the last answer after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        try:
            r = await c.request(method, url, **kw)
            if r.status_code == 200:
                return r
            last = f"{r.status_code} {r.text[:300]}"
        except httpx.TransportError as exc:
            last = repr(exc)
        if time.monotonic() > deadline:
            raise AssertionError(f"{method} {url}: no 200 in {timeout}s; last: {last}")
        await asyncio.sleep(0.2)


async def wait_worker(c: httpx.AsyncClient, space: str, timeout: float = 30) -> None:
    """A worker hosts ``space`` and answers queries for it."""
    await until_status(
        c, "POST", f"/api/v1/spaces/{space}/recall", timeout, json=recall_body("eventual")
    )


async def caught_up(c: httpx.AsyncClient, space: str, timeout: float = 45) -> int:
    """Wait until the worker has applied the stream's last sequence; return it."""
    r = await until_status(
        c, "POST", f"/api/v1/spaces/{space}/recall", timeout, json=recall_body("strong")
    )
    return int(r.json()["applied_seq"])


async def list_all(c: httpx.AsyncClient, space: str, limit: int) -> list[dict[str, Any]]:
    """Every memory of ``space`` through list pages of ``limit`` (stream order)."""
    out: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        r = await c.get(f"/api/v1/spaces/{space}/memories", params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        out += page["memories"]
        cursor = page["next_cursor"]
        if cursor is None:
            return out


async def wal_state(url: str, space: str) -> tuple[int, int, int]:
    """(last_seq, messages, num_deleted) of the space's WAL stream."""
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().stream_info(stream_name(space))
        st = info.state
        return int(st.last_seq), int(st.messages), int(st.num_deleted or 0)
    finally:
        await nc.close()


def check_exactly_once(
    space: str, listed: list[dict[str, Any]], acked: Acked, logs: str
) -> dict[str, dict[str, Any]]:
    """The listed memories are exactly the acknowledged ones, each once, and each
    batch's answered seq is the highest seq of its memories."""
    ids = [m["id"] for m in listed]
    dupes = {i: n for i, n in Counter(ids).items() if n > 1}
    want = [i for batch_ids, _ in acked for i in batch_ids]
    assert len(want) == len(set(want)), f"{space}: the test sent duplicate ids"
    missing = set(want) - set(ids)
    extra = set(ids) - set(want)
    assert not dupes and not missing and not extra, (
        f"space {space}: {len(ids)} listed, {len(want)} acknowledged; "
        f"{len(dupes)} duplicated (e.g. {sorted(dupes.items())[:5]}), "
        f"{len(missing)} lost (e.g. {sorted(missing)[:5]}), "
        f"{len(extra)} unexpected (e.g. {sorted(extra)[:5]}); logs: {logs}"
    )
    by_id = {m["id"]: m for m in listed}
    for batch_ids, seq in acked:
        top = max(by_id[i]["seq"] for i in batch_ids)
        assert top == seq, (
            f"space {space}: batch {batch_ids[0]}..{batch_ids[-1]} was answered with seq "
            f"{seq}, its memories' highest seq is {top}; logs: {logs}"
        )
    return by_id


async def verify_space(
    c: httpx.AsyncClient, nats_url: str, space: str, acked: Acked, logs: str, page: int = 1000
) -> dict[str, dict[str, Any]]:
    """Wait for the worker to catch up, then check list, stats and the WAL."""
    total = sum(len(ids) for ids, _ in acked)
    applied = await caught_up(c, space)
    by_id = check_exactly_once(space, await list_all(c, space, page), acked, logs)
    shown = (await c.get(f"/api/v1/spaces/{space}")).json()
    assert shown["memories"] == total, f"{space}: stats {shown}; logs: {logs}"
    last_seq, messages, deleted = await wal_state(nats_url, space)
    # one WAL message per acknowledged memory: retries were dropped by the dedupe
    # window, not stored again (and then erased by the fold as replaced versions)
    assert (last_seq, messages, deleted) == (total, total, 0), (
        f"{space}: WAL last_seq={last_seq} messages={messages} deleted={deleted}, "
        f"{total} memories acknowledged; logs: {logs}"
    )
    assert applied == shown["applied_seq"] == last_seq
    return by_id


async def post_until_202(
    c: httpx.AsyncClient, space: str, batch: list[dict[str, Any]], key: str, timeout: float
) -> tuple[dict[str, Any], list[str]]:
    """POST a batch with an Idempotency-Key, retrying with the same key until 202;
    return the 202 body and what the failed attempts saw."""
    url = f"/api/v1/spaces/{space}/memories"
    failures: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            r = await c.post(url, json={"memories": batch}, headers={"Idempotency-Key": key})
            if r.status_code == 202:
                return r.json(), failures
            assert r.status_code >= 500, f"{key}: a retry must not be refused: {r.text}"
            failures.append(f"{r.status_code} {r.json().get('title')}")
        except httpx.TransportError as exc:
            failures.append(type(exc).__name__)
        assert time.monotonic() < deadline, f"{key}: no 202 in {timeout}s: {failures}"
        await asyncio.sleep(0.3)


def spawner(
    tmp_path: Path, nats_url: str, started: list[EngramProcess]
) -> Callable[..., EngramProcess]:
    def spawn(role: str, **env: str) -> EngramProcess:
        p = EngramProcess(
            role,
            {"ENGRAM_NATS_URL": nats_url, "ENGRAM_LOG_LEVEL": "INFO", **env},
            tmp_path / f"{role}-{len(started)}.log",
        )
        p.start()
        started.append(p)
        return p

    return spawn


@pytest.fixture
def private_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server of this test only (the session's one is never killed)."""
    server = NatsServer(tmp_path / "nats" / "store")
    server.start()
    yield server
    server.stop(kill=True)


@pytest.fixture
def private_procs(
    tmp_path: Path, private_nats: NatsServer
) -> Iterator[Callable[..., EngramProcess]]:
    """Like ``procs``, but gateways and workers talk to ``private_nats``."""
    started: list[EngramProcess] = []
    yield spawner(tmp_path, private_nats.url, started)
    for p in started:
        p.kill()


async def until(event: asyncio.Event, tasks: list[asyncio.Task[None]]) -> None:
    """Wait for ``event``; raise at once if an ingest task fails first."""
    waiter = asyncio.create_task(event.wait())
    await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    for t in tasks:
        if t.done() and t.exception() is not None:
            await t


async def kill_on_next_message(server: NatsServer, subject: str) -> None:
    """SIGKILL ``server`` as soon as it delivers the next message on ``subject``."""
    assert server.proc is not None
    pid = server.proc.pid
    seen = asyncio.Event()

    async def on_msg(_: Msg) -> None:
        if not seen.is_set():
            os.kill(pid, signal.SIGKILL)
            seen.set()

    nc = await nats.connect(server.url, allow_reconnect=False)
    try:
        await nc.subscribe(subject, cb=on_msg)
        await nc.flush()
        await asyncio.wait_for(seen.wait(), 30)
    finally:
        await nc.close()


async def wait_log(proc: EngramProcess, text: str, timeout: float = 30) -> None:
    """Wait until ``proc`` has logged a line containing ``text``."""
    deadline = time.monotonic() + timeout
    while text not in proc.log.read_text():
        assert proc.proc is not None and proc.proc.poll() is None, f"{proc.log}: exited"
        assert time.monotonic() < deadline, f"{proc.log}: no {text!r} in {timeout}s"
        await asyncio.sleep(0.05)


async def start_gateway(
    spawn: Callable[..., EngramProcess], port: int, **env: str
) -> EngramProcess:
    """Spawn a gateway on ``port`` and wait until it, not some other process that took
    the port meanwhile, serves there and is ready."""
    gateway = spawn("gateway", ENGRAM_HTTP_PORT=str(port), **env)
    await wait_log(gateway, f"Uvicorn running on http://127.0.0.1:{port}")
    await asyncio.to_thread(wait_ready, f"http://127.0.0.1:{port}")
    return gateway


async def create_spaces(c: httpx.AsyncClient, spaces: list[str]) -> None:
    for space in spaces:
        r = await c.post("/api/v1/spaces", json={"id": space, "dim": DIM})
        assert r.status_code == 201, r.text


# -- (a) worker killed mid-ingest ------------------------------------------------------


async def test_worker_killed_mid_ingest_every_acked_memory_once(
    procs: Any, new_space: Any, nats_server: NatsServer, tmp_path: Path
) -> None:
    """8 batches of 1000 into each of 3 spaces, concurrently and paced. The first worker
    is killed once it has written a snapshot and a quarter of the batches are in; the
    second once it has restored that snapshot (it is then tailing the WAL after it); a
    third one finishes. Snapshots are written every 1500 commands or 0.5 s."""
    batches = 8
    total = 3 * batches
    port = free_port()
    await start_gateway(procs, port)
    base = f"http://127.0.0.1:{port}"
    spaces = [new_space("crash-w") for _ in range(3)]
    worker_env = snapshot_env()
    threshold, kill_time = total // 4, asyncio.Event()
    logs = str(tmp_path)
    acked: dict[str, Acked] = {s: [] for s in spaces}
    async with httpx.AsyncClient(base_url=base, timeout=60) as c:
        await create_spaces(c, spaces)
        first = procs("worker", **worker_env)
        for s in spaces:
            await wait_worker(c, s)

        async def ingest(space: str) -> None:
            for b in range(batches):
                batch = memories(space, b * BATCH, BATCH)
                r = await c.post(f"/api/v1/spaces/{space}/memories", json={"memories": batch})
                assert r.status_code == 202, r.text
                body = r.json()
                assert body["ids"] == [m["id"] for m in batch]
                acked[space].append((body["ids"], body["seq"]))
                if done() >= threshold:
                    kill_time.set()
                await asyncio.sleep(0.4)  # a steady ingest, not one burst

        def done() -> int:
            return sum(len(a) for a in acked.values())

        tasks = [asyncio.create_task(ingest(s)) for s in spaces]
        try:
            await until(kill_time, tasks)
            await wait_log(first, "snapshot at seq")
            killed_at = [done()]
            assert killed_at[0] < total, "ingest finished before the worker was killed"
            first.kill()
            second = procs("worker", **worker_env)
            await wait_log(second, "from its snapshot")
            killed_at.append(done())
            second.kill()
            third = procs("worker", **worker_env)
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
        print(f"workers killed after {killed_at} of {total} batches were acknowledged")

        for s in spaces:
            await verify_space(c, nats_server.url, s, acked[s], logs)
            assert sum(len(ids) for ids, _ in acked[s]) == batches * BATCH
    recovered = [ln for ln in third.log.read_text().splitlines() if "space crash-w" in ln]
    print("third worker:", *recovered[:6], sep="\n  ")


# -- (b) nats-server killed mid-ingest -------------------------------------------------


async def test_nats_server_killed_mid_ingest_retries_store_everything_once(
    private_procs: Callable[..., EngramProcess],
    private_nats: NatsServer,
    new_space: Any,
    tmp_path: Path,
) -> None:
    """6 batches of 1000 into each of 3 spaces with Idempotency-Keys; the nats-server is
    SIGKILLed a third of the way in and started again on its port and store; clients
    retry each batch with the same key until 202. The live worker reconnects and
    catches up; a fresh one afterwards agrees."""
    batches = 6
    total = 3 * batches
    port = free_port()
    # a batch that lost messages with the broker fails after 5 s (not 10) and is retried
    await start_gateway(private_procs, port, ENGRAM_PUBLISH_TIMEOUT="5")
    worker = private_procs("worker", **snapshot_env())
    base = f"http://127.0.0.1:{port}"
    spaces = [new_space("crash-n") for _ in range(3)]
    threshold, kill_time = total // 3, asyncio.Event()
    logs = str(tmp_path)
    acked: dict[str, Acked] = {s: [] for s in spaces}
    retried: dict[str, list[str]] = {}
    # when each batch was sent and acknowledged: the gateway republishes what a
    # lost broker did not acknowledge (same Nats-Msg-Id) before it would answer
    # 503, so a batch can ride through the kill without the client retrying
    spans: list[tuple[float, float]] = []
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        await create_spaces(c, spaces)
        for s in spaces:
            await wait_worker(c, s)

        async def ingest(space: str) -> None:
            for b in range(batches):
                batch = memories(space, b * BATCH, BATCH)
                key = f"{space}-batch-{b}"
                sent = time.monotonic()
                body, failures = await post_until_202(c, space, batch, key, timeout=60)
                spans.append((sent, time.monotonic()))
                assert body["ids"] == [m["id"] for m in batch], key
                acked[space].append((body["ids"], body["seq"]))
                if failures:
                    retried[key] = failures
                if done() >= threshold:
                    kill_time.set()

        def done() -> int:
            return sum(len(a) for a in acked.values())

        tasks = [asyncio.create_task(ingest(s)) for s in spaces]
        try:
            await until(kill_time, tasks)
            assert done() < total, "ingest finished before nats-server was killed"
            # kill it on the next WAL message it routes: a batch is then half stored
            await kill_on_next_message(private_nats, "spaces.*.remember")
            killed_at, killed_when = done(), time.monotonic()
            private_nats.stop(kill=True)  # reap it
            await asyncio.sleep(1)
            private_nats.start()
            wal = [(await wal_state(private_nats.url, s))[0] for s in spaces]
            print(f"WAL last seqs right after the restart: {wal}")
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
        print(f"nats-server killed at {killed_at}/{total} batches; retried: {retried}")
        in_flight = [span for span in spans if span[0] <= killed_when <= span[1]]
        assert in_flight, "no batch was in flight when nats-server was killed"

        # a key answered once answers the same again (ids and seq), retried or not
        for space in spaces:
            for b, (ids, seq) in enumerate(acked[space]):
                batch = memories(space, b * BATCH, BATCH)
                body, _ = await post_until_202(c, space, batch, f"{space}-batch-{b}", 30)
                assert body == {"ids": ids, "seq": seq}, f"{space}-batch-{b}"

        started = time.monotonic()
        for s in spaces:
            await verify_space(c, private_nats.url, s, acked[s], logs)
        print(f"the live worker caught up {time.monotonic() - started:.1f}s after the ingest")

        # a fresh worker (the last snapshot + the WAL after it) gives the same
        worker.kill()
        private_procs("worker", **snapshot_env())
        for s in spaces:
            await verify_space(c, private_nats.url, s, acked[s], logs)


# -- (c) gateway killed mid-batch ----------------------------------------------------


async def test_gateway_killed_mid_batch_retry_with_same_key_completes_it(
    procs: Any, new_space: Any, nats_server: NatsServer, tmp_path: Path
) -> None:
    """A batch of 1000 (ids derived from the Idempotency-Key); the gateway is SIGKILLed
    as soon as its first WAL message is published; a restarted gateway completes the
    batch on the client's retry with the same key."""
    port = free_port()
    procs("worker")
    gateway = await start_gateway(procs, port)
    base = f"http://127.0.0.1:{port}"
    space = new_space("crash-g")
    logs = str(tmp_path)
    key = f"{space}-the-batch"
    # 8 KiB a memory: 8 MiB of WAL messages, more than the 2 MiB nats-py buffers before
    # it writes, so the gateway is still publishing when the first message arrives
    batch = memories(space, 0, BATCH, with_ids=False, pad=8192)
    url = f"/api/v1/spaces/{space}/memories"

    nc = await nats.connect(nats_server.url)
    published = asyncio.Event()

    async def on_wal_message(_: Msg) -> None:
        if not published.is_set():
            assert gateway.proc is not None
            os.kill(gateway.proc.pid, signal.SIGKILL)  # now, not after a loop turn
            published.set()

    try:
        async with httpx.AsyncClient(base_url=base, timeout=60) as c:
            await create_spaces(c, [space])
            await wait_worker(c, space)
            sub = await nc.subscribe(f"spaces.{space}.remember", cb=on_wal_message)
            await nc.flush()
            request = asyncio.create_task(
                c.post(url, json={"memories": batch}, headers={"Idempotency-Key": key})
            )
            await asyncio.wait_for(published.wait(), 30)
            await sub.unsubscribe()
            gateway.kill()  # reap it
            with pytest.raises(httpx.TransportError):
                await request
        await asyncio.sleep(0.5)
        stored_at_kill, _, _ = await wal_state(nats_server.url, space)
        print(f"gateway killed with {stored_at_kill}/{BATCH} messages in the WAL")
        assert 0 < stored_at_kill < BATCH, "the kill did not land in the middle of the batch"

        await start_gateway(procs, port)
        async with httpx.AsyncClient(base_url=base, timeout=60) as c:
            body, failures = await post_until_202(c, space, batch, key, timeout=30)
            assert not failures, failures
            ids = body["ids"]
            assert len(ids) == len(set(ids)) == BATCH
            again, _ = await post_until_202(c, space, batch, key, timeout=30)
            assert again == body
            # pages of 50: a page of 1000 such memories exceeds NATS's 1 MiB max_payload
            by_id = await verify_space(
                c, nats_server.url, space, [(ids, body["seq"])], logs, page=50
            )
            # the derived ids are the ones the first, killed attempt stored
            contents = [by_id[i]["content"] for i in ids]
            assert contents == [m["content"] for m in batch]
            assert body["seq"] == BATCH
    finally:
        await nc.close()
