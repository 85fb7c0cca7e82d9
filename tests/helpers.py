"""Helpers shared by the test modules; conftest.py holds only fixtures (which may
call these).

Integration helpers talk to a real gateway or a real nats-server; the unit helpers
at the end build fold states and raw WAL bodies (the fold is fed exactly what the
WAL consumer hands it: verb, raw bytes, stream sequence, timestamp)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import nats.errors
import numpy as np
import uvicorn
from nats.aio.client import Client as Nats
from nats.aio.msg import Msg

from engram_cli.devstack import start_nats_server
from engram_contract.embedders import HashNgramEmbedder
from engram_contract.messages import LinkSettings, SpaceRecord, encode_embedding
from engram_contract.settings import GatewaySettings, WorkerSettings
from engram_contract.subjects import WORKERS_BUCKET, stream_name
from engram_gateway.app import create_app
from engram_nats.registry import SpaceRegistry
from engram_worker.core.records import StoredMemory
from engram_worker.core.state import SpaceState

Client = httpx.AsyncClient
T = TypeVar("T")
#: the dimension of the spaces the integration helpers create and fill
DIM = 16

# -- servers, settings and processes ---------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class NatsServer:
    store_dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = start_nats_server(
            self.store_dir, self.port, log_file=self.store_dir.parent / "nats.log"
        )

    def stop(self, kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            self.proc.wait(15)
        self.proc = None


def worker_settings(url: str, **over: Any) -> WorkerSettings:
    # no metrics endpoint unless a test asks for one (tests pass a free port):
    # many workers in one run would all try the default port
    over.setdefault("metrics_port", 0)
    # one id per worker: in one process they would all default to host-pid
    over.setdefault("worker_id", f"test-{uuid.uuid4().hex[:10]}")
    return WorkerSettings(nats_url=url, **over)


def gateway_settings(url: str, **over: Any) -> GatewaySettings:
    # no gRPC server unless a test asks for one (with a free port): many gateways in
    # one run would all try the default port
    over.setdefault("grpc_port", 0)
    return GatewaySettings(nats_url=url, **over)


@contextlib.asynccontextmanager
async def running_gateway(settings: GatewaySettings) -> AsyncIterator[httpx.AsyncClient]:
    """A real uvicorn serving ``create_app(settings)`` on a free loopback port, in this
    event loop, and an httpx client for it."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("gateway exited during start-up")
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            yield c
    finally:
        server.should_exit = True
        await task


class EngramProcess:
    """An engram process (``engram worker`` / ``engram gateway``) for kill tests."""

    def __init__(self, role: str, env: dict[str, str], log: Path) -> None:
        if role == "worker":
            # its own id (forgotten again by forget_workers), and a short TTL: a
            # killed worker's spaces move within 2 s
            env = {
                "ENGRAM_WORKER_ID": f"proc-{uuid.uuid4().hex[:10]}",
                "ENGRAM_WORKER_TTL": "2",
            } | env
        elif role == "gateway":
            # no gRPC server unless asked for (several gateways would share the port)
            env = {"ENGRAM_GRPC_PORT": "0"} | env
        self.role, self.env, self.log = role, env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = open(self.log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engram_cli", self.role],
            env={**os.environ, **self.env},
            stdout=out,
            stderr=out,
        )

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


async def purge_heartbeats(nats_url: str, worker_ids: list[str]) -> None:
    """Remove these workers' heartbeats from ``ENGRAM_WORKERS``: the session's
    server is shared, and the next test's workers must not place spaces on a
    worker that died without saying goodbye (killed, or its connection closed)."""
    if not worker_ids:
        return
    nc = await nats.connect(nats_url)
    try:
        kv = await nc.jetstream().key_value(WORKERS_BUCKET)
        for worker_id in worker_ids:
            with contextlib.suppress(Exception):
                await kv.purge(worker_id)
    except Exception:
        pass  # no bucket: no worker got as far as announcing itself
    finally:
        await nc.close()


