"""Recall throughput under concurrency: 1 client, then 8 concurrent clients, each
sending similarity recalls (k=10) back to back for a fixed time, over NATS, over
HTTP to the stack's gateway (one process, the default) and over HTTP to a second
gateway running ``GATEWAY_PROCESSES`` processes (``ENGRAM_HTTP_WORKERS``), on the
space and at the size the recall phase measured last (N). Records the QPS (a rate,
with the CPU each process spent) and the latency under that load.

The same run measures the ceiling for it: raw usearch ``search`` (k=10) on the
bench's own index of the same N vectors, back to back from 1 and then 8 threads
(usearch releases the GIL while it searches), while the stack is idle. Raw QPS
with 8 threads over 1 thread is what the machine's cores allow the search
alone; Engram's 8-client QPS over it says how much of that ceiling the service
reaches."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from keepalive import KeepAliveClient
from measure import NATS_SPACE, Config, Dataset, Latency, Rate, Results, step
from nats.aio.client import Client
from stack import Stack, cpu_since
from usearch.index import Index
from wire import recall_body

CLIENTS = (1, 8)
WARMUP_S = 0.5  # each client count, before its timed window
DURATION_S = 3.0  # the timed window (3 paths × 2 client counts × 3.5 s ≈ 21 s)
QUICK_DURATION_S = 1.5
GATEWAY_PROCESSES = 2  # the second gateway's ENGRAM_HTTP_WORKERS (the bench has 2 cores)
#: HTTP to a gateway of GATEWAY_PROCESSES processes
HTTP_MULTI = f"http-x{GATEWAY_PROCESSES}"
PATHS = ("nats", "http", HTTP_MULTI)

Send = Callable[[bytes], Awaitable[None]]


def throughput_name(path: str, clients: int) -> str:
    """``engram nats recall, 8 clients``: the rate (QPS) and the latency under load."""
    return f"engram {path} recall, {clients} client{'s' if clients > 1 else ''}"


def qps_ratio_name(path: str) -> str:
    return f"{path} recall QPS {CLIENTS[-1]} clients / {CLIENTS[0]} client"


def raw_throughput_name(threads: int) -> str:
    return f"raw usearch search, {threads} thread{'s' if threads > 1 else ''}"


def ceiling_ratios(res: Results) -> dict[str, float]:
    """Raw search QPS from 8 threads over 1 (what the cores allow the search alone),
    and each path's 8-client QPS over the raw 8-thread QPS (how much of it is reached)."""
    one, many = CLIENTS[0], CLIENTS[-1]
    raw_many = res.rate(raw_throughput_name(many)).per_s
    ratios = {
        f"raw search QPS {many} threads / {one} thread": raw_many
        / res.rate(raw_throughput_name(one)).per_s
    }
    for path in PATHS:
        ratios[f"{path} recall QPS {many} clients / raw search QPS {many} threads"] = (
            qps(res, path, many) / raw_many
        )
    return ratios


