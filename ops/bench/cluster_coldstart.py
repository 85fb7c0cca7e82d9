"""Phase 1 (cold start of 3 workers over many full spaces, with snapshots in place;
their RSS against one worker hosting all) and phase 3 (failover after ``kill -9``),
on the same stack and data."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import nats
from cluster_measure import ClusterConfig, ClusterResults, spread
from cluster_stack import ClusterStack, cluster_stack
from cluster_wire import (
    create_spaces,
    ingest,
    recall_cue,
    space_ids,
    statuses,
    until_answered,
    wait_placed,
    wait_snapshots,
)
from measure import step
from nats.aio.client import Client

from engram_contract.placement import hosts
from engram_contract.settings import CommonSettings

COLD_START_TARGET_S = 30.0
RSS_SHARE_TARGET = 0.45
ANSWER_TIMEOUT = 600.0
SNAPSHOT_TIMEOUT = 1800.0  # after the last PubAck: the fold of every memory, then the writes
SETTLE_TIMEOUT = 300.0
SOLO = "solo"


async def start_all(
    stack: ClusterStack, nc: Client, names: list[str], spaces: list[str], cue: bytes
) -> dict[str, float]:
    """Start ``names`` at once; seconds from the spawn to each space's first answer."""
    t0 = time.perf_counter()
    for name in names:
        stack.start_worker(name)
    return await until_answered(nc, spaces, cue, t0, ANSWER_TIMEOUT)


async def worker_rows(
    stack: ClusterStack, nc: Client, names: list[str]
) -> dict[str, dict[str, int]]:
    """RSS, hosted and loaded spaces and index bytes of each worker."""
    await asyncio.sleep(1.0)  # let the answers' bookkeeping settle before the RSS
    got = {st.worker: st for st in await statuses(nc, len(names))}
    return {
        n: {
            "rss_bytes": stack.rss(n),
            "hosted": got[n].hosted if n in got else -1,
            "loaded": got[n].loaded if n in got else -1,
            "index_bytes": got[n].index_bytes if n in got else -1,
        }
        for n in names
    }


async def phase_cold_start(
    cfg: ClusterConfig, stack: ClusterStack, nc: Client, res: ClusterResults
) -> tuple[list[str], list[str]]:
    workers = [f"w{i + 1}" for i in range(cfg.workers)]
    spaces = space_ids("big", cfg.big_spaces)
    out: dict[str, Any] = {"spaces": cfg.big_spaces, "memories_per_space": cfg.big_memories}
    res.phases["cold_start"] = out
    for w in workers:
        stack.start_worker(w, ENGRAM_SNAPSHOT_INTERVAL=f"{cfg.snapshot_interval:g}")
    step(f"phase 1: {cfg.big_spaces} spaces created, {cfg.big_memories} memories each")
    out["create_s"] = round(await create_spaces(stack.http_url, spaces, cfg.dim), 2)
    ingest_s, last = await ingest(nc, spaces, cfg.big_memories, cfg.dim, paced=True)
    out["ingest_folded_s"] = round(ingest_s, 2)
    total = cfg.big_spaces * cfg.big_memories
    step(f"phase 1: ingest folded in {ingest_s:.1f} s; waiting for every snapshot")
    snap_s = await wait_snapshots(nc, last, SNAPSHOT_TIMEOUT)
    out["snapshots_after_ingest_s"] = round(snap_s, 2)
    res.add(
        "1: ingest until folded, 3 workers",
        total / ingest_s,
        "msg/s",
        note=f"{total:,} memories in {ingest_s:.1f} s, 20 spaces at a time, each batch "
        f"folded before the next; every snapshot written {snap_s:.1f} s later",
    )
    out["nats_rss_bytes"] = stack.nats_rss()
    out["stop_all_s"] = round(stack.stop(workers), 2)
    cue = recall_cue(cfg.dim)
    step("phase 1: all workers started at once; until every space answered a recall")
    times = await start_all(stack, nc, workers, spaces, cue)
    out["cold_start"] = spread(list(times.values()))
    rows = await worker_rows(stack, nc, workers)
    out["workers"] = rows
    res.add(
        f"1: cold start, {cfg.workers} workers, until all {cfg.big_spaces} spaces answered",
        max(times.values()),
        "s",
        COLD_START_TARGET_S,
        note=f"median space {out['cold_start']['median_s']:.1f} s",
    )
    out["stop_all_again_s"] = round(stack.stop(workers), 2)
    step("phase 1: one worker alone on the same data")
    solo = await start_all(stack, nc, [SOLO], spaces, cue)
    out["solo_cold_start"] = spread(list(solo.values()))
    solo_row = (await worker_rows(stack, nc, [SOLO]))[SOLO]
    out["solo"] = solo_row
    res.add(
        f"1: cold start, 1 worker, until all {cfg.big_spaces} spaces answered",
        max(solo.values()),
        "s",
        note="for comparison",
    )
    share = max(r["rss_bytes"] for r in rows.values()) / solo_row["rss_bytes"]
    per_worker = ", ".join(
        f"{n} {r['rss_bytes'] / 1e6:,.0f} MB/{r['hosted']} spaces" for n, r in rows.items()
    )
    res.add(
        "1: largest worker RSS / one worker hosting all",
        share,
        "×",
        RSS_SHARE_TARGET,
        note=f"{per_worker}; alone {solo_row['rss_bytes'] / 1e6:,.0f} MB",
    )
    res.add(
        "1: spaces per worker (fewest / most)",
        min(r["hosted"] for r in rows.values()),
        "",
        note=f"most {max(r['hosted'] for r in rows.values())} of {cfg.big_spaces}",
    )
    stack.stop([SOLO])
    step("phase 1: the three workers again, for the failover phase")
    await start_all(stack, nc, workers, spaces, cue)
    return workers, spaces