def forget_workers(nats_url: str, procs: list[EngramProcess]) -> None:
    """:func:`purge_heartbeats` of killed worker processes (from a sync fixture)."""
    ids = [p.env["ENGRAM_WORKER_ID"] for p in procs if p.role == "worker"]
    # in a thread of its own: the test's event loop may still be running here
    thread = threading.Thread(target=asyncio.run, args=(purge_heartbeats(nats_url, ids),))
    thread.start()
    thread.join(30)


def wait_ready(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/ready", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout}s")


# -- vectors ---------------------------------------------------------------------------


def random_unit(dim: int, seed: int) -> list[float]:
    """A random unit vector, the same for the same seed (as a JSON-ready list)."""
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return [float(x) for x in v / np.linalg.norm(v)]


# -- agents on NATS --------------------------------------------------------------------


async def remember_over_nats(nc: Nats, space: str, memory: dict[str, Any], **extra: Any) -> int:
    """Publish a ``remember`` straight into the space's WAL; returns its seq."""
    cid = uuid.uuid4().hex
    body = {"schema_version": 1, "command_id": cid, "memory": memory, **extra}
    ack = await nc.jetstream().publish(
        f"spaces.{space}.remember", json.dumps(body).encode(), headers={"Nats-Msg-Id": cid}
    )
    return int(ack.seq)


async def query_over_nats(nc: Nats, space: str, query: str, body: dict[str, Any]) -> dict[str, Any]:
    """Ask the worker ``spaces.<space>.q.<query>`` over NATS request/reply."""
    # a worker that has just subscribed can miss a request by a few ms ("no
    # responders"): answer it as a client honouring Retry-After would, by retrying
    for delay in (0.02, 0.05, 0.1, 0.2, 0.4, 0.8, 0.0):
        try:
            msg = await nc.request(
                f"spaces.{space}.q.{query}", json.dumps(body).encode(), timeout=10
            )
            break
        except nats.errors.NoRespondersError:
            if not delay:
                raise
            await asyncio.sleep(delay)
    result: dict[str, Any] = json.loads(msg.data)
    return result


class EventRecorder:
    """Records the events of a NATS subscription (``cb=recorder.handle``)."""

    def __init__(self) -> None:
        self.items: list[tuple[str, dict[str, Any]]] = []
        self.changed = asyncio.Event()

    async def handle(self, msg: Msg) -> None:
        self.items.append((msg.subject, json.loads(msg.data)))
        self.changed.set()

    async def wait_for(self, n: int, timeout: float = 10) -> None:
        async with asyncio.timeout(timeout):
            while len(self.items) < n:
                self.changed.clear()
                await self.changed.wait()


# -- bytes in the file store -----------------------------------------------------------


def files_containing(store: Path, marker: bytes) -> list[Path]:
    """The files under nats-server's store dir that hold ``marker``."""
    return [p for p in store.rglob("*") if p.is_file() and marker in p.read_bytes()]


async def wait_gone_from_disk(store: Path, marker: bytes, attempts: int = 100) -> None:
    """The erase happens after the fold, asynchronously: poll the files (≤ 10 s)."""
    for _ in range(attempts):
        found = files_containing(store, marker)
        if not found:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{marker!r} still on disk in {found}")


async def wait_on_disk(store: Path, marker: bytes, attempts: int = 100) -> list[Path]:
    """The file store writes its blocks a moment after the PubAck: poll the files
    (≤ 10 s) until ``marker`` is in one (a precondition of the erase tests)."""
    for _ in range(attempts):
        found = files_containing(store, marker)
        if found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"{marker!r} never reached the files under {store}")


# -- spaces and memories over HTTP -----------------------------------------------------

#: no derived links: only what a test links explicitly connects memories
NO_DERIVED_LINKS = {"semantic_k": 0, "temporal_window_s": 0}


def basis(i: int, dim: int = DIM) -> list[float]:
    """The i-th unit vector: basis vectors are pairwise dissimilar (cosine 0)."""
    return [1.0 if j == i else 0.0 for j in range(dim)]


