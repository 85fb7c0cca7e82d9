"""Engram benchmark: ingest and recall against raw usearch and raw JetStream.

Run with ``make bench`` (or ``.venv/bin/python ops/bench/bench.py [--quick] [--n N]``).

It starts its own nats-server, worker and gateway on free loopback ports with a
throw-away data directory, then measures, with the same random unit vectors:

* raw baselines: usearch batch ``add`` (vectors/s) and single-query ``search``
  (p50/p99), JetStream ``publish_async`` with gathered acks and an ordered push
  consumer replay (msg/s);
* Engram ingest through NATS (``spaces.S.remember`` published straight into the
  WAL) and through HTTP (batches of 1000), each timed from the first publish
  until a ``consistency=strong`` recall answers with the last sequence applied
  ("searchable"), and compared with raw usearch ``add``;
* Engram recall latency at 10k and at N memories, over NATS and over HTTP, in
  each recall mode (``similarity``, ``spreading`` and ``hybrid``, 2 hops, with
  reinforcement on as by default), compared with raw usearch ``search``;
* recall throughput at N: similarity recalls back to back from 1 and then 8
  concurrent clients (asyncio tasks) for a few seconds each, over NATS and HTTP:
  the QPS, its scaling from 1 to 8 clients and the latency under that load;
* the WAL fold (``SpaceState.apply_message``, no index inserts) on an ordered
  consumer, compared with the same consumer doing nothing but count;
* recovery of the N-memory space, in this process with ``SpaceHost`` after the
  worker is stopped gracefully: a full replay of the WAL and a snapshot restore,
  each timed until a recall at the stream's last seq answers, and the time to
  write a snapshot;
* restart: the worker process started again with the N-memory space's snapshot in
  place, timed from the spawn to its first answered recall over NATS, against the
  raw limit (the snapshot's chunks read + usearch ``Index.restore``); the HTTP
  ingest's space is deleted first, so that the worker hosts the one space;
* resident memory: the worker's RSS without a space and with the N-memory space
  (after ingest, after the restart), per memory, against the usearch index's own
  ``memory_usage`` per memory;
* in-worker recall: ``SpaceState.recall`` in each mode on the restored N-memory
  state, in this process (no transport), compared with raw usearch ``search``,
  with the association graph's size and how many memories spreading reaches.

It prints a table and writes the same figures to ``ops/bench/results/latest.json``.
It measures only: nothing here fails on a slow figure. Everything it starts is
stopped and its temporary directory removed on exit, error or Ctrl-C.

This file holds the entry point and the order of the phases; the phases live
beside it (imported as top-level modules, this directory being on ``sys.path``):
``measure`` (configuration, figures, data set, labels), ``stack`` (the processes),
``wire`` (requests, replays, waits), ``raw`` (the baselines), ``ingest``,
``recall_paths`` (NATS, HTTP and in-worker recall), ``throughput`` (recall QPS with
concurrent clients), ``fold_recovery`` (WAL fold, replay, snapshot restore) and
``report`` (ratios, targets, tables, JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import os
import platform
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import httpx
import nats
import nats.errors
from fold_recovery import bench_wal_and_recovery
from ingest import bench_http_ingest, ingest_nats_stage
from keepalive import KeepAliveClient
from measure import (
    HOSTED_TIMEOUT,
    NATS_SPACE,
    Config,
    Dataset,
    Rate,
    Results,
    make_dataset,
    stage_label,
    step,
)
from nats.aio.client import Client
from raw import bench_raw_jetstream, bench_raw_usearch
from recall_paths import measure_floors, measure_recall
from report import compute_ratios, compute_targets, render, summarize_recall, write_json
from restart import bench_restart, delete_http_space, record_rss
from stack import Stack, running_stack
from throughput import measure_throughput
from usearch.index import Index
from wire import create_space, wait_hosted

from engram_cli.devstack import find_nats_server

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "latest.json"


# ---------------------------------------------------------------------------
# the run


async def bench_nats_path(
    cfg: Config,
    stack: Stack,
    nc: Client,
    http: httpx.AsyncClient,
    data: Dataset,
    raw: Index,
    res: Results,
) -> None:
    """Ingest straight into the WAL in stages; measure recall at each checkpoint (HTTP
    recall and the floors with the keep-alive client, see keepalive.py)."""
    record_rss(stack, res, "worker_rss_no_space")
    await create_space(http, NATS_SPACE, cfg.dim)
    async with asyncio.timeout(HOSTED_TIMEOUT):
        await wait_hosted(nc, NATS_SPACE)
    run = f"bench{int(time.time())}"
    stages: list[Rate] = []
    acked_s, lo, cpu = 0.0, 0, Counter[str]()
    for size in cfg.checkpoints:
        stage = await ingest_nats_stage(cfg, stack, nc, data, lo, size, run)
        note = f"acked {stage.acked_s:.2f} s"
        stages.append(
            Rate.of(
                stage_label(lo, size),
                size - lo,
                stage.searchable_s,
                note,
                stage.cpu_s,
                "engram nats ingest",
            )
        )
        acked_s += stage.acked_s
        cpu.update(stage.cpu_s)
        lo = size
        stack.check_alive()
        async with KeepAliveClient(stack.http_url) as lean:
            await measure_recall(cfg, nc, lean, data, size, res, stack.grpc_target)
    record_rss(stack, res, "worker_rss_after_ingest")
    async with KeepAliveClient(stack.http_url) as lean:
        await measure_floors(cfg, nc, lean, cfg.n, res, stack.grpc_target)
    await measure_throughput(cfg, stack, nc, data, raw, res)
    total_s = sum(r.seconds for r in stages)
    note = f"{cfg.window} in flight, acked {acked_s:.2f} s"
    res.rates.append(Rate.of("engram nats ingest", cfg.n, total_s, note, dict(cpu)))
    if len(stages) > 1:
        res.rates.extend(stages)
    res.rates.append(Rate.of("engram nats publish (acked)", cfg.n, acked_s))


async def bench_engram(cfg: Config, stack: Stack, data: Dataset, raw: Index, res: Results) -> None:
    nc = await nats.connect(stack.nats_url, name="engram-bench")
    try:
        async with httpx.AsyncClient(
            base_url=stack.http_url,
            timeout=60.0,
            headers={"content-type": "application/json"},
            limits=httpx.Limits(max_connections=cfg.http_in_flight + 2),
        ) as http:
            await bench_raw_jetstream(cfg, nc, res)
            stack.check_alive()
            await bench_nats_path(cfg, stack, nc, http, data, raw, res)
            stack.check_alive()
            await bench_http_ingest(cfg, stack, http, nc, data, res)
            stack.check_alive()
            await delete_http_space(http)
            await bench_wal_and_recovery(cfg, stack, nc, data, raw, res)
            stack.check_alive()
            await bench_restart(cfg, stack, nc, data, res)
            stack.check_alive()
    finally:
        await nc.close()


def environment() -> dict[str, Any]:
    server = subprocess.run(
        [find_nats_server(), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    packages = ("usearch", "nats-py", "numpy", "httpx", "uvicorn", "httptools", "uvloop")
    versions = {pkg: importlib.metadata.version(pkg) for pkg in packages}
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "nats_server": server,
        **versions,
        "loadavg_start": _loadavg(),
    }


def _loadavg() -> list[float]:
    with contextlib.suppress(OSError, AttributeError):
        return [round(x, 2) for x in os.getloadavg()]
    return []


def run(cfg: Config) -> Results:
    started = time.perf_counter()
    res = Results(
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        config={k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        environment=environment(),
    )
    print(f"engram bench: n={cfg.n} dim={cfg.dim} samples={cfg.samples}", flush=True)
    data = make_dataset(cfg)
    step("raw usearch add + search")
    raw = bench_raw_usearch(cfg, data, res)
    step("starting nats-server, worker, gateway")
    with running_stack() as stack:
        step("raw jetstream, engram nats ingest + recall + throughput, http ingest, recovery")
        asyncio.run(bench_engram(cfg, stack, data, raw, res))
    del raw
    compute_ratios(cfg, res)
    compute_targets(cfg, res)
    summarize_recall(cfg, res)
    res.environment["loadavg_end"] = _loadavg()
    res.elapsed_s = round(time.perf_counter() - started, 1)
    return res


# ---------------------------------------------------------------------------
# entry point


def parse_args(argv: list[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--n", type=int, default=None, help="memories (default 100000)")
    parser.add_argument("--dim", type=int, default=384, help="vector dimensions (default 384)")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: N=5000 and fewer latency samples"
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=None,
        help="latency samples (default 1000; NATS and HTTP recall take half per mode)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    args = parser.parse_args(argv)
    n = args.n if args.n is not None else 5_000 if args.quick else 100_000
    if n < 1 or not 2 <= args.dim <= 4096:
        parser.error("--n must be ≥ 1 and --dim within 2..4096 (what a space accepts)")
    samples = args.samples or (200 if args.quick else 1000)
    return Config(
        n=n,
        dim=args.dim,
        quick=args.quick,
        samples=samples,
        mode_samples=max(50, samples // 2),
        warmup=min(50, max(10, samples // 10)),
        out=args.out,
    )


def _on_sigterm(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        res = run(cfg)
    except KeyboardInterrupt:
        print("\ninterrupted; everything started was stopped", file=sys.stderr)
        return 130
    print(render(res))
    write_json(res, cfg.out)
    print(f"results written to {cfg.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
