"""The raw baselines: usearch batch ``add`` and single-query ``search``, JetStream
``publish_async`` and an ordered push consumer replay."""

from __future__ import annotations

import time

import numpy as np
from measure import Config, Dataset, Latency, Rate, Results, stage_label
from nats.aio.client import Client
from nats.js import JetStreamContext, api
from usearch.index import Index
from wire import Publish, counting_callback, publish_windowed, timed_replay

from engram_worker.core.index import VectorIndex

RAW_STREAM = "BENCH_RAW"
RAW_SUBJECT = "bench.raw"


# ---------------------------------------------------------------------------
# raw usearch


def bench_raw_usearch(cfg: Config, data: Dataset, res: Results) -> Index:
    """Batch add in the same stages as the Engram ingest, search at each checkpoint.
    Returns the index (of N vectors): the in-worker recall searches it again."""
    index = Index(ndim=cfg.dim, metric="cos", dtype="f32")
    keys = np.arange(1, cfg.n + 1, dtype=np.uint64)
    stages: list[Rate] = []
    lo = 0
    for size in cfg.checkpoints:
        t0, c0 = time.perf_counter(), time.process_time()
        _add(index, keys[lo:size], data.vectors[lo:size])
        cpu = {"bench": time.process_time() - c0}
        seconds = time.perf_counter() - t0
        stages.append(
            Rate.of(stage_label(lo, size), size - lo, seconds, "", cpu, "raw usearch add")
        )
        lo = size
        for count in (cfg.k, max(4 * cfg.k, 32)):
            name = f"raw usearch search k={count}"
            res.latencies.append(Latency.of(name, size, time_searches(cfg, index, data, count)))
    add_s = sum(r.seconds for r in stages)
    cpu = {"bench": sum(r.cpu_s["bench"] for r in stages)}
    res.rates.append(Rate.of("raw usearch add", cfg.n, add_s, "f32, threads=0", cpu))
    if len(stages) > 1:
        res.rates.extend(stages)
    return index


def _add(index: Index, keys: np.ndarray, vectors: np.ndarray) -> None:
    try:
        index.add(keys, vectors, threads=0)
    except RuntimeError as exc:  # usearch turns Ctrl-C into this
        if "terminated" in str(exc):
            raise KeyboardInterrupt from exc
        raise


def time_searches(
    cfg: Config, index: Index | VectorIndex, data: Dataset, count: int
) -> list[float]:
    for q in data.queries[: cfg.warmup]:
        index.search(q, count)
    samples = []
    for i in range(cfg.samples):
        q = data.queries[i % len(data.queries)]
        t0 = time.perf_counter()
        index.search(q, count)
        samples.append(time.perf_counter() - t0)
    return samples


# ---------------------------------------------------------------------------
# raw JetStream


async def bench_raw_jetstream(cfg: Config, nc: Client, res: Results) -> None:
    js = nc.jetstream()
    await js.add_stream(
        api.StreamConfig(name=RAW_STREAM, subjects=[RAW_SUBJECT], storage=api.StorageType.FILE)
    )
    try:
        payload = np.random.default_rng(cfg.seed).bytes(cfg.raw_payload_bytes)
        msgs: list[Publish] = [(RAW_SUBJECT, payload, None)] * cfg.n
        t0 = time.perf_counter()
        await publish_windowed(js, msgs, cfg.window)
        note = f"{cfg.raw_payload_bytes} B payloads, {cfg.window} in flight"
        res.rates.append(Rate.of("raw jetstream publish", cfg.n, time.perf_counter() - t0, note))
        res.rates.append(await _raw_replay(cfg, js))
    finally:
        await js.delete_stream(RAW_STREAM)


async def _raw_replay(cfg: Config, js: JetStreamContext) -> Rate:
    on_msg, done = counting_callback(cfg.n)
    seconds = await timed_replay(js, RAW_SUBJECT, None, on_msg, done, cfg.searchable_timeout)
    return Rate.of("raw jetstream replay", cfg.n, seconds, "ordered push consumer, callback")
