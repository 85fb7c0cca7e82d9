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
* the WAL fold (``SpaceState.apply_message``, no index inserts) on an ordered
  consumer, compared with the same consumer doing nothing but count;
* recovery of the N-memory space, in this process with ``SpaceHost`` after the
  worker is stopped gracefully: a full replay of the WAL and a snapshot restore,
  each timed until a recall at the stream's last seq answers, and the time to
  write a snapshot;
* in-worker recall: ``SpaceState.recall`` in each mode on the restored N-memory
  state, in this process (no transport), compared with raw usearch ``search``,
  with the association graph's size and how many memories spreading reaches.

It prints a table and writes the same figures to ``ops/bench/results/latest.json``.
It measures only: nothing here fails on a slow figure. Everything it starts is
stopped and its temporary directory removed on exit, error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.metadata
import io
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
from collections.abc import Awaitable, Callable, Iterator, Sequence
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
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource
from usearch.index import Index

from engram_cli.devstack import find_nats_server, start_nats_server
from engram_contract.embedders import get_embedder
from engram_contract.messages import RecallMode, RecallRequest, SpaceRecord, encode_embedding
from engram_contract.settings import WorkerSettings
from engram_contract.subjects import command_verb, stream_name, wal_subjects
from engram_nats.registry import SpaceRegistry
from engram_nats.snapshots import BUCKET as SNAPSHOT_BUCKET
from engram_worker.core.activation import spread
from engram_worker.core.index import VectorIndex
from engram_worker.core.persistence import restore
from engram_worker.core.recall import RecallQuery, nearest
from engram_worker.core.snapshot import decode
from engram_worker.core.state import SpaceState
from engram_worker.host import SpaceHost
from engram_worker.positions import position, stored_at
from engram_worker.snapshots import SnapshotStore

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
RECALL_MODES: tuple[RecallMode, ...] = ("similarity", "spreading", "hybrid")
RECALL_HOPS = 2  # spreading and hybrid recall: activation spreads this many hops
SPREAD_RATIO_TARGET = 5.0  # in-worker spreading recall p50 ≤ 5× raw usearch search p50
SPREAD_P99_TARGET_MS = 10.0  # HTTP spreading recall p99 ≤ 10 ms at 100k
RESTORE_TARGET = 0.05  # snapshot restore ≤ 5 % of a full replay
FOLD_TARGET = 0.5  # WAL fold ≥ 50 % of raw ordered-consumer replay
FOLD_ROUNDS = 3  # raw and fold replays, alternated; the median counts
RESTORE_ROUNDS = 3  # snapshot restores; the median counts
WORKER_STOP_TIMEOUT = 300.0  # a graceful stop writes every changed space's snapshot

WORDS = ("apple", "river", "stone", "cloud", "lamp", "orbit", "maple", "signal", "harbor")


# ---------------------------------------------------------------------------
# configuration and results


@dataclass(frozen=True)
class Config:
    n: int
    dim: int
    quick: bool
    samples: int  # latency samples per measurement
    mode_samples: int  # NATS and HTTP recall samples per mode (the modes alternate)
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

    @property
    def replay_timeout(self) -> float:
        return max(300.0, self.n / 100)


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
    recovery: dict[str, Any] = field(default_factory=dict)
    # recall by mode: recall.<nats|http|in_worker>.<mode>.<size>, graph, raw search
    recall: dict[str, Any] = field(default_factory=dict)
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
    return index


def _add(index: Index, keys: np.ndarray, vectors: np.ndarray) -> None:
    try:
        index.add(keys, vectors, threads=0)
    except RuntimeError as exc:  # usearch turns Ctrl-C into this
        if "terminated" in str(exc):
            raise KeyboardInterrupt from exc
        raise


