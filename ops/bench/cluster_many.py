"""Phase 2: many small spaces on 3 workers. Every space answering after all
workers restart; with idle unload, a cold space's first recall; warm recall
against one space of the same size on one worker (a second stack running beside,
requests alternating between the two); nats-server's memory with a stream per space."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import nats
from cluster_measure import ClusterConfig, ClusterResults, percentiles, spread
from cluster_stack import ClusterStack, cluster_stack
from cluster_wire import (
    create_spaces,
    ingest,
    recall_cue,
    space_ids,
    statuses,
    until_answered,
    wait_placed,
)
from measure import step
from nats.aio.client import Client

RESTART_TARGET_S = 60.0
COLD_P50_TARGET_MS = 200.0
WARM_RATIO_TARGET = 1.1
ANSWER_TIMEOUT = 600.0
SETTLE_TIMEOUT = 300.0
TIMEOUT = 30.0


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


async def timed_recall(nc: Client, space: str, cue: bytes) -> float:
    """Seconds of one recall that must be answered (an error is an error here)."""
    t0 = time.perf_counter()
    msg = await nc.request(f"spaces.{space}.q.recall", cue, timeout=TIMEOUT)
    seconds = time.perf_counter() - t0
    if b'"error"' in msg.data[:20]:
        raise RuntimeError(f"recall on {space}: {msg.data[:300]!r}")
    return seconds


async def single_space(cfg: ClusterConfig, stack: ClusterStack, nc: Client) -> str:
    """The reference: one space of the same size on one worker."""
    stack.start_worker("single")
    [space] = space_ids("one", 1)
    await create_spaces(stack.http_url, [space], cfg.dim)
    await ingest(nc, [space], cfg.many_memories, cfg.dim)
    await until_answered(nc, [space], recall_cue(cfg.dim), time.perf_counter(), TIMEOUT)
    return space


async def warm_ab(
    cfg: ClusterConfig, nc: Client, spaces: list[str], ref_nc: Client, ref: str
) -> tuple[list[float], list[float], list[float]]:
    """Recalls taking turns (their order rotating), one at a time: the cluster's
    warm spaces cycled, the first of them alone again and again, and the
    reference space; the seconds of each."""
    cue = recall_cue(cfg.dim)
    for space in spaces + spaces:  # loaded, and a warm-up
        await timed_recall(nc, space, cue)
    for _ in range(20):
        await timed_recall(ref_nc, ref, cue)
    cycled: list[float] = []
    same: list[float] = []
    theirs: list[float] = []
    for i in range(cfg.warm_samples):
        turns = [
            (nc, spaces[i % len(spaces)], cycled),
            (nc, spaces[0], same),
            (ref_nc, ref, theirs),
        ]
        for conn, space, into in turns[i % 3 :] + turns[: i % 3]:
            into.append(await timed_recall(conn, space, cue))
    return cycled, same, theirs


async def phase_many(
    cfg: ClusterConfig, stack: ClusterStack, ref_stack: ClusterStack, res: ClusterResults
) -> None:
    workers = [f"w{i + 1}" for i in range(cfg.workers)]
    spaces = space_ids("many", cfg.many_spaces)
    out: dict[str, Any] = {"spaces": cfg.many_spaces, "memories_per_space": cfg.many_memories}
    res.phases["many_spaces"] = out
    nc = await nats.connect(servers=stack.nats_urls, name="engram-cluster-bench")
    ref_nc = await nats.connect(servers=ref_stack.nats_urls, name="engram-cluster-bench-ref")
    try:
        out["nats_rss_empty_bytes"] = stack.nats_rss()[0]
        for w in workers:
            stack.start_worker(w)
        step(f"phase 2: {cfg.many_spaces} spaces created, {cfg.many_memories} memories each")
        out["create_s"] = round(await create_spaces(stack.http_url, spaces, cfg.dim), 2)
        ingest_s, _ = await ingest(nc, spaces, cfg.many_memories, cfg.dim)
        out["ingest_acked_s"] = round(ingest_s, 2)
        cue = recall_cue(cfg.dim)
        await until_answered(nc, spaces, cue, time.perf_counter(), ANSWER_TIMEOUT)
        nats_rss = stack.nats_rss()[0]
        out["nats_rss_loaded_bytes"] = nats_rss
        out["nats_store_bytes"] = du(stack.workdir / "nats")
        per_stream = (nats_rss - int(out["nats_rss_empty_bytes"])) / cfg.many_spaces
        res.add(
            f"2: nats-server RSS with {cfg.many_spaces} streams (+ a consumer each)",
            nats_rss / 1e6,
            "MB",
            note=f"{per_stream / 1e3:,.1f} kB per stream over the empty server's "
            f"{int(out['nats_rss_empty_bytes']) / 1e6:,.0f} MB; store "
            f"{int(out['nats_store_bytes']) / 1e6:,.0f} MB on disk",
        )
        out["stop_all_s"] = round(stack.stop(workers), 2)
        step("phase 2: all workers restarted; until every space answered")
        t0 = time.perf_counter()
        for w in workers:
            stack.start_worker(w)
        times = await until_answered(nc, spaces, cue, t0, ANSWER_TIMEOUT)
        out["restart"] = spread(list(times.values()))
        await asyncio.sleep(1.0)
        out["workers_loaded"] = {w: stack.rss(w) for w in workers}
        res.add(
            f"2: restart, until all {cfg.many_spaces} spaces answered",
            max(times.values()),
            "s",
            RESTART_TARGET_S,
            note=f"median space {out['restart']['median_s']:.1f} s",
        )
        out["stop_all_again_s"] = round(stack.stop(workers), 2)
        step(f"phase 2: restarted with ENGRAM_SPACE_IDLE_UNLOAD={cfg.idle_unload:g}; cold recalls")
        t0 = time.perf_counter()
        for w in workers:
            stack.start_worker(w, ENGRAM_SPACE_IDLE_UNLOAD=f"{cfg.idle_unload:g}")
        await wait_placed(nc, spaces, workers, SETTLE_TIMEOUT, cold=True)
        # every space served (cold: its first query loads it); polled every 0.5 s
        out["idle_restart_served_cold_s"] = round(time.perf_counter() - t0, 2)
        res.add(
            f"2: restart with idle unload, until all {cfg.many_spaces} spaces are served cold",
            out["idle_restart_served_cold_s"],
            "s",
            note="each then answers its first recall in the time below",
        )
        named = set(spaces)
        cold = {st.worker: len(named & set(st.cold)) for st in await statuses(nc, len(workers))}
        out["cold_by_worker"] = cold
        await asyncio.sleep(1.0)
        out["workers_cold"] = {w: stack.rss(w) for w in workers}
        sample = random.Random(15).sample(spaces, cfg.cold_samples)
        firsts = [await timed_recall(nc, s, cue) for s in sample]
        out["cold_first_recall"] = percentiles(firsts)
        p = out["cold_first_recall"]
        res.add(
            "2: first recall of a cold space, p50",
            p["p50_ms"],
            "ms",
            COLD_P50_TARGET_MS,
            note=f"p99 {p['p99_ms']:.0f} ms over {len(firsts)} spaces, "
            f"{sum(cold.values())} of {cfg.many_spaces} cold before",
        )
        step("phase 2: warm recall, cluster vs one space on one worker, alternating")
        ref = await single_space(cfg, ref_stack, ref_nc)
        warm = sample[-cfg.warm_spaces :]
        cycled, same, theirs = await warm_ab(cfg, nc, warm, ref_nc, ref)
        out["warm_recall"] = percentiles(cycled)
        out["warm_recall_one_space"] = percentiles(same)
        out["single_space_recall"] = percentiles(theirs)
        a, b = out["warm_recall"], out["single_space_recall"]
        one = out["warm_recall_one_space"]["p50_ms"]
        res.add(
            "2: warm recall p50 / single-space recall p50",
            a["p50_ms"] / b["p50_ms"],
            "×",
            WARM_RATIO_TARGET,
            note=f"{a['p50_ms']:.3f} vs {b['p50_ms']:.3f} ms (p99 {a['p99_ms']:.2f} vs "
            f"{b['p99_ms']:.2f}) over {len(warm)} warm spaces in turn; one of them asked "
            f"alone {one:.3f} ms; similarity k=10 over NATS",
        )
        step(f"phase 2: nats-server restarted with {cfg.many_spaces} streams (workers stopped)")
        stack.stop(workers)
        await nc.close()
        out["nats_restart_s"] = round(stack.restart_nats(), 2)
        res.add(
            f"2: nats-server restart with {cfg.many_spaces} streams, until JetStream ready",
            out["nats_restart_s"],
            "s",
            note="SIGTERM, started again on the same store, until /healthz answers 200",
        )
        loaded = sum(out["workers_loaded"].values())
        idle = sum(out["workers_cold"].values())
        res.add(
            "2: worker RSS per loaded small space",
            (loaded - idle) / cfg.many_spaces / 1e3,
            "kB",
            note=f"3 workers {loaded / 1e6:,.0f} MB with all loaded, {idle / 1e6:,.0f} MB cold",
        )
    finally:
        await nc.close()
        await ref_nc.close()


async def phase_many_spaces(cfg: ClusterConfig, res: ClusterResults) -> None:
    with (
        cluster_stack("engram-cbench-many-", ENGRAM_SPACE_REPLICAS="1") as stack,
        cluster_stack("engram-cbench-one-") as ref_stack,
    ):
        await phase_many(cfg, stack, ref_stack, res)
        stack.check_alive()
        ref_stack.check_alive()
