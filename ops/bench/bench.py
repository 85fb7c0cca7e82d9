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
* Engram recall latency at 10k and at N memories, over NATS and over HTTP,
  compared with raw usearch ``search``.

It prints a table and writes the same figures to ``ops/bench/results/latest.json``.
It measures only: nothing here fails on a slow figure. Everything it starts is
stopped and its temporary directory removed on exit, error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import httpx
import nats
import nats.errors
import numpy as np
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from usearch.index import Index

from engram_common.devstack import find_nats_server, start_nats_server
from engram_common.messages import encode_embedding

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "latest.json"

NATS_SPACE = "bench-nats"
HTTP_SPACE = "bench-http"
RAW_STREAM = "BENCH_RAW"
RAW_SUBJECT = "bench.raw"
FIRST_CHECKPOINT = 10_000
REQUEST_TIMEOUT = 15.0  # one NATS query (the worker's own apply wait is 5 s)
HOSTED_TIMEOUT = 30.0  # until the worker hosts a new space

INGEST_TARGET = 0.70  # Engram ingest ≥ 70 % of raw usearch add
RECALL_TARGET_MS = 5.0  # HTTP recall p50 ≤ 5 ms at 100k
RECALL_TARGET_SIZE = 100_000

WORDS = ("apple", "river", "stone", "cloud", "lamp", "orbit", "maple", "signal", "harbor")


# ---------------------------------------------------------------------------
# configuration and results


@dataclass(frozen=True)
class Config:
    n: int
    dim: int
    quick: bool
    samples: int  # recall latency samples per measurement
    warmup: int
    out: Path
    k: int = 10
    seed: int = 20240501
    queries: int = 256  # distinct query vectors, cycled
    window: int = 2000  # NATS publishes in flight
    http_batch: int = 1000
    http_in_flight: int = 4
    raw_payload_bytes: int = 1638  # 1.6 KiB

    @property
    def checkpoints(self) -> list[int]:
        """Fill levels at which recall is measured: 10k (if below N) and N."""
        return sorted({min(FIRST_CHECKPOINT, self.n), self.n})

    @property
    def searchable_timeout(self) -> float:
        return max(120.0, self.n / 300)


Cpu = dict[str, float]  # CPU seconds (user + system, all threads) by process


@dataclass
class Rate:
    name: str
    count: int
    seconds: float
    per_s: float
    note: str = ""
    cpu_s: Cpu = field(default_factory=dict)
    stage_of: str = ""  # a part of that measurement (the memories lo→hi)

    @classmethod
    def of(
        cls,
        name: str,
        count: int,
        seconds: float,
        note: str = "",
        cpu: Cpu | None = None,
        stage_of: str = "",
    ) -> Rate:
        cpu = {k: round(v, 3) for k, v in (cpu or {}).items()}
        return cls(name, count, round(seconds, 4), round(count / seconds, 1), note, cpu, stage_of)

    @property
    def label(self) -> str:
        return f"  {self.name}" if self.stage_of else self.name

    def cpu_ms_per_1k(self) -> dict[str, float]:
        per = {k: v * 1e6 / self.count for k, v in self.cpu_s.items()}
        return per | {"total": sum(per.values())} if per else {}


@dataclass
class Latency:
    name: str
    size: int  # memories / vectors in the index when measured
    samples: int
    p50_ms: float
    p99_ms: float
    mean_ms: float

    @classmethod
    def of(cls, name: str, size: int, seconds: Sequence[float]) -> Latency:
        ms = np.asarray(seconds, dtype=np.float64) * 1000.0
        p50, p99 = np.percentile(ms, [50, 99])
        return cls(
            name,
            size,
            len(ms),
            round(float(p50), 4),
            round(float(p99), 4),
            round(float(ms.mean()), 4),
        )


@dataclass
class Target:
    name: str
    value: float
    limit: float
    met: bool
    note: str = ""