def _time_searches(
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
# the stack: nats-server, worker, gateway


@dataclass
class Stack:
    workdir: Path
    nats_url: str
    http_url: str
    procs: list[tuple[str, subprocess.Popen[bytes]]]
    stopped: list[str] = field(default_factory=list)  # stopped on purpose during the run

    def log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def stop_gracefully(self, name: str, timeout: float) -> float:
        """SIGTERM one process and wait until it exits; returns the seconds it took."""
        proc = dict(self.procs)[name]
        t0 = time.perf_counter()
        proc.terminate()
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
            raise RuntimeError(f"{name} did not stop within {timeout:g} s") from None
        seconds = time.perf_counter() - t0
        self.procs.remove((name, proc))
        self.stopped.append(name)
        if code != 0:
            raise RuntimeError(f"{name} exited with {code} on SIGTERM")
        return seconds

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
            [sys.executable, "-m", "engram_cli", role],
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
        for name in [n for n, _ in stack.procs] + stack.stopped:
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


def cue_body(vector: np.ndarray, k: int, consistency: str, **fields: Any) -> bytes:
    body = {"embedding": vector.tolist(), "k": k, "consistency": consistency, **fields}
    return json.dumps(body).encode()


def probe_body(vector: np.ndarray) -> bytes:
    """The strong recall that polls for searchability: plain similarity, and no
    reinforcement (a poll is no recall; it should not write to the WAL)."""
    return cue_body(vector, 1, "strong", mode="similarity", reinforce=False)


def recall_body(vector: np.ndarray, k: int, mode: RecallMode) -> bytes:
    """A recall as a client sends it: reinforcement on (the default)."""
    return cue_body(vector, k, "eventual", mode=mode, max_hops=RECALL_HOPS, reinforce=True)


def recall_name(path: str, mode: str) -> str:
    """``engram nats recall`` and ``engram http recall`` stay the similarity figures
    (what they measured before recall had modes); every other one names its mode."""
    if path in ("nats", "http"):
        return f"engram {path} recall" + ("" if mode == "similarity" else f" {mode}")
    return f"{path} recall {mode}"


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


Callback = Callable[[Msg], Awaitable[None]]


def counting_callback(count: int) -> tuple[Callback, asyncio.Event]:
    """A consumer callback that only counts; the event is set at ``count`` messages."""
    done = asyncio.Event()
    seen = 0

    async def on_msg(_: Msg) -> None:
        nonlocal seen
        seen += 1
        if seen >= count:
            done.set()

    return on_msg, done


async def timed_replay(
    js: JetStreamContext,
    subject: str,
    stream: str | None,
    on_msg: Callback,
    done: asyncio.Event,
    timeout: float,
) -> float:
    """Read a stream from its start with an ordered push consumer and a callback;
    seconds from the subscribe until ``done`` is set."""
    t0 = time.perf_counter()
    sub = await js.subscribe(
        subject,
        stream=stream,
        ordered_consumer=True,
        cb=on_msg,
        pending_msgs_limit=-1,
        pending_bytes_limit=-1,
    )
    try:
        await asyncio.wait_for(done.wait(), timeout)
    finally:
        seconds = time.perf_counter() - t0
        await sub.unsubscribe()
    return seconds


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
    cfg: Config, nc: Client, http: httpx.AsyncClient, data: Dataset, size: int, res: Results
) -> None:
    """Recall in every mode, over NATS, then over HTTP. Each recall reinforces the
    memories it returns, so the worker writes a ``reinforce`` command to the WAL
    every ``reinforce_delay`` meanwhile, as it does in service."""
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
# WAL fold and recovery (in this process, after the worker has stopped)