def weighted_sum(*parts: tuple[float, list[float]]) -> list[float]:
    """A weighted sum of vectors."""
    return [sum(w * v[j] for w, v in parts) for j in range(DIM)]


async def last_wal_seq(nc: Nats, space: str) -> int:
    """The last sequence in ``space``'s WAL."""
    info = await nc.jetstream().stream_info(stream_name(space))
    return int(info.state.last_seq)


async def eventually(probe: Callable[[], Awaitable[T | None]], timeout: float = 10.0) -> T:
    """Poll ``probe`` until it returns something other than ``None``."""
    deadline = time.monotonic() + timeout
    while True:
        found = await probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met in {timeout}s")
        await asyncio.sleep(0.05)


async def create_space_over_http(client: Client, space: str, **settings: Any) -> None:
    """POST /api/v1/spaces (dim DIM): the gateway creates the space, 201."""
    r = await client.post("/api/v1/spaces", json={"id": space, "dim": DIM, **settings})
    assert r.status_code == 201, r.text


async def store_vectors(client: Client, space: str, vectors: dict[str, list[float]]) -> int:
    """Remember one memory per id (content = the id); returns the last seq."""
    r = await client.post(
        f"/api/v1/spaces/{space}/memories",
        json={
            "memories": [
                {"id": mid, "content": f"memory {mid}", "embedding": vec}
                for mid, vec in vectors.items()
            ]
        },
    )
    assert r.status_code == 202, r.text
    seq: int = r.json()["seq"]
    return seq


def result_ids(results: list[Any]) -> list[str]:
    """The memory ids of a recall's results, in order."""
    return [x["memory"]["id"] for x in results]


async def post_link(client: Client, space: str, **body: Any) -> httpx.Response:
    """POST …/links with ``body``; the response, unchecked."""
    return await client.post(f"/api/v1/spaces/{space}/links", json=body)


# -- spaces and memories straight on NATS (registry, WAL, queries) ---------------------


async def register_space(nc: Nats, space: str) -> None:
    """Put the space (dim DIM) into the registry directly, as the gateway would,
    without a gateway (create_space_over_http goes through one)."""
    registry = SpaceRegistry(nc.jetstream())
    await registry.open()
    await registry.create_or_get(space, dim=DIM)


async def publish_remembers(nc: Nats, space: str, ids: range, content: str = "memory {i}") -> int:
    """Publish one remember per id (pipelined); returns the last seq."""
    js = nc.jetstream()
    acks = []
    for i in ids:
        body = {
            "schema_version": 1,
            "command_id": f"{space}-c{i}",
            "memory": {
                "id": f"m{i}",
                "content": content.format(i=i),
                "embedding_b64": encode_embedding(
                    np.asarray(random_unit(DIM, i), dtype=np.float32)
                ),
            },
        }
        acks.append(
            await js.publish_async(
                f"spaces.{space}.remember",
                json.dumps(body).encode(),
                headers={"Nats-Msg-Id": body["command_id"]},
            )
        )
    return max(int(a.seq) for a in await asyncio.gather(*acks))


async def similar_ids_over_nats(
    nc: Nats, space: str, seed: int, min_seq: int, k: int = 3
) -> list[str]:
    reply = await query_over_nats(
        nc,
        space,
        "recall",
        # a probe: reinforce=false writes nothing into the WAL the tests count; by
        # similarity, which memories stored later do not change (their links would)
        {
            "embedding": random_unit(DIM, seed),
            "k": k,
            "min_seq": min_seq,
            "reinforce": False,
            "mode": "similarity",
        },
    )
    assert "results" in reply, reply
    return [r["memory"]["id"] for r in reply["results"]]


# -- the gateway's view ----------------------------------------------------------------


async def wait_gateway_sees_space(client: Any, space: str) -> None:
    """The gateway learns of spaces from the registry watch: wait until it has."""
    for _ in range(100):
        if (await client.get(f"/api/v1/status?space={space}")).status_code == 200:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the gateway never saw space {space}")


# -- a data set for consolidation ------------------------------------------------------

CLUSTER = [f"c{i}" for i in range(4)]