@dataclass
class Results:
    started_at: str
    config: dict[str, Any]
    environment: dict[str, Any]
    rates: list[Rate] = field(default_factory=list)
    latencies: list[Latency] = field(default_factory=list)
    ratios: dict[str, float] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    elapsed_s: float = 0.0

    def rate(self, name: str, stage_of: str = "") -> Rate:
        return next(r for r in self.rates if r.name == name and r.stage_of == stage_of)

    def stages(self, of: str) -> list[Rate]:
        return [r for r in self.rates if r.stage_of == of]

    def latency(self, name: str, size: int) -> Latency:
        return next(x for x in self.latencies if x.name == name and x.size == size)


# ---------------------------------------------------------------------------
# data


@dataclass(frozen=True)
class Dataset:
    vectors: np.ndarray  # (n, dim) float32, unit rows
    contents: list[str]
    queries: np.ndarray  # (queries, dim) float32, unit rows


def unit_vectors(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    vecs = rng.standard_normal((n, dim), dtype=np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return vecs


def make_dataset(cfg: Config) -> Dataset:
    rng = np.random.default_rng(cfg.seed)
    vectors = unit_vectors(rng, cfg.n, cfg.dim)
    picks = rng.integers(0, len(WORDS), size=(cfg.n, 3))
    contents = [
        f"memory {i}: {WORDS[a]} {WORDS[b]} {WORDS[c]}" for i, (a, b, c) in enumerate(picks)
    ]
    return Dataset(vectors, contents, unit_vectors(rng, cfg.queries, cfg.dim))


# ---------------------------------------------------------------------------
# raw usearch


def bench_raw_usearch(cfg: Config, data: Dataset, res: Results) -> None:
    """Batch add in the same stages as the Engram ingest, search at each checkpoint."""
    index = Index(ndim=cfg.dim, metric="cos", dtype="f32")
    keys = np.arange(1, cfg.n + 1, dtype=np.uint64)
    stages: list[Rate] = []
    lo = 0
    for size in cfg.checkpoints:
        t0, c0 = time.perf_counter(), time.process_time()
        _add(index, keys[lo:size], data.vectors[lo:size])
        cpu = {"bench": time.process_time() - c0}
        seconds = time.perf_counter() - t0
        stages.append(Rate.of(_stage(lo, size), size - lo, seconds, "", cpu, "raw usearch add"))
        lo = size
        for count in (cfg.k, max(4 * cfg.k, 32)):
            name = f"raw usearch search k={count}"
            res.latencies.append(Latency.of(name, size, _time_searches(cfg, index, data, count)))
    add_s = sum(r.seconds for r in stages)
    cpu = {"bench": sum(r.cpu_s["bench"] for r in stages)}
    res.rates.append(Rate.of("raw usearch add", cfg.n, add_s, "f32, threads=0", cpu))
    if len(stages) > 1:
        res.rates.extend(stages)


def _add(index: Index, keys: np.ndarray, vectors: np.ndarray) -> None:
    try:
        index.add(keys, vectors, threads=0)
    except RuntimeError as exc:  # usearch turns Ctrl-C into this
        if "terminated" in str(exc):
            raise KeyboardInterrupt from exc
        raise


def _time_searches(cfg: Config, index: Index, data: Dataset, count: int) -> list[float]:
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
# the stack: nats-server, worker, gateway


@dataclass
class Stack:
    workdir: Path
    nats_url: str
    http_url: str
    procs: list[tuple[str, subprocess.Popen[bytes]]]

    def log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def check_alive(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}")

    def cpu(self) -> Cpu:
        """CPU seconds so far of every process of the stack and of this one."""
        used = {name: process_cpu_s(proc.pid) for name, proc in self.procs}
        return {k: v for k, v in used.items() if v == v} | {"bench": time.process_time()}


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads); NaN without /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_since(before: Cpu, after: Cpu) -> Cpu:
    return {k: after[k] - before[k] for k in after if k in before}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(stack: Stack, role: str, env: dict[str, str]) -> None:
    with open(stack.log(role), "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "engram_common.cli", role],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches only us; we stop it in order
        )
    stack.procs.append((role, proc))


def _stop(name: str, proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        print(f"{name} did not stop in 10 s; killing it", file=sys.stderr)
        proc.kill()
        proc.wait(5)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_ready(stack: Stack, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stack.check_alive()
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{stack.http_url}/ready", timeout=1.0).status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"gateway not ready after {timeout:g} s")


@contextlib.contextmanager
def running_stack() -> Iterator[Stack]:
    """nats-server + worker + gateway on loopback; all stopped and removed on exit."""
    workdir = Path(tempfile.mkdtemp(prefix="engram-bench-"))
    nats_port, http_port = free_port(), free_port()
    stack = Stack(workdir, f"nats://127.0.0.1:{nats_port}", f"http://127.0.0.1:{http_port}", [])
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    env |= {
        "ENGRAM_NATS_URL": stack.nats_url,
        "ENGRAM_HTTP_HOST": "127.0.0.1",
        "ENGRAM_HTTP_PORT": str(http_port),
        "ENGRAM_DATA_DIR": str(workdir / "data"),
    }
    try:
        server = start_nats_server(workdir / "nats", nats_port, log_file=stack.log("nats-server"))
        stack.procs.append(("nats-server", server))
        _spawn(stack, "worker", env)
        _spawn(stack, "gateway", env)
        _wait_ready(stack)
        yield stack
    except Exception:
        for name, _ in stack.procs:
            print(f"--- last lines of {name}.log ---\n{_tail(stack.log(name))}", file=sys.stderr)
        raise
    finally:
        for name, proc in reversed(stack.procs):
            _stop(name, proc)
        shutil.rmtree(workdir, ignore_errors=True)


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


def cue_body(vector: np.ndarray, k: int, consistency: str) -> bytes:
    return json.dumps({"embedding": vector.tolist(), "k": k, "consistency": consistency}).encode()


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
    done = asyncio.Event()
    count = 0

    async def on_msg(_: Msg) -> None:
        nonlocal count
        count += 1
        if count >= cfg.n:
            done.set()

    t0 = time.perf_counter()
    sub = await js.subscribe(
        RAW_SUBJECT,
        ordered_consumer=True,
        cb=on_msg,
        pending_msgs_limit=-1,
        pending_bytes_limit=-1,
    )
    try:
        await asyncio.wait_for(done.wait(), cfg.searchable_timeout)
    finally:
        seconds = time.perf_counter() - t0
        await sub.unsubscribe()
    return Rate.of("raw jetstream replay", cfg.n, seconds, "ordered push consumer, callback")


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
    cue = cue_body(data.vectors[hi - 1], 1, "strong")
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
    cue = cue_body(data.vectors[-1], 1, "strong")
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


# ---------------------------------------------------------------------------
# Engram recall latency


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
    http: httpx.AsyncClient, method: str, path: str, bodies: list[bytes], samples: int, warmup: int
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


async def measure_recall(
    cfg: Config, nc: Client, http: httpx.AsyncClient, data: Dataset, size: int, res: Results
) -> None:
    bodies = [cue_body(q, cfg.k, "eventual") for q in data.queries]
    subject = f"spaces.{NATS_SPACE}.q.recall"
    times = await time_nats_requests(nc, subject, bodies, cfg.samples, cfg.warmup)
    res.latencies.append(Latency.of("engram nats recall", size, times))
    path = f"/api/v1/spaces/{NATS_SPACE}/recall"
    times = await time_http_requests(http, "POST", path, bodies, cfg.samples, cfg.warmup)
    res.latencies.append(Latency.of("engram http recall", size, times))


async def measure_floors(
    cfg: Config, nc: Client, http: httpx.AsyncClient, size: int, res: Results
) -> None:
    """Round trips that do no index work: what transport and framework cost alone."""
    samples = max(100, cfg.samples // 2)
    subject = f"spaces.{NATS_SPACE}.q.stats"
    times = await time_nats_requests(nc, subject, [b"{}"], samples, cfg.warmup)
    res.latencies.append(Latency.of("floor: nats q.stats", size, times))
    times = await time_http_requests(http, "GET", "/health", [], samples, cfg.warmup)
    res.latencies.append(Latency.of("floor: http GET /health", size, times))


# ---------------------------------------------------------------------------
# the run


async def bench_nats_path(
    cfg: Config, stack: Stack, nc: Client, http: httpx.AsyncClient, data: Dataset, res: Results
) -> None:
    """Ingest straight into the WAL in stages; measure recall at each checkpoint."""
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
                _stage(lo, size),
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
        await measure_recall(cfg, nc, http, data, size, res)
    await measure_floors(cfg, nc, http, cfg.n, res)
    total_s = sum(r.seconds for r in stages)
    note = f"{cfg.window} in flight, acked {acked_s:.2f} s"
    res.rates.append(Rate.of("engram nats ingest", cfg.n, total_s, note, dict(cpu)))
    if len(stages) > 1:
        res.rates.extend(stages)
    res.rates.append(Rate.of("engram nats publish (acked)", cfg.n, acked_s))


async def bench_engram(cfg: Config, stack: Stack, data: Dataset, res: Results) -> None:
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
            await bench_nats_path(cfg, stack, nc, http, data, res)
            stack.check_alive()
            await bench_http_ingest(cfg, stack, http, nc, data, res)
            stack.check_alive()
    finally:
        await nc.close()


def compute_ratios(cfg: Config, res: Results) -> None:
    add = res.rate("raw usearch add").per_s
    res.ratios["nats ingest / raw usearch add"] = res.rate("engram nats ingest").per_s / add
    res.ratios["http ingest / raw usearch add"] = res.rate("engram http ingest").per_s / add
    res.ratios["engram nats publish / raw jetstream publish"] = (
        res.rate("engram nats publish (acked)").per_s / res.rate("raw jetstream publish").per_s
    )
    for raw_stage, stage in zip(
        res.stages("raw usearch add"), res.stages("engram nats ingest"), strict=True
    ):
        res.ratios[f"nats ingest / raw usearch add, {stage.name}"] = stage.per_s / raw_stage.per_s
    raw_cpu = res.rate("raw usearch add").cpu_ms_per_1k().get("total")
    for path in ("nats", "http"):
        cpu = res.rate(f"engram {path} ingest").cpu_ms_per_1k()
        if raw_cpu and "worker" in cpu:
            res.ratios[f"{path} ingest worker cpu / raw usearch add cpu"] = cpu["worker"] / raw_cpu
            res.ratios[f"{path} ingest all-process cpu / raw usearch add cpu"] = (
                cpu["total"] / raw_cpu
            )
    for size in cfg.checkpoints:
        raw = res.latency(f"raw usearch search k={cfg.k}", size).p50_ms
        for path in ("nats", "http"):
            p50 = res.latency(f"engram {path} recall", size).p50_ms
            res.ratios[f"{path} recall p50 / raw search p50 @{_k(size)}"] = p50 / raw
    res.ratios = {k: round(v, 3) for k, v in res.ratios.items()}


def compute_targets(cfg: Config, res: Results) -> None:
    for path in ("nats", "http"):
        ratio = res.ratios[f"{path} ingest / raw usearch add"]
        res.targets.append(
            Target(
                f"{path} ingest ≥ 70 % of raw usearch add",
                float(ratio),
                INGEST_TARGET,
                bool(ratio >= INGEST_TARGET),
            )
        )
    p50 = res.latency("engram http recall", cfg.n).p50_ms
    note = "" if cfg.n == RECALL_TARGET_SIZE else f"measured at {_k(cfg.n)}; target is at 100k"
    res.targets.append(
        Target(
            f"http recall p50 ≤ {RECALL_TARGET_MS:g} ms at 100k",
            p50,
            RECALL_TARGET_MS,
            bool(p50 <= RECALL_TARGET_MS),
            note,
        )
    )


def environment() -> dict[str, Any]:
    server = subprocess.run(
        [find_nats_server(), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    versions = {
        pkg: importlib.metadata.version(pkg) for pkg in ("usearch", "nats-py", "numpy", "httpx")
    }
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
    _step("raw usearch add + search")
    bench_raw_usearch(cfg, data, res)
    _step("starting nats-server, worker, gateway")
    with running_stack() as stack:
        _step("raw jetstream, engram nats ingest + recall, engram http ingest")
        asyncio.run(bench_engram(cfg, stack, data, res))
    compute_ratios(cfg, res)
    compute_targets(cfg, res)
    res.environment["loadavg_end"] = _loadavg()
    res.elapsed_s = round(time.perf_counter() - started, 1)
    return res


# ---------------------------------------------------------------------------
# output


def _k(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def _stage(lo: int, hi: int) -> str:
    return f"stage {_k(lo)}→{_k(hi)}"


def _step(text: str) -> None:
    print(f"  … {text}", flush=True)


def render(res: Results) -> str:
    lines = ["", "THROUGHPUT", f"  {'measurement':<40} {'count':>8} {'seconds':>9} {'per s':>11}"]
    lines += [
        f"  {r.label:<40} {r.count:>8} {r.seconds:>9.2f} {r.per_s:>11,.0f}  {r.note}"
        for r in res.rates
    ]
    lines += ["", "CPU ms per 1000 memories (all threads; steadier than wall time on a busy box)"]
    cols = ["worker", "gateway", "nats-server", "bench", "total"]
    lines.append(f"  {'measurement':<40}" + "".join(f"{c:>12}" for c in cols))
    for r in res.rates:
        per = r.cpu_ms_per_1k()
        if per:
            cells = (f"{per[c]:>12,.0f}" if c in per else f"{'-':>12}" for c in cols)
            lines.append(f"  {r.label:<40}" + "".join(cells))
    lines += ["", "LATENCY", f"  {'measurement':<40} {'size':>8} {'p50 ms':>9} {'p99 ms':>9}"]
    lines += [
        f"  {x.name:<40} {_k(x.size):>8} {x.p50_ms:>9.3f} {x.p99_ms:>9.3f}  (n={x.samples})"
        for x in res.latencies
    ]
    lines += ["", "RATIOS"]
    lines += [f"  {name:<52} {value:>8.3f}" for name, value in res.ratios.items()]
    lines += ["", "TARGETS"]
    for t in res.targets:
        verdict = "MET    " if t.met else "NOT MET"
        note = f"  ({t.note})" if t.note else ""
        lines.append(f"  {verdict} {t.name}: {t.value:.3f} vs {t.limit:g}{note}")
    lines.append(f"\ntotal {res.elapsed_s:.0f} s")
    load, cpus = res.environment.get("loadavg_start") or [0.0], res.environment.get("cpus") or 1
    if load[0] > 0.5 * cpus:
        lines.append(
            f"WARNING: load average {load[0]} on {cpus} CPUs when the run started: other work "
            "shared the machine, wall-clock figures and ratios are noisy (compare the CPU table)."
        )
    return "\n".join(lines)


def write_json(res: Results, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(asdict(res), indent=2, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------------------
# entry point


def parse_args(argv: list[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--n", type=int, default=None, help="memories (default 100000)")
    parser.add_argument("--dim", type=int, default=384, help="vector dimensions (default 384)")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: N=5000 and fewer latency samples"
    )
    parser.add_argument("--samples", type=int, default=None, help="recall samples (default 1000)")
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