class HostSettings(WorkerSettings):
    """Worker settings for the hosts this process runs: the defaults and what the
    bench passes, nothing from the environment (the stack clears ``ENGRAM_*`` too)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def host_settings(stack: Stack) -> WorkerSettings:
    """No periodic snapshot (the bench writes the one it times) and no events (every
    message replayed is history; a restarted worker folds old history quietly too)."""
    return HostSettings(
        nats_url=stack.nats_url,
        worker_id="bench",
        event_window=0.0,
        snapshot_every=1 << 62,
        snapshot_interval=1e9,
    )


def fold_callback(state: SpaceState, count: int) -> tuple[Callback, asyncio.Event]:
    """What the worker's WAL callback does to fold a message, minus the index: its
    position (``position(msg.reply)``), the verb from the subject, ``apply_message``.
    The vectors it buffers for the index are dropped now and then, not inserted."""
    done = asyncio.Event()
    folded = 0

    async def on_msg(msg: Msg) -> None:
        nonlocal folded
        seq, stamp, _ = position(msg.reply)
        verb = command_verb(msg.subject)
        state.apply_message(verb, msg.data, seq, stored_at(stamp))
        folded += 1
        if folded % 4096 == 0:
            state.indexing.pending.clear()  # index inserts are not part of the fold
        if folded >= count:
            done.set()

    return on_msg, done


def _median(values: Sequence[float]) -> float:
    return float(np.median(np.asarray(values, dtype=np.float64)))


def _rounds(values: Sequence[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


async def bench_wal_fold(
    cfg: Config,
    js: JetStreamContext,
    rec: SpaceRecord,
    count: int,
    last: int,
    memories: int,
    res: Results,
) -> None:
    """The space's WAL read by an ordered consumer whose callback only counts, and by
    the same consumer folding every message; alternated, the median of each counts."""
    subject, stream = wal_subjects(rec.id), stream_name(rec.id)
    raw: list[tuple[float, float]] = []  # (seconds, CPU seconds of this process)
    fold: list[tuple[float, float]] = []
    for _ in range(FOLD_ROUNDS):
        on_msg, done = counting_callback(count)
        c0 = time.process_time()
        seconds = await timed_replay(js, subject, stream, on_msg, done, cfg.replay_timeout)
        raw.append((seconds, time.process_time() - c0))
        state = SpaceState(rec, get_embedder(rec.embedder, rec.dim))
        on_msg, done = fold_callback(state, count)
        c0 = time.process_time()
        seconds = await timed_replay(js, subject, stream, on_msg, done, cfg.replay_timeout)
        fold.append((seconds, time.process_time() - c0))
        if state.applied_seq != last or len(state) != memories or state.rejected:
            raise RuntimeError(
                f"fold: applied_seq {state.applied_seq}, {len(state)} memories, "
                f"{state.rejected} rejected; expected seq {last}, {memories} memories"
            )
        del state, on_msg
        gc.collect()
    for name, rounds in (
        ("raw wal replay (count only)", raw),
        ("wal fold (apply_message, no index)", fold),
    ):
        seconds, cpu = sorted(rounds)[len(rounds) // 2]  # the median round
        note = f"median of {_rounds([s for s, _ in rounds])} s"
        res.rates.append(Rate.of(name, count, seconds, note, {"bench": cpu}))


@dataclass
class Recovered:
    """One host from ``start()`` until a recall at the stream's last seq answered."""

    seconds: float
    start_s: float  # in host.start(): snapshot read, checked, restored; subscribed
    cpu_s: float  # this process, all threads
    recovery: str  # what the host says it did


async def serve_again(
    host: SpaceHost, last: int, cue: np.ndarray, k: int, use_snapshot: bool, timeout: float
) -> Recovered:
    """Start ``host`` and time it until it answers a recall with ``min_seq`` = ``last``
    (what the worker does for such a query: wait until applied, then recall)."""
    c0, t0 = time.process_time(), time.perf_counter()
    await host.start(use_snapshot=use_snapshot)
    start_s = time.perf_counter() - t0
    await host.wait_applied(last, timeout)
    results = await host.with_index(lambda st: st.recall(cue, k))
    seconds = time.perf_counter() - t0
    cpu_s = time.process_time() - c0
    if not results or host.state.applied_seq < last:
        raise RuntimeError(f"{host.space}: no answer at seq {last} ({host.snapshotter.recovery})")
    return Recovered(
        round(seconds, 4), round(start_s, 4), round(cpu_s, 3), host.snapshotter.recovery
    )


