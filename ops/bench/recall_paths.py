"""Engram recall latency: over NATS and HTTP in each mode, the transport floors, and
``SpaceState.recall`` in this process on the restored state (with the graph it walks)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import grpc_paths
import numpy as np
from keepalive import KeepAliveClient
from measure import (
    NATS_SPACE,
    RECALL_HOPS,
    RECALL_MODES,
    Config,
    Dataset,
    Latency,
    Results,
    latency_cell,
)
from nats.aio.client import Client
from raw import time_searches
from usearch.index import Index
from wire import grpc_recall_body, recall_body, recall_name

from engram_contract.messages import RecallMode, RecallRequest
from engram_worker.core.activation import spread
from engram_worker.core.index import VectorIndex
from engram_worker.core.recall import RecallQuery, nearest
from engram_worker.core.state import SpaceState

# ---------------------------------------------------------------------------
# Engram recall latency

#: gRPC recall over grpcio's asyncio channel (the SDK's), similarity mode
GRPC_ASYNCIO_RECALL = "engram grpc recall, asyncio client"


async def time_nats_requests(
    nc: Client, subject: str, bodies: list[bytes], samples: int, warmup: int
) -> list[float]:
    times = []
    for i in range(warmup + samples):
        body = bodies[i % len(bodies)]
        t0 = time.perf_counter()
        msg = await nc.request(subject, body, timeout=10.0)
        elapsed = time.perf_counter() - t0
        if msg.data.startswith(b'{"error"'):
            raise RuntimeError(f"{subject}: {msg.data[:300]!r}")
        if i >= warmup:
            times.append(elapsed)
    return times


async def time_http_requests(
    http: KeepAliveClient, method: str, path: str, bodies: list[bytes], samples: int, warmup: int
) -> list[float]:
    times = []
    for i in range(warmup + samples):
        body = bodies[i % len(bodies)] if bodies else None
        t0 = time.perf_counter()
        r = await http.request(method, path, content=body)
        elapsed = time.perf_counter() - t0
        if r.status_code != 200:
            raise RuntimeError(f"{method} {path}: {r.status_code} {r.text[:300]}")
        if i >= warmup:
            times.append(elapsed)
    return times


Send = Callable[[bytes], Awaitable[None]]


async def time_modes(
    send: Send, bodies: dict[RecallMode, list[bytes]], samples: int, warmup: int
) -> dict[RecallMode, list[float]]:
    """``warmup + samples`` requests per mode, the modes alternating (their order
    rotates), so that drift on a busy machine touches every mode alike."""
    modes = list(bodies)
    times: dict[RecallMode, list[float]] = {m: [] for m in modes}
    for i in range(warmup + samples):
        for j in range(len(modes)):
            mode = modes[(i + j) % len(modes)]
            body = bodies[mode][i % len(bodies[mode])]
            t0 = time.perf_counter()
            await send(body)
            elapsed = time.perf_counter() - t0
            if i >= warmup:
                times[mode].append(elapsed)
    return times


async def measure_recall(
    cfg: Config,
    nc: Client,
    http: KeepAliveClient,
    data: Dataset,
    size: int,
    res: Results,
    grpc_target: str,
) -> None:
    """Recall in every mode, over NATS, then over HTTP, then over gRPC (requests
    serialized beforehand as the other paths' bodies are, answers not parsed, as
    theirs are not; the lean client, see grpc_paths.py). Each recall reinforces
    the memories it returns, so the worker writes a ``reinforce`` command to the
    WAL every ``reinforce_delay`` meanwhile, as it does in service."""
    bodies = {m: [recall_body(q, cfg.k, m) for q in data.queries] for m in RECALL_MODES}
    subject = f"spaces.{NATS_SPACE}.q.recall"
    path = f"/api/v1/spaces/{NATS_SPACE}/recall"

    async def via_nats(body: bytes) -> None:
        msg = await nc.request(subject, body, timeout=10.0)
        if msg.data.startswith(b'{"error"'):
            raise RuntimeError(f"{subject}: {msg.data[:300]!r}")

    async def via_http(body: bytes) -> None:
        r = await http.post(path, content=body)
        if r.status_code != 200:
            raise RuntimeError(f"POST {path}: {r.status_code} {r.text[:300]}")

    sends: tuple[tuple[str, Send], ...] = (("nats", via_nats), ("http", via_http))
    for name, send in sends:
        times = await time_modes(send, bodies, cfg.mode_samples, cfg.warmup)
        for mode in RECALL_MODES:
            res.latencies.append(Latency.of(recall_name(name, mode), size, times[mode]))
    protos = {
        m: [grpc_recall_body(NATS_SPACE, q, cfg.k, m) for q in data.queries] for m in RECALL_MODES
    }
    times = await grpc_paths.recall_times(grpc_target, protos, cfg.mode_samples, cfg.warmup)
    for mode in RECALL_MODES:
        res.latencies.append(Latency.of(recall_name("grpc", mode), size, times[mode]))
    similar = protos["similarity"]
    aio = await grpc_paths.asyncio_recall_times(grpc_target, similar, cfg.mode_samples, cfg.warmup)
    res.latencies.append(Latency.of(GRPC_ASYNCIO_RECALL, size, aio))


async def measure_floors(
    cfg: Config, nc: Client, http: KeepAliveClient, size: int, res: Results, grpc_target: str
) -> None:
    """Round trips that do no index work: what transport and framework cost alone."""
    samples = max(100, cfg.samples // 2)
    subject = f"spaces.{NATS_SPACE}.q.stats"
    times = await time_nats_requests(nc, subject, [b"{}"], samples, cfg.warmup)
    res.latencies.append(Latency.of("floor: nats q.stats", size, times))
    times = await time_http_requests(http, "GET", "/health", [], samples, cfg.warmup)
    res.latencies.append(Latency.of("floor: http GET /health", size, times))
    times = await grpc_paths.health_times(grpc_target, samples, cfg.warmup)
    res.latencies.append(Latency.of("floor: grpc Health/Check", size, times))


# ---------------------------------------------------------------------------
# in-worker recall (in this process, on the restored state)


Call = Callable[[np.ndarray], object]


def _recaller(state: SpaceState, k: int, query: RecallQuery, now: float) -> Call:
    def call(cue: np.ndarray) -> object:
        return state.recall(cue, k, query, now)

    return call


def _searcher(index: VectorIndex | Index, k: int) -> Call:
    def call(cue: np.ndarray) -> object:
        return index.search(cue, k)

    return call


IN_WORKER_CALLS = {  # besides the modes, and their latency names
    "index_search": "in-worker index search k={k}",  # in the rotation with the modes
    # just before the rotation, one call after the other as at the start of the run
    "raw_search": "raw usearch search k={k}, rerun",
    "index_search_loop": "in-worker index search k={k}, loop",
}


def recall_query(cfg: Config, data: Dataset, mode: RecallMode) -> RecallQuery:
    """What the worker makes of a recall request in ``mode`` (as the bench sends it)."""
    req = RecallRequest(
        embedding=data.queries[0].tolist(), k=cfg.k, mode=mode, max_hops=RECALL_HOPS
    )
    return RecallQuery.of(req)


def time_calls(
    calls: dict[str, Call], cues: np.ndarray, samples: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """One pass over the distinct cues (the first: what a freshly restored state
    pays, e.g. sorting each neighbour list it touches), then ``samples`` calls
    each; the calls alternate, their order rotating. Calls in a row take cues far
    apart in the list: one that another call has just searched would find the
    index's pages in the CPU cache. Returns (first pass, timed)."""
    names = list(calls)
    stride = max(1, len(cues) // len(names))
    first: dict[str, list[float]] = {n: [] for n in names}
    timed: dict[str, list[float]] = {n: [] for n in names}
    for i in range(len(cues) + samples):
        for j in range(len(names)):
            slot = (i + j) % len(names)
            name, cue = names[slot], cues[(i + slot * stride) % len(cues)]
            t0 = time.perf_counter()
            calls[name](cue)
            elapsed = time.perf_counter() - t0
            (first if i < len(cues) else timed)[name].append(elapsed)
    return first, timed


def bench_in_worker_recall(
    cfg: Config, state: SpaceState, raw: Index, data: Dataset, res: Results
) -> None:
    """``SpaceState.recall(cue, k, RecallQuery.of(request), now)`` in every mode on
    the restored N-memory state: what a recall costs the worker under its index
    lock, without transport, encoding or reinforcement. The space's own index
    search (k nearest, through ``VectorIndex``) runs in the same rotation. Just
    before, the raw usearch search is timed again on the index of the same N
    vectors built at the start, the same way as there: the ratio's base, taken
    under the conditions of the moment; and the space's index the same way, to
    tell the index from the recall."""
    size = len(state)
    for name, index in (("raw_search", raw), ("index_search_loop", state.index)):
        times = time_searches(cfg, index, data, cfg.k)
        res.latencies.append(Latency.of(IN_WORKER_CALLS[name].format(k=cfg.k), size, times))
    now = time.time()
    calls: dict[str, Call] = {
        mode: _recaller(state, cfg.k, recall_query(cfg, data, mode), now) for mode in RECALL_MODES
    }
    calls["index_search"] = _searcher(state.index, cfg.k)
    state.flush()  # (nothing is pending after a restore; a recall would do it first)
    first, timed = time_calls(calls, data.queries, cfg.samples)
    for name, times in timed.items():
        label = IN_WORKER_CALLS.get(name, "").format(k=cfg.k) or recall_name("in-worker", name)
        res.latencies.append(Latency.of(label, size, times))
    res.recall["in_worker_first_pass"] = {
        name: {str(size): latency_cell(Latency.of(name, size, times))}
        for name, times in first.items()
    }
    res.recall["graph"] = graph_stats(state)
    res.recall["spreading_reach"] = spreading_reach(cfg, state, data)


def graph_stats(state: SpaceState) -> dict[str, Any]:
    """The association graph's size: what spreading activation walks."""
    graph = state.graph
    kinds = Counter(kind for _, _, _, kind, _ in graph.edges())
    edges = len(graph)
    memories = len(state)
    return {
        "memories": memories,
        "edges": edges,
        "edges_by_kind": dict(sorted(kinds.items())),
        "mean_degree": round(2 * edges / memories, 3) if memories else 0.0,
    }


def spreading_reach(cfg: Config, state: SpaceState, data: Dataset) -> dict[str, Any]:
    """How many memories a spreading recall reaches (seeds included) for the bench's
    queries: recall scores every one of them, so this drives its cost. The same
    seeds and parameters as ``SpaceState.recall`` in spreading mode."""
    query = recall_query(cfg, data, "spreading")
    graph = state.graph
    reached: list[int] = []
    by_hop = Counter[int]()
    for cue in data.queries:
        seeds = nearest(state, cue, max(query.seed_k, query.k), None)
        found = spread(
            {key: min(max(sim, 0.0), 1.0) for key, sim in seeds.items()},
            graph.neighbours,
            query.spread,
        )
        reached.append(len(found))
        by_hop.update(r.hops for r in found.values())
    counts = np.asarray(reached, dtype=np.float64)
    return {
        "queries": len(reached),
        "seeds": max(query.seed_k, query.k),
        "max_hops": query.spread.max_hops,
        "max_fanout": query.spread.max_fanout,
        "mean": round(float(counts.mean()), 2),
        "p50": float(np.percentile(counts, 50)),
        "max": int(counts.max()),
        "mean_by_hop": {str(h): round(n / len(reached), 2) for h, n in sorted(by_hop.items())},
    }