def raw_search_qps(index: Index, queries: np.ndarray, k: int, threads: int, seconds: float) -> Rate:
    """Searches back to back from ``threads`` threads for ``seconds``: the rate."""
    counts = [0] * threads
    deadline = time.perf_counter() + seconds

    def loop(t: int) -> None:
        i, n = t * max(1, len(queries) // threads), 0
        while time.perf_counter() < deadline:
            index.search(queries[i % len(queries)], k)
            i, n = i + 1, n + 1
        counts[t] = n

    t0, c0 = time.perf_counter(), time.process_time()
    pool = [threading.Thread(target=loop, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    cpu = {"bench": time.process_time() - c0}
    return Rate.of(raw_throughput_name(threads), sum(counts), time.perf_counter() - t0, "", cpu)


async def _client(send: Send, bodies: list[bytes], start: int, deadline: float) -> list[float]:
    """One client: a recall, its answer, the next, until ``deadline``."""
    times = []
    i = start
    while time.perf_counter() < deadline:
        body = bodies[i % len(bodies)]
        i += 1
        t0 = time.perf_counter()
        await send(body)
        times.append(time.perf_counter() - t0)
    return times


async def run_clients(
    send: Send, bodies: list[bytes], clients: int, seconds: float
) -> tuple[list[float], float]:
    """``clients`` tasks sending back to back for ``seconds``; each starts at its own
    place in the cues (spread over them), so they do not ask the same thing at once.
    Returns every request's latency and the wall time until the last one answered."""
    stride = max(1, len(bodies) // clients)
    t0 = time.perf_counter()
    deadline = t0 + seconds
    per_client = await asyncio.gather(
        *(_client(send, bodies, c * stride, deadline) for c in range(clients))
    )
    elapsed = time.perf_counter() - t0
    return [t for times in per_client for t in times], elapsed


async def measure_throughput(
    cfg: Config, stack: Stack, nc: Client, data: Dataset, raw: Index, res: Results
) -> None:
    """QPS and latency under load with 1 and 8 concurrent clients, over NATS and HTTP.

    Similarity mode, k=10, the data set's query vectors cycled, and reinforcement on
    as in the recall phase (``recall_body``): every recall also reinforces what it
    returns, so the worker writes ``reinforce`` commands to the WAL meanwhile.

    NATS: the bench's one connection, shared by the tasks; their requests are in
    flight together (nats-py multiplexes them over one inbox), as an async service
    with one connection would send them. HTTP: one :class:`KeepAliveClient` for all
    the tasks (the client of the floor and of HTTP recall), which keeps as many
    keep-alive connections as requests in flight, so each task in effect keeps its
    own. ``http-x2``: the same against a second gateway of 2 processes, started for
    this phase and stopped after it; which process serves a connection is the
    kernel's choice (uvicorn's processes accept on one socket). The clients run in
    this process, on the same 2 cores as the worker, gateways and nats-server: their
    CPU is in the CPU table too."""
    size = len(data.vectors)
    seconds = QUICK_DURATION_S if cfg.quick else DURATION_S
    bodies = [recall_body(q, cfg.k, "similarity") for q in data.queries]
    subject = f"spaces.{NATS_SPACE}.q.recall"
    path = f"/api/v1/spaces/{NATS_SPACE}/recall"
    out: dict[str, Any] = {
        "mode": "similarity",
        "k": cfg.k,
        "reinforce": True,
        "clients": list(CLIENTS),
        "warmup_s": WARMUP_S,
        "seconds": seconds,
        "size": size,
        "http": "one KeepAliveClient (a keep-alive connection per client), 1 gateway process",
        HTTP_MULTI: f"the same, a gateway of {GATEWAY_PROCESSES} processes",
        "nats": "one connection shared by the clients",
        "raw": "usearch search on the bench's own index of the same vectors, threads",
    }
    out["raw"] = {}
    for threads in CLIENTS:
        step(f"recall throughput: raw usearch search, {threads} thread(s), {seconds:g} s")
        raw_search_qps(raw, data.queries, cfg.k, threads, WARMUP_S)
        rate = await asyncio.to_thread(raw_search_qps, raw, data.queries, cfg.k, threads, seconds)
        res.rates.append(rate)
        out["raw"][str(threads)] = {"qps": rate.per_s, "searches": rate.count, "cpu_s": rate.cpu_s}

    async def via_nats(body: bytes) -> None:
        msg = await nc.request(subject, body, timeout=10.0)
        if msg.data.startswith(b'{"error"'):
            raise RuntimeError(f"{subject}: {msg.data[:300]!r}")

    multi_url = stack.start_gateway(HTTP_MULTI, GATEWAY_PROCESSES)
    try:
        async with (
            KeepAliveClient(stack.http_url) as http,
            KeepAliveClient(multi_url) as multi,
        ):
            sends: dict[str, Send] = {
                "nats": via_nats,
                "http": via_http(http, path),
                HTTP_MULTI: via_http(multi, path),
            }
            for name in PATHS:
                out[name] = {}
                for clients in CLIENTS:
                    step(f"recall throughput: {name}, {clients} client(s), {seconds:g} s")
                    await run_clients(sends[name], bodies, clients, WARMUP_S)
                    cpu0 = stack.cpu()
                    times, elapsed = await run_clients(sends[name], bodies, clients, seconds)
                    cpu = cpu_since(cpu0, stack.cpu())
                    label = throughput_name(name, clients)
                    note = "similarity k=10, reinforce on"
                    rate = Rate.of(label, len(times), elapsed, note, cpu)
                    latency = Latency.of(label, size, times)
                    res.rates.append(rate)
                    res.latencies.append(latency)
                    out[name][str(clients)] = {
                        "qps": rate.per_s,
                        "requests": rate.count,
                        "seconds": rate.seconds,
                        "p50_ms": latency.p50_ms,
                        "p99_ms": latency.p99_ms,
                        "mean_ms": latency.mean_ms,
                        "cpu_s": rate.cpu_s,
                    }
                    stack.check_alive()
    finally:
        stack.stop_gracefully(HTTP_MULTI, timeout=30.0)
    res.recall["throughput"] = out


def via_http(http: KeepAliveClient, path: str) -> Send:
    async def send(body: bytes) -> None:
        r = await http.post(path, body)
        if r.status_code != 200:
            raise RuntimeError(f"POST {path}: {r.status_code} {r.text[:300]}")

    return send


def qps(res: Results, path: str, clients: int) -> float:
    return res.rate(throughput_name(path, clients)).per_s
