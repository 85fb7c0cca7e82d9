"""Restart and resident memory: the worker process stopped and started again with
the N-memory space's snapshot in place, timed to the first answered recall over
NATS, next to the raw limit (the snapshot object's chunks read by an ordered
consumer, plus usearch ``Index.restore`` of its index bytes); and the worker's RSS
without a space, with the space after ingest and after the restart, per memory,
next to the usearch index's own bytes per memory."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import time

import httpx
import nats.errors
from fold_recovery import read_chunks
from measure import HTTP_SPACE, NATS_SPACE, REQUEST_TIMEOUT, Config, Dataset, Results, step
from nats.aio.client import Client
from stack import Stack, rss_bytes
from usearch.index import Index
from wire import probe_body

from engram_nats.snapshots import BUCKET as SNAPSHOT_BUCKET
from engram_worker.core.snapshot import decode
from engram_worker.snapshots import SnapshotStore

RESTART_TIMEOUT = 600.0
DELETE_TIMEOUT = 120.0


def record_rss(stack: Stack, res: Results, name: str) -> int:
    """The worker's RSS now, kept in ``res.memory[name]`` (bytes)."""
    rss = rss_bytes(stack.pid("worker"))
    res.memory[name] = rss
    return rss


async def delete_http_space(http: httpx.AsyncClient) -> None:
    """Delete the HTTP ingest's space, so that the worker restarts with the N-memory
    NATS space alone (and its RSS is that space's)."""
    r = await http.delete(f"/api/v1/spaces/{HTTP_SPACE}")
    if r.status_code >= 300:
        raise RuntimeError(f"deleting {HTTP_SPACE}: {r.status_code} {r.text}")
    async with asyncio.timeout(DELETE_TIMEOUT):
        while True:
            if (await http.get(f"/api/v1/spaces/{HTTP_SPACE}")).status_code == 404:
                return
            await asyncio.sleep(0.2)


async def first_recall(nc: Client, seq: int, cue: bytes) -> None:
    """Until the (re)started worker answers a strong recall at ``seq`` with results."""
    while True:
        try:
            msg = await nc.request(f"spaces.{NATS_SPACE}.q.recall", cue, timeout=REQUEST_TIMEOUT)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            await asyncio.sleep(0.005)
            continue
        doc = json.loads(msg.data)
        if "error" in doc:
            if doc["error"]["status"] not in (404, 503, 504):  # not hosted / caught up yet
                raise RuntimeError(f"recall on {NATS_SPACE}: {doc['error']}")
            await asyncio.sleep(0.005)
            continue
        if doc["applied_seq"] >= seq and doc["results"]:
            return


async def raw_restart_limit(nc: Client) -> dict[str, float]:
    """The raw limit: the snapshot's chunks read into a buffer, and usearch
    ``Index.restore`` of its index bytes (the checksummed parts skipped)."""
    js = nc.jetstream()
    store = SnapshotStore(js)
    await store.open()
    info = await store.info(NATS_SPACE)
    if info is None:
        raise RuntimeError(f"{NATS_SPACE}: no snapshot to restart from")
    read_s = await read_chunks(js, f"$O.{SNAPSHOT_BUCKET}.C.{info.nuid}")
    loaded = await store.load(NATS_SPACE)
    assert loaded is not None
    index_bytes = bytes(decode(loaded[1]).index)
    del loaded
    t0 = time.perf_counter()
    index = Index.restore(index_bytes)
    restore_s = time.perf_counter() - t0
    if index is None:
        raise RuntimeError("usearch could not restore the snapshot's index")
    index_bytes_per = index.memory_usage / max(len(index), 1)
    index_data_per = index.serialized_length / max(len(index), 1)
    del index, index_bytes
    gc.collect()
    return {
        "raw_chunk_read_s": round(read_s, 4),
        "raw_index_restore_s": round(restore_s, 4),
        "raw_limit_s": round(read_s + restore_s, 4),
        "index_bytes_per_memory": round(index_bytes_per, 1),
        "index_serialized_bytes_per_memory": round(index_data_per, 1),
    }


async def bench_restart(cfg: Config, stack: Stack, nc: Client, data: Dataset, res: Results) -> None:
    """Start the stopped worker again and time it to its first answered recall."""
    last = int(res.recovery["stream_last_seq"])
    cue = probe_body(data.vectors[-1])
    step("restart: worker process started again with the snapshot in place")
    t0 = stack.restart("worker")
    async with asyncio.timeout(RESTART_TIMEOUT):
        await first_recall(nc, last, cue)
    seconds = time.perf_counter() - t0
    with contextlib.suppress(KeyError):
        await asyncio.sleep(1.0)  # let the answer's bookkeeping settle before the RSS
        record_rss(stack, res, "worker_rss_after_restart")
    out = res.restart
    out["process_to_first_recall_s"] = round(seconds, 4)
    out["host_start_to_first_recall_s"] = res.recovery["snapshot_restore"]["seconds"]
    step("restart: the raw limit (chunk read + usearch Index.restore)")
    out |= await raw_restart_limit(nc)
    res.memory["index_bytes_per_memory"] = out["index_bytes_per_memory"]
    res.memory["index_serialized_bytes_per_memory"] = out["index_serialized_bytes_per_memory"]
    res.memory["memories"] = cfg.n


def render_restart(res: Results) -> list[str]:
    rs, mem = res.restart, res.memory
    if not rs:
        return []
    lines = [
        "",
        "RESTART AND MEMORY",
        f"  {'worker spawn → first recall (NATS)':<40} {rs['process_to_first_recall_s']:>9.2f} s",
        f"  {'host start → first recall (in-process)':<40} "
        f"{rs['host_start_to_first_recall_s']:>9.2f} s",
        f"  {'raw: chunk read + Index.restore':<40} {rs['raw_limit_s']:>9.2f} s  "
        f"({rs['raw_chunk_read_s']:.2f} + {rs['raw_index_restore_s']:.2f})",
    ]
    for name in ("no_space", "after_ingest", "after_restart"):
        rss = mem.get(f"worker_rss_{name}")
        if rss:
            per = mem.get(f"rss_bytes_per_memory_{name}")
            note = "" if per is None else f"  {per:,.0f} B per memory"
            label = "worker RSS " + name.replace("_", " ")
            lines.append(f"  {label:<40} {rss / 1e6:>9,.0f} MB{note}")
    if mem.get("index_bytes_per_memory"):
        lines.append(
            f"  {'usearch index memory_usage per memory':<40} "
            f"{mem['index_bytes_per_memory']:>9,.0f} B"
        )
    if mem.get("index_serialized_bytes_per_memory"):
        lines.append(
            f"  {'usearch index serialized per memory':<40} "
            f"{mem['index_serialized_bytes_per_memory']:>9,.0f} B"
        )
    return lines