async def bench_recovery(
    cfg: Config,
    stack: Stack,
    nc: Client,
    store: SnapshotStore,
    rec: SpaceRecord,
    last: int,
    data: Dataset,
    raw: Index,
    res: Results,
) -> None:
    """Full replay, then a snapshot written by the replayed host, then restores of it
    (and the in-worker recall on the last one restored)."""
    js = nc.jetstream()
    settings = host_settings(stack)
    cue = data.vectors[-1]
    out = res.recovery

    _step(f"recovery: full replay of {_k(cfg.n)} memories (fold + index)")
    host = SpaceHost(rec, nc, js, settings, store)
    replay = await serve_again(host, last, cue, cfg.k, False, cfg.replay_timeout)
    out["full_replay"] = asdict(replay)

    _step("recovery: writing a snapshot")
    t0 = time.perf_counter()
    header = await host.snapshotter.snapshot(origin="bench")
    out["snapshot_write_s"] = round(time.perf_counter() - t0, 4)
    info = await store.info(rec.id)
    out["snapshot_bytes"] = None if info is None else info.size
    out["snapshot_seq"] = header.applied_seq
    out["snapshot_memories"] = header.memories
    await host.stop()
    del host
    gc.collect()

    _step(f"recovery: snapshot restore ×{RESTORE_ROUNDS}")
    restores: list[Recovered] = []
    for _ in range(RESTORE_ROUNDS):
        host = SpaceHost(rec, nc, js, settings, store)
        restored = await serve_again(host, last, cue, cfg.k, True, cfg.replay_timeout)
        if not restored.recovery.startswith("restored from snapshot"):
            raise RuntimeError(f"{rec.id}: the snapshot was not used: {restored.recovery}")
        restores.append(restored)
        await host.stop()
        kept = host.state  # the last one serves the in-worker recall below
        del host
        gc.collect()

    _step(f"in-worker recall by mode on the restored {_k(len(kept))}-memory state")
    bench_in_worker_recall(cfg, kept, raw, data, res)
    del kept
    gc.collect()

    out["restore_breakdown"] = await restore_breakdown(js, store, rec)
    median = _median([r.seconds for r in restores])
    typical = min(restores, key=lambda r: abs(r.seconds - median))
    out["snapshot_restore"] = asdict(typical) | {
        "seconds": round(median, 4),
        "rounds_s": [r.seconds for r in restores],
    }


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
        times = _time_searches(cfg, index, data, cfg.k)
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
        name: {str(size): _cell(Latency.of(name, size, times))} for name, times in first.items()
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


async def restore_breakdown(
    js: JetStreamContext, store: SnapshotStore, rec: SpaceRecord
) -> dict[str, float]:
    """Where a restore's time goes, step by step as ``SpaceHost`` restores (one more
    restore, outside the timed rounds), and the raw reference for the first step:
    the same chunks read by an ordered consumer with ``next_msg`` into a buffer."""
    t0 = time.perf_counter()
    loaded = await store.load(rec.id)
    if loaded is None:
        raise RuntimeError(f"{rec.id}: no snapshot")
    info, data = loaded
    t1 = time.perf_counter()
    snap = await asyncio.to_thread(decode, data)
    t2 = time.perf_counter()
    index = await asyncio.to_thread(VectorIndex.from_bytes, snap.index, rec.dim, rec.metric)
    t3 = time.perf_counter()
    state = SpaceState(rec, get_embedder(rec.embedder, rec.dim))
    head = snap.header
    restore(
        state,
        snap.records,
        index,
        applied_seq=head.applied_seq,
        next_key=head.next_key,
        rejected=head.rejected,
    )
    t4 = time.perf_counter()
    steps = {
        "object_store_load_s": t1 - t0,
        "decode_s": t2 - t1,
        "index_from_bytes_s": t3 - t2,
        "state_restore_s": t4 - t3,
    }
    del snap, data, loaded, index, state
    gc.collect()
    steps["raw_chunk_read_s"] = await read_chunks(js, f"$O.{SNAPSHOT_BUCKET}.C.{info.nuid}")
    return {k: round(v, 4) for k, v in steps.items()}


async def read_chunks(js: JetStreamContext, subject: str) -> float:
    """Seconds to read every message on ``subject`` into one buffer with an ordered
    consumer and ``next_msg`` (which answers the server's flow control at once)."""
    buf = io.BytesIO()
    t0 = time.perf_counter()
    sub = await js.subscribe(subject, ordered_consumer=True)
    try:
        while True:
            msg = await sub.next_msg(timeout=10.0)
            buf.write(msg.data)
            if msg.metadata.num_pending == 0:
                break
    finally:
        seconds = time.perf_counter() - t0
        await sub.unsubscribe()
    return seconds


def _snapshot_seq(info: api.ObjectInfo | None) -> int | None:
    """The applied seq a snapshot object says it holds (its ``Engram-Applied-Seq``)."""
    value = (info.headers or {}).get("Engram-Applied-Seq") if info is not None else None
    if isinstance(value, list):
        value = value[0] if value else None
    return None if value is None else int(value)


