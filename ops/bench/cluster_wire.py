"""Talking to the cluster under test: spaces created through the gateway, memories
published straight into many spaces' WALs, every worker's status, and the waits
(until every space answered a recall, until every snapshot is written, until
placement settled)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Iterable, Sequence

import httpx
import nats.errors
import numpy as np
from measure import WORDS, unit_vectors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from wire import cue_body

from engram_contract.messages import StatusRequest, WorkerStatus, encode_embedding
from engram_contract.placement import hosts
from engram_contract.settings import GatewaySettings
from engram_contract.subjects import STATUS_SUBJECT, stream_name
from engram_nats.snapshots import SnapshotBucket

RECALL_TIMEOUT = 10.0
DEFAULT_SPACE: str = GatewaySettings.model_fields["default_space"].default  # made at start
WAVE_PAUSE = 0.1  # between waves of recalls to the spaces that have not answered yet
WAVE_CONCURRENCY = 200


def space_ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i:05d}" for i in range(n)]


async def create_spaces(http_url: str, spaces: Sequence[str], dim: int) -> float:
    """``POST /api/v1/spaces`` for each space, 16 at a time; the seconds it took."""
    queue = deque(spaces)
    t0 = time.perf_counter()
    async with httpx.AsyncClient(base_url=http_url, timeout=60.0) as http:

        async def creator() -> None:
            while queue:
                space = queue.popleft()
                r = await http.post("/api/v1/spaces", json={"id": space, "dim": dim})
                if r.status_code not in (200, 201):
                    raise RuntimeError(f"creating {space}: {r.status_code} {r.text}")

        await asyncio.gather(*(creator() for _ in range(16)))
    return time.perf_counter() - t0


def remember_batch(space: str, n: int, dim: int, seed: int) -> list[tuple[str, bytes, str]]:
    """``n`` remember commands (random unit vectors, fixed seed) for ``space``."""
    rng = np.random.default_rng(seed)
    vectors = unit_vectors(rng, n, dim)
    out = []
    for i in range(n):
        cid = f"{space}-{i}"
        body = {
            "schema_version": 1,
            "command_id": cid,
            "memory": {
                "id": f"m{i}",
                "content": f"memory {i} of {space}: {WORDS[i % len(WORDS)]}",
                "embedding_b64": encode_embedding(vectors[i]),
            },
        }
        out.append((f"spaces.{space}.remember", json.dumps(body).encode(), cid))
    return out


async def publish(
    js: JetStreamContext, msgs: Iterable[tuple[str, bytes, str]], window: int, last: dict[str, int]
) -> int:
    """``publish_async`` with at most ``window`` acks outstanding; ``last`` gets each
    stream's highest acked seq; returns how many were published."""
    pending: deque[asyncio.Future[api.PubAck]] = deque()

    def keep(ack: api.PubAck) -> None:
        last[ack.stream] = max(last.get(ack.stream, 0), ack.seq)

    count = 0
    for subject, payload, cid in msgs:
        if len(pending) >= window:
            keep(await pending.popleft())
        pending.append(await js.publish_async(subject, payload, headers={"Nats-Msg-Id": cid}))
        count += 1
    for ack in await asyncio.gather(*pending):
        keep(ack)
    return count


