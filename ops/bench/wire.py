"""Talking to the running stack: windowed JetStream publishes, NATS requests, request
bodies, ordered-consumer replays, and the waits until a space is hosted and searchable."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx
import nats
import nats.errors
import numpy as np
from measure import RECALL_HOPS, REQUEST_TIMEOUT
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from engram_contract.messages import RecallMode, encode_embedding
from engram_proto.v1 import queries_pb2

# ---------------------------------------------------------------------------
# NATS helpers


Publish = tuple[str, bytes, dict[str, str] | None]


async def publish_windowed(js: JetStreamContext, msgs: Sequence[Publish], window: int) -> int:
    """``publish_async`` with at most ``window`` acks outstanding; returns the last seq."""
    pending: deque[asyncio.Future[api.PubAck]] = deque()
    last = 0
    for subject, payload, headers in msgs:
        if len(pending) >= window:
            last = max(last, (await pending.popleft()).seq)
        pending.append(await js.publish_async(subject, payload, headers=headers))
    for ack in await asyncio.gather(*pending):
        last = max(last, ack.seq)
    return last


async def request_json(nc: Client, subject: str, body: bytes) -> dict[str, Any]:
    msg = await nc.request(subject, body, timeout=REQUEST_TIMEOUT)
    doc: dict[str, Any] = json.loads(msg.data)
    return doc


def cue_body(vector: np.ndarray, k: int, consistency: str, **fields: Any) -> bytes:
    """A recall body with the vector as ``embedding_b64`` (base64 of float32), as
    the SDK sends a numpy cue: a third of the bytes of a JSON list, and faster
    than one in 8 of 9 NATS cells of a same-run A/B at 20k (docs/benchmarks.md)."""
    body = {"embedding_b64": encode_embedding(vector), "k": k, "consistency": consistency, **fields}
    return json.dumps(body).encode()


def probe_body(vector: np.ndarray) -> bytes:
    """The strong recall that polls for searchability: plain similarity, and no
    reinforcement (a poll is no recall; it should not write to the WAL)."""
    return cue_body(vector, 1, "strong", mode="similarity", reinforce=False)


def recall_body(vector: np.ndarray, k: int, mode: RecallMode) -> bytes:
    """A recall as a client sends it: reinforcement on (the default)."""
    return cue_body(vector, k, "eventual", mode=mode, max_hops=RECALL_HOPS, reinforce=True)


def grpc_recall_body(space: str, vector: np.ndarray, k: int, mode: RecallMode) -> bytes:
    """:func:`recall_body` as a gRPC ``engram.v1.RecallRequest`` (serialized): the
    vector as ``embedding_b64`` bytes, the same fields otherwise."""
    request = queries_pb2.RecallRequest(
        memory_space_id=space,
        embedding_b64=np.asarray(vector, dtype="<f4").tobytes(),
        k=k,
        consistency="eventual",
        mode=mode,
        max_hops=RECALL_HOPS,
        reinforce=True,
    )
    return request.SerializeToString()


def recall_name(path: str, mode: str) -> str:
    """``engram nats recall``, ``engram http recall`` (and ``engram grpc recall``)
    stay the similarity figures (what they measured before recall had modes);
    every other one names its mode."""
    if path in ("nats", "http", "grpc"):
        return f"engram {path} recall" + ("" if mode == "similarity" else f" {mode}")
    return f"{path} recall {mode}"


Callback = Callable[[Msg], Awaitable[None]]


def counting_callback(count: int) -> tuple[Callback, asyncio.Event]:
    """A consumer callback that only counts; the event is set at ``count`` messages."""
    done = asyncio.Event()
    seen = 0

    async def on_msg(_: Msg) -> None:
        nonlocal seen
        seen += 1
        if seen >= count:
            done.set()

    return on_msg, done


async def timed_replay(
    js: JetStreamContext,
    subject: str,
    stream: str | None,
    on_msg: Callback,
    done: asyncio.Event,
    timeout: float,
) -> float:
    """Read a stream from its start with an ordered push consumer and a callback;
    seconds from the subscribe until ``done`` is set."""
    t0 = time.perf_counter()
    sub = await js.subscribe(
        subject,
        stream=stream,
        ordered_consumer=True,
        cb=on_msg,
        pending_msgs_limit=-1,
        pending_bytes_limit=-1,
    )
    try:
        await asyncio.wait_for(done.wait(), timeout)
    finally:
        seconds = time.perf_counter() - t0
        await sub.unsubscribe()
    return seconds


# ---------------------------------------------------------------------------
# Engram: spaces, searchability


async def create_space(http: httpx.AsyncClient, space: str, dim: int) -> None:
    r = await http.post("/api/v1/spaces", json={"id": space, "dim": dim})
    if r.status_code not in (200, 201):
        raise RuntimeError(f"creating space {space}: {r.status_code} {r.text}")


async def wait_hosted(nc: Client, space: str) -> None:
    """Until the worker answers ``stats`` for ``space`` (it hosts it)."""
    while True:
        with contextlib.suppress(nats.errors.NoRespondersError, nats.errors.TimeoutError):
            doc = await request_json(nc, f"spaces.{space}.q.stats", b"{}")
            if "error" not in doc:
                return
        await asyncio.sleep(0.1)


async def wait_searchable_nats(nc: Client, space: str, seq: int, cue: bytes) -> int:
    """Poll a strong recall until it answers with ``applied_seq >= seq``."""
    while True:
        try:
            doc = await request_json(nc, f"spaces.{space}.q.recall", cue)
        except nats.errors.TimeoutError:
            continue
        if "error" in doc:
            if doc["error"]["status"] != 504:  # 504 = not caught up yet: ask again
                raise RuntimeError(f"recall on {space}: {doc['error']}")
            continue
        if doc["applied_seq"] >= seq and doc["results"]:
            return int(doc["applied_seq"])


async def wait_searchable_http(http: httpx.AsyncClient, space: str, seq: int, cue: bytes) -> int:
    """Poll a strong recall through the gateway until ``applied_seq >= seq``."""
    while True:
        r = await http.post(f"/api/v1/spaces/{space}/recall", content=cue)
        if r.status_code == 504:
            continue
        if r.status_code != 200:
            raise RuntimeError(f"recall on {space}: {r.status_code} {r.text}")
        doc = r.json()
        if doc["applied_seq"] >= seq and doc["results"]:
            return int(doc["applied_seq"])