async def bench_wal_and_recovery(
    cfg: Config, stack: Stack, nc: Client, data: Dataset, raw: Index, res: Results
) -> None:
    """Stop the worker (it writes its snapshots on the way out, and leaves the machine
    quiet), then measure the fold and the recovery of the NATS space here."""
    js = nc.jetstream()
    _step("stopping the worker gracefully")
    store = SnapshotStore(js)
    await store.open()
    stop_s = await asyncio.to_thread(stack.stop_gracefully, "worker", WORKER_STOP_TIMEOUT)
    shutdown = await store.info(NATS_SPACE)
    res.recovery["worker_graceful_stop_s"] = round(stop_s, 3)
    res.recovery["worker_snapshot_seq"] = _snapshot_seq(shutdown)
    registry = SpaceRegistry(js)
    await registry.open()
    rec = await registry.get(NATS_SPACE)
    if rec is None:
        raise RuntimeError(f"space {NATS_SPACE} is not in the registry")
    state = (await js.stream_info(stream_name(NATS_SPACE), subjects_filter=">")).state
    by_verb = Counter[str]()
    for subject, n in (state.subjects or {}).items():
        by_verb[command_verb(subject)] += n
    res.recovery |= {
        "space": NATS_SPACE,
        "stream_last_seq": state.last_seq,
        "messages": state.messages,
        # besides the N remembers: the reinforce commands the recalls made the worker write
        "messages_by_verb": dict(sorted(by_verb.items())),
    }
    _step("wal fold vs raw ordered-consumer replay")
    await bench_wal_fold(cfg, js, rec, state.messages, state.last_seq, cfg.n, res)
    await bench_recovery(cfg, stack, nc, store, rec, state.last_seq, data, raw, res)


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
            await bench_nats_path(cfg, stack, nc, http, data, res)
            stack.check_alive()
            await bench_http_ingest(cfg, stack, http, nc, data, res)
            stack.check_alive()
            await bench_wal_and_recovery(cfg, stack, nc, data, raw, res)
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
    # the in-worker calls against the raw search timed just before them
    raw = res.latency(IN_WORKER_CALLS["raw_search"].format(k=cfg.k), cfg.n).p50_ms
    for mode in RECALL_MODES:
        p50 = res.latency(recall_name("in-worker", mode), cfg.n).p50_ms
        res.ratios[f"in-worker {mode} recall p50 / raw search p50 @{_k(cfg.n)}"] = p50 / raw
    # the space's (restored) index against the raw one, timed the same way
    p50 = res.latency(IN_WORKER_CALLS["index_search_loop"].format(k=cfg.k), cfg.n).p50_ms
    res.ratios[f"in-worker index search p50 / raw search p50 @{_k(cfg.n)}"] = p50 / raw
    res.ratios["wal fold / raw wal replay"] = (
        res.rate("wal fold (apply_message, no index)").per_s
        / res.rate("raw wal replay (count only)").per_s
    )
    rec = res.recovery
    res.ratios["snapshot restore / full replay"] = (
        rec["snapshot_restore"]["seconds"] / rec["full_replay"]["seconds"]
    )
    res.ratios = {k: round(v, 4 if "restore" in k else 3) for k, v in res.ratios.items()}


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
    at = "" if cfg.n == RECALL_TARGET_SIZE else f"; measured at {_k(cfg.n)}, target is at 100k"
    res.targets.append(
        Target(
            f"http recall p50 ≤ {RECALL_TARGET_MS:g} ms at 100k",
            p50,
            RECALL_TARGET_MS,
            bool(p50 <= RECALL_TARGET_MS),
            f"similarity mode{at}",
        )
    )
    ratio = res.ratios[f"in-worker spreading recall p50 / raw search p50 @{_k(cfg.n)}"]
    p50 = res.latency(recall_name("in-worker", "spreading"), cfg.n).p50_ms
    raw = res.latency(IN_WORKER_CALLS["raw_search"].format(k=cfg.k), cfg.n).p50_ms
    res.targets.append(
        Target(
            f"in-worker spreading recall p50 ≤ {SPREAD_RATIO_TARGET:g}× raw search p50 at 100k",
            ratio,
            SPREAD_RATIO_TARGET,
            bool(ratio <= SPREAD_RATIO_TARGET),
            f"{p50:.3f} ms vs {raw:.3f} ms, {RECALL_HOPS} hops{at}",
        )
    )
    spreading = res.latency(recall_name("http", "spreading"), cfg.n)
    res.targets.append(
        Target(
            f"http spreading recall p99 ≤ {SPREAD_P99_TARGET_MS:g} ms at 100k",
            spreading.p99_ms,
            SPREAD_P99_TARGET_MS,
            bool(spreading.p99_ms <= SPREAD_P99_TARGET_MS),
            f"p50 {spreading.p50_ms:.3f} ms, {spreading.samples} samples{at}",
        )
    )
    restore = res.ratios["snapshot restore / full replay"]
    res.targets.append(
        Target(
            f"snapshot restore ≤ {RESTORE_TARGET:.0%} of full replay",
            restore,
            RESTORE_TARGET,
            bool(restore <= RESTORE_TARGET),
            f"{res.recovery['snapshot_restore']['seconds']:.2f} s vs "
            f"{res.recovery['full_replay']['seconds']:.2f} s at {_k(cfg.n)}",
        )
    )
    fold = res.ratios["wal fold / raw wal replay"]
    res.targets.append(
        Target(
            f"wal fold ≥ {FOLD_TARGET:.0%} of raw ordered-consumer replay",
            fold,
            FOLD_TARGET,
            bool(fold >= FOLD_TARGET),
        )
    )