async def ingest(
    nc: Client,
    spaces: Sequence[str],
    per_space: int,
    dim: int,
    window: int = 2000,
    paced: bool = False,
) -> tuple[float, dict[str, int]]:
    """``per_space`` memories into each space, a few spaces' commands (20 000)
    encoded at a time (encoding included in the time); the seconds until every
    PubAck and the last seq by space. ``paced``: each batch of spaces is folded
    (its stats show its last seq) before the next is published, so the workers'
    backlog stays one batch; the seconds are then until folded."""
    js = nc.jetstream()
    by_stream: dict[str, int] = {}
    chunk = max(1, 20_000 // per_space)
    t0 = time.perf_counter()
    for lo in range(0, len(spaces), chunk):
        batch = spaces[lo : lo + chunk]
        msgs = [
            m
            for i, space in enumerate(batch, start=lo)
            for m in remember_batch(space, per_space, dim, seed=i)
        ]
        await publish(js, msgs, window, by_stream)
        if paced:
            await asyncio.gather(*(searchable(nc, s, by_stream[stream_name(s)]) for s in batch))
    seconds = time.perf_counter() - t0
    return seconds, {s: by_stream[stream_name(s)] for s in spaces}


async def searchable(nc: Client, space: str, seq: int, timeout: float = 600.0) -> None:
    """Until ``space``'s stats answer with ``applied_seq >= seq`` (folded)."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        try:
            msg = await nc.request(f"spaces.{space}.q.stats", b"{}", timeout=RECALL_TIMEOUT)
            doc = json.loads(msg.data)
            if "error" not in doc and int(doc.get("applied_seq", 0)) >= seq:
                return
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            pass
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{space} did not reach seq {seq} within {timeout:g} s")


def recall_cue(dim: int, reinforce: bool = False) -> bytes:
    vector = unit_vectors(np.random.default_rng(7), 1, dim)[0]
    return cue_body(vector, 10, "eventual", mode="similarity", reinforce=reinforce)


async def recall(nc: Client, space: str, cue: bytes, timeout: float = RECALL_TIMEOUT) -> bool:
    """One recall over NATS; whether it was answered with results."""
    try:
        msg = await nc.request(f"spaces.{space}.q.recall", cue, timeout=timeout)
    except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
        return False
    doc = json.loads(msg.data)
    return "error" not in doc and bool(doc.get("results"))


async def until_answered(
    nc: Client, spaces: Sequence[str], cue: bytes, t0: float, timeout: float
) -> dict[str, float]:
    """Recall every space in waves (those that have not answered yet, many at a
    time, then a pause) until each has answered once; seconds from ``t0`` (a
    ``perf_counter``) to each space's first answer. Raises on ``timeout``."""
    answered: dict[str, float] = {}
    pending = list(spaces)
    gate = asyncio.Semaphore(WAVE_CONCURRENCY)

    async def one(space: str) -> None:
        async with gate:
            if await recall(nc, space, cue):
                answered[space] = time.perf_counter() - t0

    deadline = time.perf_counter() + timeout
    while pending:
        if time.perf_counter() > deadline:
            raise TimeoutError(
                f"{len(pending)} of {len(spaces)} spaces never answered within {timeout:g} s "
                f"(e.g. {', '.join(pending[:5])})"
            )
        await asyncio.gather(*(one(s) for s in pending))
        pending = [s for s in pending if s not in answered]
        if pending:
            await asyncio.sleep(WAVE_PAUSE)
    return answered


async def statuses(nc: Client, expect: int, timeout: float = 5.0) -> list[WorkerStatus]:
    """Every worker's ``engram.ctl.status`` answer (until ``expect`` have answered or
    ``timeout``)."""
    inbox = nc.new_inbox()
    replies: list[WorkerStatus] = []
    done = asyncio.Event()

    async def on_reply(msg: Msg) -> None:
        if not msg.data:  # no worker at all: the server's "no responders" status
            done.set()
            return
        replies.append(WorkerStatus.model_validate_json(msg.data))
        if len(replies) >= expect:
            done.set()

    sub = await nc.subscribe(inbox, cb=on_reply)
    try:
        await nc.publish(STATUS_SUBJECT, StatusRequest().model_dump_json().encode(), reply=inbox)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), timeout)
    finally:
        await sub.unsubscribe()
    return replies


async def wait_snapshots(nc: Client, last: dict[str, int], timeout: float) -> float:
    """Until every space's snapshot in the store is at its last seq (read from
    the Object Store, not from the workers' status: a host that loaded a space
    just before the previous host's handover snapshot reports none); the
    seconds it took."""
    store = SnapshotBucket(nc.jetstream())
    await store.open()
    done: set[str] = set()
    gate = asyncio.Semaphore(50)

    async def check(space: str, seq: int) -> None:
        async with gate:
            info = await store.info(space)
        if (
            info is not None
            and int((info.headers or {}).get("Engram-Applied-Seq", ["0"])[0]) >= seq
        ):
            done.add(space)

    t0 = time.perf_counter()
    while True:
        await asyncio.gather(*(check(s, seq) for s, seq in last.items() if s not in done))
        if len(done) >= len(last):
            return time.perf_counter() - t0
        if time.perf_counter() - t0 > timeout:
            missing = len(last) - len(done)
            raise TimeoutError(f"{missing} spaces without a snapshot after {timeout:g} s")
        await asyncio.sleep(1.0)


async def wait_placed(
    nc: Client, spaces: Sequence[str], workers: list[str], timeout: float, cold: bool = False
) -> dict[str, int]:
    """Until each worker serves exactly the spaces rendezvous hashing places on it
    (loaded, or with ``cold`` in its cold list), holds no other space in memory,
    and nothing else; spaces by worker. ``spaces``: besides the gateway's default
    space, which is placed too."""
    want: dict[str, set[str]] = {w: set() for w in workers}
    for space in [*spaces, DEFAULT_SPACE]:
        want[hosts(space, workers, 1)[0]].add(space)
    deadline = time.perf_counter() + timeout
    while True:
        got = {st.worker: st for st in await statuses(nc, len(workers))}
        ok = set(got) == set(workers) and all(
            {r.id for r in got[w].spaces} | (set(got[w].cold) if cold else set()) == want[w]
            and got[w].hosted == len(want[w])
            and got[w].loaded == len(want[w]) - (len(got[w].cold) if cold else 0)
            for w in workers
        )
        if ok:
            return {w: len(want[w]) for w in workers}
        if time.perf_counter() > deadline:
            seen = {w: (st.hosted, st.loaded, len(st.cold)) for w, st in got.items()}
            raise TimeoutError(f"placement not settled after {timeout:g} s: {seen}")
        await asyncio.sleep(0.5)
