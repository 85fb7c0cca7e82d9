"""Phase 4: ingest through a 3-node JetStream cluster with R3 streams against one
nats-server. Both stacks (each with a worker and a gateway) run side by side and
take turns, the same memories into one space and then into 10 spaces: msg/s until
every PubAck, and until every memory is searchable."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import nats
import numpy as np
from cluster_measure import ClusterConfig, ClusterResults
from cluster_stack import ClusterStack, cluster_stack
from cluster_wire import create_spaces, ingest, space_ids
from measure import step, unit_vectors
from nats.aio.client import Client
from wire import probe_body, wait_hosted, wait_searchable_nats

SEARCHABLE_TIMEOUT = 600.0
SHAPES = (1, 10)  # spaces the memories go into


async def one_run(
    cfg: ClusterConfig, stack: ClusterStack, nc: Client, spaces: list[str]
) -> tuple[float, float]:
    """``cfg.ingest_n`` memories spread over ``spaces``; seconds until every PubAck
    and until every space answers a strong recall at its last seq."""
    await create_spaces(stack.http_url, spaces, cfg.dim)
    for space in spaces:  # served before the clock starts
        async with asyncio.timeout(SEARCHABLE_TIMEOUT):
            await wait_hosted(nc, space)
    per_space = cfg.ingest_n // len(spaces)
    cue = probe_body(unit_vectors(np.random.default_rng(3), 1, cfg.dim)[0])
    t0 = time.perf_counter()
    acked, last = await ingest(nc, spaces, per_space, cfg.dim)
    for space in spaces:
        async with asyncio.timeout(SEARCHABLE_TIMEOUT):
            await wait_searchable_nats(nc, space, last[space], cue)
    return acked, time.perf_counter() - t0


async def phase_cluster_ingest(cfg: ClusterConfig, res: ClusterResults) -> None:
    out: dict[str, Any] = {"memories": cfg.ingest_n, "rounds": cfg.ingest_rounds, "runs": []}
    res.phases["cluster_ingest"] = out
    with (
        cluster_stack("engram-cbench-one-node-") as single,
        cluster_stack("engram-cbench-r3-", nats_nodes=3) as r3,
    ):
        stacks = {"single": single, "r3": r3}
        conns = {name: await nats.connect(servers=s.nats_urls) for name, s in stacks.items()}
        try:
            for s in stacks.values():
                s.start_worker("w1")
            sums: dict[tuple[str, int], list[tuple[float, float]]] = {}
            for r in range(cfg.ingest_rounds):
                for n in SHAPES:
                    order = list(stacks) if r % 2 == 0 else list(stacks)[::-1]
                    for name in order:
                        step(f"phase 4: {cfg.ingest_n:,} memories into {n} space(s), {name}")
                        spaces = space_ids(f"in{n}-r{r}", n)
                        acked, searchable = await one_run(cfg, stacks[name], conns[name], spaces)
                        stacks[name].check_alive()
                        run = {"nats": name, "spaces": n, "acked_s": acked}
                        out["runs"].append(run | {"searchable_s": searchable})
                        sums.setdefault((name, n), []).append((acked, searchable))
        finally:
            for conn in conns.values():
                await conn.close()
    for n in SHAPES:
        rates = {}
        for name in ("single", "r3"):
            runs = sums[(name, n)]
            acked = sorted(cfg.ingest_n / a for a, _ in runs)[len(runs) // 2]
            searchable = sorted(cfg.ingest_n / s for _, s in runs)[len(runs) // 2]
            rates[name] = (acked, searchable)
            out[f"{name}_{n}_spaces"] = {"acked_per_s": acked, "searchable_per_s": searchable}
        (a1, s1), (a3, s3) = rates["single"], rates["r3"]
        res.add(
            f"4: ingest into {n} space{'s' if n > 1 else ''}, 3-node R3 / one node (acked)",
            a3 / a1,
            "×",
            note=f"{a3:,.0f} vs {a1:,.0f} msg/s acked; searchable {s3:,.0f} vs {s1:,.0f} "
            f"msg/s ({s3 / s1:.2f}×); {cfg.ingest_n:,} memories",
        )