def _cell(x: Latency) -> dict[str, float]:
    return {"p50_ms": x.p50_ms, "p99_ms": x.p99_ms, "mean_ms": x.mean_ms, "samples": x.samples}


def summarize_recall(cfg: Config, res: Results) -> None:
    """``recall.<nats|http|in_worker>.<mode>.<size>``: the recall latencies by mode,
    next to the raw search they compare with (and what the in-worker run found).
    ``raw_search_p50_ms``: the raw search of the start of the run, at each size;
    the in-worker ratios divide by ``in_worker.raw_search`` (the same index and
    method, timed again just before the in-worker calls)."""

    def cell(name: str, size: int) -> dict[str, float]:
        return _cell(res.latency(name, size))

    raw = {
        size: res.latency(f"raw usearch search k={cfg.k}", size).p50_ms for size in cfg.checkpoints
    }
    out: dict[str, Any] = {
        "k": cfg.k,
        "max_hops": RECALL_HOPS,
        "reinforce": True,
        "modes": list(RECALL_MODES),
        "raw_search_p50_ms": {str(size): p50 for size, p50 in raw.items()},
    }
    for path in ("nats", "http"):
        out[path] = {
            mode: {str(size): cell(recall_name(path, mode), size) for size in cfg.checkpoints}
            for mode in RECALL_MODES
        }
    names = {m: recall_name("in-worker", m) for m in RECALL_MODES} | {
        key: name.format(k=cfg.k) for key, name in IN_WORKER_CALLS.items()
    }
    rerun_raw = res.latency(names["raw_search"], cfg.n).p50_ms
    in_worker: dict[str, Any] = {}
    for key, name in names.items():
        row = cell(name, cfg.n)
        ratio = round(row["p50_ms"] / rerun_raw, 3)
        in_worker[key] = {str(cfg.n): row | {"p50_over_raw_search_p50": ratio}}
    out["in_worker"] = in_worker
    res.recall = out | res.recall


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
    raw = bench_raw_usearch(cfg, data, res)
    _step("starting nats-server, worker, gateway")
    with running_stack() as stack:
        _step("raw jetstream, engram nats ingest + recall, engram http ingest, recovery")
        asyncio.run(bench_engram(cfg, stack, data, raw, res))
    del raw
    compute_ratios(cfg, res)
    compute_targets(cfg, res)
    summarize_recall(cfg, res)
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
    lines += render_recall(res.recall)
    lines += render_recovery(res.recovery)
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