#: semantic links only (temporal ones would tie every batch together)
CONSOLIDATION_SETTINGS: dict[str, Any] = {
    "links": {"temporal_window_s": 0},
    "consolidation": {"min_size": 3, "min_weight": 0.75},
}


FILLER_DIMS = (6, 7, 14, 15)


def member_cue(i: int) -> list[float]:
    """A cue similar to member i only (cosine 0.34); the semantic memory and the
    other members are at cosine 0 or below."""
    return weighted_sum((-0.125, basis(0)), (1.0, basis(8 + i)))


def consolidation_memories() -> dict[str, list[float]]:
    """Four memories around e0 (pairwise cosine 0.8: strongly linked), a similar pair
    around e5 (too few to consolidate), unrelated ones, and per member a filler
    slightly similar to that member's cue (its second seed, see member_cue)."""
    out = {mid: weighted_sum((1.0, basis(0)), (0.5, basis(8 + i))) for i, mid in enumerate(CLUSTER)}
    out |= {f"p{i}": weighted_sum((1.0, basis(5)), (0.1, basis(12 + i))) for i in range(2)}
    out |= {f"u{i}": basis(1 + i) for i in range(4)}
    for i, d in enumerate(FILLER_DIMS):
        cue = np.asarray(member_cue(i)) / np.linalg.norm(member_cue(i))
        out[f"f{i}"] = weighted_sum((0.05, cue.tolist()), (0.9975**0.5, basis(d)))
    return out


async def consolidate_over_http(client: Client, space: str, **body: Any) -> dict[str, Any]:
    url = f"/api/v1/spaces/{space}/consolidate"
    r = await (client.post(url, json=body) if body else client.post(url))
    assert r.status_code == 200, r.text
    reply: dict[str, Any] = r.json()
    return reply


# -- the fold, without I/O: states and raw WAL bodies ----------------------------------

SPACE = "alpha"


EPOCH = datetime(2025, 1, 1, tzinfo=UTC)


def empty_state(dim: int = 16, **links: Any) -> SpaceState:
    """A fresh, empty state of space ``alpha`` with the built-in embedder (and the
    given link settings)."""
    record = SpaceRecord(
        id=SPACE,
        dim=dim,
        embedder=HashNgramEmbedder.name,
        created_at=EPOCH,
        links=LinkSettings(**links),
    )
    return SpaceState(record, HashNgramEmbedder(dim))


def broker_time(seq: int) -> datetime:
    """The broker timestamp of stream message ``seq`` (one second apart)."""
    return EPOCH + timedelta(seconds=seq)


def json_bytes(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def remember_body(
    content: str = "a memory",
    *,
    memory_id: str | None = None,
    command_id: str = "cmd",
    embedding: Sequence[float] | np.ndarray | None = None,
    **memory_fields: Any,
) -> bytes:
    """A ``remember`` WAL body as a publisher would send it."""
    memory: dict[str, Any] = {"content": content, **memory_fields}
    if memory_id is not None:
        memory["id"] = memory_id
    if embedding is not None:
        memory["embedding"] = [float(x) for x in embedding]
    return json_bytes({"schema_version": 1, "command_id": command_id, "memory": memory})


def basis_array(dim: int, i: int, sign: float = 1.0) -> np.ndarray:
    """The unit vector along axis ``i``."""
    vec = np.zeros(dim, dtype=np.float32)
    vec[i] = sign
    return vec


def live_records(state: SpaceState) -> list[StoredMemory]:
    """Every live record in stream order."""
    recs, cursor = state.page(0, 10**6)
    assert cursor is None
    return recs


def live_ids(state: SpaceState) -> list[str]:
    return [rec.id for rec in live_records(state)]


def module_name(rel: Path) -> str:
    """``services/worker/engram_worker/core/state.py`` → ``engram_worker.core.state``;
    a file outside the engram packages keeps its path (``ops.bench.bench``)."""
    parts = list(rel.with_suffix("").parts)
    for i, part in enumerate(parts):
        if part.startswith("engram_"):
            parts = parts[i:]
            break
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)