async def phase_failover(
    cfg: ClusterConfig,
    stack: ClusterStack,
    nc: Client,
    workers: list[str],
    spaces: list[str],
    res: ClusterResults,
) -> None:
    ttl: float = CommonSettings.model_fields["worker_ttl"].default  # the stack sets none
    out: dict[str, Any] = {"worker_ttl_s": ttl, "replicas": 1, "kills": []}
    res.phases["failover"] = out
    cue = recall_cue(cfg.dim)
    all_times: list[float] = []
    per_kill_median: list[float] = []
    for k in range(cfg.kills):
        await wait_placed(nc, spaces, workers, SETTLE_TIMEOUT)
        victim = workers[k % len(workers)]
        theirs = [s for s in spaces if hosts(s, workers, 1)[0] == victim]
        step(f"phase 3: kill -9 {victim} ({len(theirs)} spaces), kill {k + 1} of {cfg.kills}")
        killed = stack.kill(victim)
        times = await until_answered(nc, theirs, cue, killed, ANSWER_TIMEOUT)
        row = spread(list(times.values()))
        t0 = stack.start_worker(victim)
        await wait_placed(nc, spaces, workers, SETTLE_TIMEOUT)
        row["rejoin_settled_s"] = round(time.perf_counter() - t0, 2)
        out["kills"].append({"victim": victim} | row)
        all_times += times.values()
        per_kill_median.append(row["median_s"])
    over = spread(all_times)
    out["over_all"] = over
    res.add(
        f"3: failover after kill -9, median over spaces and {cfg.kills} kills",
        over["median_s"],
        "s",
        note=f"max {over['max_s']:.1f} s; {over['spaces']} spaces moved in all; "
        f"per kill medians {', '.join(f'{m:.1f}' for m in per_kill_median)} s; "
        f"ENGRAM_WORKER_TTL {ttl:g} s (default)",
    )
    res.add("3: failover after kill -9, max", over["max_s"], "s", note="slowest space of all kills")


async def phases_cold_start_failover(
    cfg: ClusterConfig, res: ClusterResults, failover: bool = True
) -> None:
    with cluster_stack("engram-cbench-big-", ENGRAM_SPACE_REPLICAS="1") as stack:
        nc = await nats.connect(servers=stack.nats_urls, name="engram-cluster-bench")
        try:
            workers, spaces = await phase_cold_start(cfg, stack, nc, res)
            stack.check_alive()
            if failover:
                await phase_failover(cfg, stack, nc, workers, spaces, res)
                stack.check_alive()
        finally:
            await nc.close()