def render_recall(rec: dict[str, Any]) -> list[str]:
    if not rec:
        return []
    modes = rec["modes"]

    def cell(x: dict[str, float]) -> str:
        ratio = x.get("p50_over_raw_search_p50")
        extra = "" if ratio is None else f" ×{ratio:.1f}"
        return f"{x['p50_ms']:.3f} / {x['p99_ms']:.3f}{extra}"

    rows: list[tuple[int, int, str, list[str]]] = []
    for order, path in enumerate(("nats", "http", "in_worker")):
        for size in rec[path][modes[0]]:
            cells = [cell(rec[path][m][size]) for m in modes]
            rows.append((int(size), order, path.replace("_", "-"), cells))
    raw = ", ".join(f"{p50:.3f} ms @{_k(int(s))}" for s, p50 in rec["raw_search_p50_ms"].items())
    search = next(iter(rec["in_worker"]["index_search"].values()))
    rerun = next(iter(rec["in_worker"]["raw_search"].values()))
    loop = next(iter(rec["in_worker"]["index_search_loop"].values()))
    lines = [
        "",
        f"RECALL BY MODE (k={rec['k']}, {rec['max_hops']} hops, reinforce on; p50 / p99 ms; "
        "in-worker: SpaceState.recall, × raw search p50)",
        f"  {'path':<10} {'size':>6}" + "".join(f"{m:>26}" for m in modes),
    ]
    lines += [
        f"  {path:<10} {_k(size):>6}" + "".join(f"{c:>26}" for c in cells)
        for size, _, path, cells in sorted(rows)
    ]
    lines += [
        f"  search k={rec['k']} p50, raw usearch: {raw} at the start; "
        f"{rerun['p50_ms']:.3f} ms rerun just before the in-worker calls (the × base)",
        f"  search k={rec['k']} p50, the space's index: {loop['p50_ms']:.3f} ms the same way "
        f"(×{loop['p50_over_raw_search_p50']:.2f}); {search['p50_ms']:.3f} ms in the "
        f"rotation with the recalls (×{search['p50_over_raw_search_p50']:.2f})",
    ]
    graph, reach = rec.get("graph"), rec.get("spreading_reach")
    if graph:
        kinds = ", ".join(f"{kind} {n:,}" for kind, n in graph["edges_by_kind"].items())
        lines.append(
            f"  association graph: {graph['edges']:,} edges ({kinds or 'none'}) over "
            f"{graph['memories']:,} memories, mean degree {graph['mean_degree']:.2f}"
        )
    if reach:
        hops = ", ".join(f"hop {h}: {n:g}" for h, n in reach["mean_by_hop"].items())
        lines.append(
            f"  spreading reaches {reach['mean']:g} memories on average (p50 {reach['p50']:g}, "
            f"max {reach['max']}; {hops}) from {reach['seeds']} seeds, fanout "
            f"{reach['max_fanout']}"
        )
    first = rec.get("in_worker_first_pass")
    if first:
        firsts = ", ".join(
            f"{name.replace('_', ' ')} {next(iter(by_size.values()))['p50_ms']:.3f}"
            for name, by_size in first.items()
        )
        lines.append(f"  in-worker first pass over the distinct cues, p50 ms: {firsts}")
    return lines


def render_recovery(rec: dict[str, Any]) -> list[str]:
    if not rec:
        return []
    replay, restore, parts = rec["full_replay"], rec["snapshot_restore"], rec["restore_breakdown"]
    size = rec["snapshot_bytes"] or float("nan")
    rounds = ", ".join(f"{s:.2f}" for s in restore["rounds_s"])

    def row(name: str, seconds: float, note: str = "") -> str:
        return f"  {name:<40} {seconds:>9.2f} s  {note}".rstrip()

    return [
        "",
        f"RECOVERY (space {rec['space']}, stream last seq {rec['stream_last_seq']}; "
        "seconds from start() until a recall at that seq answers)",
        row("full replay (fold + index)", replay["seconds"], f"cpu {replay['cpu_s']:.1f} s"),
        row(
            "snapshot restore",
            restore["seconds"],
            f"median of {rounds}; cpu {restore['cpu_s']:.1f} s",
        ),
        row(
            "  object store load",
            parts["object_store_load_s"],
            f"raw chunk read (next_msg): {parts['raw_chunk_read_s']:.2f} s",
        ),
        row("  decode (checksums, records JSON)", parts["decode_s"]),
        row("  usearch Index.restore", parts["index_from_bytes_s"]),
        row("  SpaceState.restore", parts["state_restore_s"]),
        row(
            "snapshot write (host.snapshotter.snapshot())",
            rec["snapshot_write_s"],
            f"{size / 1e6:,.1f} MB, seq {rec['snapshot_seq']}, {rec['snapshot_memories']} memories",
        ),
        row(
            "worker graceful stop (SIGTERM → exit)",
            rec["worker_graceful_stop_s"],
            f"its snapshot of {rec['space']} at seq {rec['worker_snapshot_seq']}",
        ),
    ]


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
