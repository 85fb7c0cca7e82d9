"""Engram ingest: ``remember`` commands published straight into the WAL (in stages), and
batches through the gateway, each timed until searchable."""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass

import httpx
from measure import HOSTED_TIMEOUT, HTTP_SPACE, NATS_SPACE, Config, Cpu, Dataset, Rate, Results
from nats.aio.client import Client
from stack import Stack, cpu_since
from wire import (
    Publish,
    create_space,
    probe_body,
    publish_windowed,
    wait_hosted,
    wait_searchable_http,
    wait_searchable_nats,
)

from engram_contract.messages import encode_embedding

# ---------------------------------------------------------------------------
# Engram ingest


def remember_messages(data: Dataset, lo: int, hi: int, run: str) -> list[Publish]:
    """``RememberCommand`` bodies for memories ``lo..hi`` (encoded before timing)."""
    subject = f"spaces.{NATS_SPACE}.remember"
    msgs: list[Publish] = []
    for i in range(lo, hi):
        command_id = f"{run}-{i}"
        body = {
            "schema_version": 1,
            "command_id": command_id,
            "memory": {
                "id": f"m{i}",
                "content": data.contents[i],
                "embedding_b64": encode_embedding(data.vectors[i]),
            },
        }
        msgs.append((subject, json.dumps(body).encode(), {"Nats-Msg-Id": command_id}))
    return msgs


@dataclass
class Stage:
    """One timed ingest: seconds until every PubAck, until searchable, CPU used."""

    acked_s: float
    searchable_s: float
    cpu_s: Cpu


async def ingest_nats_stage(
    cfg: Config, stack: Stack, nc: Client, data: Dataset, lo: int, hi: int, run: str
) -> Stage:
    """Publish memories ``lo..hi`` straight into the WAL and wait until searchable."""
    msgs = remember_messages(data, lo, hi, run)
    cue = probe_body(data.vectors[hi - 1])
    cpu0, t0 = stack.cpu(), time.perf_counter()
    last_seq = await publish_windowed(nc.jetstream(), msgs, cfg.window)
    acked = time.perf_counter() - t0
    async with asyncio.timeout(cfg.searchable_timeout):
        await wait_searchable_nats(nc, NATS_SPACE, last_seq, cue)
    return Stage(acked, time.perf_counter() - t0, cpu_since(cpu0, stack.cpu()))


def http_bodies(data: Dataset, batch: int) -> list[bytes]:
    """``POST …/memories`` bodies (float lists, as a Python client sends them)."""
    bodies = []
    for lo in range(0, len(data.contents), batch):
        hi = min(lo + batch, len(data.contents))
        rows = data.vectors[lo:hi].tolist()
        memories = [
            {"id": f"m{lo + j}", "content": data.contents[lo + j], "embedding": row}
            for j, row in enumerate(rows)
        ]
        bodies.append(json.dumps({"memories": memories}).encode())
    return bodies


async def post_batches(http: httpx.AsyncClient, bodies: list[bytes], in_flight: int) -> int:
    """POST every body with ``in_flight`` requests at a time; return the highest seq."""
    queue: deque[bytes] = deque(bodies)
    last = 0

    async def sender() -> None:
        nonlocal last
        while queue:
            body = queue.popleft()
            r = await http.post(f"/api/v1/spaces/{HTTP_SPACE}/memories", content=body)
            if r.status_code != 202:
                raise RuntimeError(f"remember batch: {r.status_code} {r.text[:500]}")
            last = max(last, int(r.json()["seq"]))

    await asyncio.gather(*(sender() for _ in range(in_flight)))
    return last


async def bench_http_ingest(
    cfg: Config, stack: Stack, http: httpx.AsyncClient, nc: Client, data: Dataset, res: Results
) -> None:
    """Batches through the gateway into a fresh space, until searchable."""
    await create_space(http, HTTP_SPACE, cfg.dim)
    async with asyncio.timeout(HOSTED_TIMEOUT):
        await wait_hosted(nc, HTTP_SPACE)
    t0 = time.perf_counter()
    bodies = http_bodies(data, cfg.http_batch)
    encode_s = time.perf_counter() - t0
    cue = probe_body(data.vectors[-1])
    cpu0, t0 = stack.cpu(), time.perf_counter()
    last_seq = await post_batches(http, bodies, cfg.http_in_flight)
    acked = time.perf_counter() - t0
    async with asyncio.timeout(cfg.searchable_timeout):
        await wait_searchable_http(http, HTTP_SPACE, last_seq, cue)
    seconds = time.perf_counter() - t0
    note = (
        f"{cfg.http_batch}/request, {cfg.http_in_flight} in flight, acked {acked:.2f} s "
        f"(client encode {encode_s:.2f} s untimed)"
    )
    cpu = cpu_since(cpu0, stack.cpu())
    res.rates.append(Rate.of("engram http ingest", cfg.n, seconds, note, cpu))
