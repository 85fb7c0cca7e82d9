"""The worker's composition root: hosts spaces and answers their queries."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import Coroutine
from typing import Any, cast, get_args

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from prometheus_client import CollectorRegistry, generate_latest

from engram_contract.messages import (
    SpaceRecord,
    error_reply,
)
from engram_contract.settings import WorkerSettings
from engram_contract.subjects import QUERY_QUEUE, RELOAD_SUBJECT, STATUS_SUBJECT, QueryName
from engram_nats.connection import connect
from engram_nats.registry import SpaceRegistry
from engram_nats.streams import purge_events
from engram_worker.control import on_reload, on_status
from engram_worker.host import SpaceHost
from engram_worker.metrics import OTHER, worker_metrics
from engram_worker.probes import ProbeServer
from engram_worker.queries import QueryFailed, answer
from engram_worker.snapshots import SnapshotStore

log = logging.getLogger(__name__)
_QUERIES = frozenset(get_args(QueryName))
#: spaces loaded (snapshot restored, WAL consumer created) at the same time
MAX_LOADING = 16
#: seconds between two refreshes of the per-space gauges (each scrape refreshes too)
METRICS_REFRESH = 5.0


class Worker:
    """Hosts every active space in the registry (sharding comes with more workers)."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.hosts: dict[str, SpaceHost] = {}
        self._loading: dict[str, asyncio.Task[SpaceHost]] = {}
        self._start_slots = asyncio.Semaphore(MAX_LOADING)
        self._nc: Client | None = None
        self._registry: SpaceRegistry | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._query_slots = asyncio.Semaphore(settings.query_concurrency)
        self._snapshots: SnapshotStore | None = None
        self.failed: dict[str, str] = {}  # spaces that could not be loaded, and why
        self.metrics = worker_metrics(CollectorRegistry(), settings.max_metric_spaces)
        self._probes = ProbeServer(self)
        self._subs: list[Subscription] = []
        self._loaded = False  # start() has hosted the registry's spaces

    # -- wiring ------------------------------------------------------------

    async def _on_query(self, msg: Msg) -> None:
        """``spaces.<id>.q.<name>``: answer in a task of its own (bounded), so a query
        waiting for its ``min_seq`` never holds up the others."""
        parts = msg.subject.split(".")
        if not msg.reply:
            return
        if len(parts) != 4 or parts[3] not in _QUERIES:
            known = ", ".join(sorted(_QUERIES))
            reply = error_reply(404, "Unknown query", f"{msg.subject!r}: known queries: {known}")
            with contextlib.suppress(Exception):
                await msg.respond(json.dumps(reply).encode())
            return
        space, name = parts[1], cast(QueryName, parts[3])

        async def respond() -> None:
            async with self._query_slots:
                reply = await self.handle(space, name, msg.data)
                if len(reply) > self.nc.max_payload:
                    log.warning(
                        "space %s: %s answer of %d bytes is over max_payload (%d)",
                        space,
                        name,
                        len(reply),
                        self.nc.max_payload,
                    )
                    reply = json.dumps(
                        error_reply(
                            400,
                            "Answer too large",
                            f"the answer is {len(reply)} bytes, more than NATS carries in "
                            f"one message ({self.nc.max_payload}); ask for fewer results "
                            "(k, limit) or leave out embeddings",
                        )
                    ).encode()
                with contextlib.suppress(Exception):  # the requester may be gone
                    await msg.respond(reply)

        task = asyncio.create_task(respond())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @property
    def reply_budget(self) -> int:
        """The largest reply body that fits in one NATS message."""
        return self.nc.max_payload - 4096  # room for the reply's headers

    @property
    def registry(self) -> SpaceRegistry:
        assert self._registry is not None, "Worker.start() first"
        return self._registry

    @property
    def snapshots(self) -> SnapshotStore:
        assert self._snapshots is not None, "Worker.start() first"
        return self._snapshots

    @property
    def nc(self) -> Client:
        assert self._nc is not None, "Worker.start() first"
        return self._nc

    @property
    def metrics_port(self) -> int | None:
        """The port /metrics, /health and /ready are served on (None: not served)."""
        return self._probes.port

    async def start(self) -> None:
        if self.settings.metrics_port and await self._probes.start(
            self.settings.metrics_host, self.settings.metrics_port
        ):
            log.info(
                "worker %s: metrics on http://%s:%d/metrics",
                self.settings.worker_id,
                self.settings.metrics_host,
                self._probes.port,
            )
        self._nc = await connect(self.settings.nats_url, f"engram-worker-{self.settings.worker_id}")
        js = self.nc.jetstream()
        self._registry = SpaceRegistry(js, replicas=self.settings.stream_replicas)
        await self.registry.open()
        self._snapshots = SnapshotStore(js, replicas=self.settings.stream_replicas)
        await self.snapshots.open()
        self.registry.on_change(self._on_registry_change)
        await self.registry.start_watch()
        await self.registry.wait_loaded()
        # one space's broken snapshot or stream never keeps the others from loading
        await asyncio.gather(
            *(self._host_quietly(rec.id) for rec in self.registry.cached_all()),
        )
        # plain nats-py: a FastStream subscriber added ~0.6 ms to every query here
        self._subs = [
            await self.nc.subscribe("spaces.*.q.*", queue=QUERY_QUEUE, cb=self._on_query),
            await self.nc.subscribe(RELOAD_SUBJECT, cb=functools.partial(on_reload, self)),
            await self.nc.subscribe(STATUS_SUBJECT, cb=functools.partial(on_status, self)),
        ]
        await self.nc.flush()  # ready means the server routes queries here
        self._spawn(self._sweep_loop())
        self._spawn(self._metrics_loop())
        self._loaded = True
        log.info(
            "worker %s: hosting %d spaces%s",
            self.settings.worker_id,
            len(self.hosts),
            f"; failed to load: {', '.join(sorted(self.failed))}" if self.failed else "",
        )

    async def stop(self) -> None:
        """Graceful stop: every hosted space writes a snapshot if it changed."""
        if self._registry is not None:
            await self._registry.close()
        for task in list(self._background):
            task.cancel()
        await self._probes.stop()
        hosts = list(self.hosts.values())
        self.hosts.clear()
        await asyncio.gather(*(h.stop(snapshot=True) for h in hosts), return_exceptions=True)
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.drain()

    async def _on_registry_change(self, space: str, rec: SpaceRecord | None) -> None:
        host = self.hosts.get(space)
        if host is not None and (
            rec is None or rec.status != "active" or rec.created_at != host.record.created_at
        ):
            # deleted, being deleted, or deleted and created again: drop the old state
            del self.hosts[space]
            host.retired = True
            await host.stop()
            host = None
            self.metrics.spaces.forget(space)  # a new incarnation starts from zero
        if rec is None or rec.status == "deleting":
            self.failed.pop(space, None)
            self.metrics.spaces.forget(space)
            try:
                await self.snapshots.erase(space)
            except Exception:
                log.exception("space %s: could not erase its snapshot", space)
            try:
                await purge_events(self.nc.jetstream(), space)
            except Exception:
                log.exception("space %s: could not purge its events", space)
        wanted = rec is not None and rec.status == "active"
        if wanted and host is None and space not in self._loading:
            self._spawn(self._host_quietly(space))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _host_quietly(self, space: str) -> None:
        with contextlib.suppress(QueryFailed):  # logged and kept in self.failed
            await self.ensure_host(space)

    async def _sweep_loop(self) -> None:
        """Erase snapshot chunks a crashed writer left behind, now and then."""
        while True:
            try:
                await self.snapshots.sweep(min_age=600)
            except Exception:
                log.exception("snapshot sweep failed")
            await asyncio.sleep(600)

    # -- metrics and probes ------------------------------------------------

    def refresh_gauges(self) -> None:
        """Set the per-space gauges from the hosted spaces. Spaces past the label
        cap share ``__other__``: their memories, lag, index bytes and erase backlog add up, the
        applied seq and snapshot age are the largest."""
        m, now = self.metrics, time.time()
        totals: dict[str, list[float]] = {}
        for space, host in list(self.hosts.items()):
            host.wal.drain_counts(m)
            label = m.spaces.label(space)
            age = (
                -1.0
                if host.snapshotter.snapshot_at is None
                else max(0.0, now - host.snapshotter.snapshot_at)
            )
            row = [
                len(host.state),
                host.state.applied_seq,
                host.wal.wal_lag,
                age,
                host.index_memory_bytes(),
                host.erase_queue.backlog,
            ]
            old = totals.get(label)
            if old is None or label != OTHER:
                totals[label] = [float(v) for v in row]
            else:
                totals[label] = [
                    old[0] + row[0],
                    max(old[1], row[1]),
                    old[2] + row[2],
                    max(old[3], row[3]),
                    old[4] + row[4],
                    old[5] + row[5],
                ]
        for label, (memories, applied, lag, age, index_bytes, erasing) in totals.items():
            m.spaces.gauge(m.memories, label).set(memories)
            m.spaces.gauge(m.applied_seq, label).set(applied)
            m.spaces.gauge(m.wal_lag, label).set(lag)
            if age >= 0:
                m.spaces.gauge(m.snapshot_age, label).set(age)
            m.spaces.gauge(m.index_bytes, label).set(index_bytes)
            m.spaces.gauge(m.erase_pending, label).set(erasing)

    async def _metrics_loop(self) -> None:
        while True:
            try:
                self.refresh_gauges()
            except Exception:
                log.exception("refreshing the metrics failed")
            await asyncio.sleep(METRICS_REFRESH)

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Alive: the NATS connection is up and the worker's subscriptions (queries,
        control) exist; else why not."""
        nc = self._nc
        problems = []
        if nc is None or not nc.is_connected:
            problems.append("not connected to NATS")
        if not self._subs:
            problems.append("not subscribed to queries yet")
        # nats-py marks a subscription closed on unsubscribe, drain and connection close
        elif any(getattr(sub, "_closed", False) for sub in self._subs):
            problems.append("a subscription is closed")
        if problems:
            return False, {"status": "unhealthy", "problems": problems}
        return True, {"status": "ok"}

    def metrics_text(self) -> bytes:
        """The Prometheus exposition of the worker's metrics, gauges refreshed."""
        self.refresh_gauges()
        return generate_latest(self.metrics.registry)

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready: NATS connected, the registry loaded, its spaces hosted and none
        stuck. A space catching up (replaying) is listed under ``behind`` with its
        lag and does not make the worker unready; one behind whose fold has not
        moved for ``stuck_after`` seconds is listed under ``stuck`` and does."""
        nats_ok = self._nc is not None and bool(self._nc.is_connected)
        registry_ok = self._registry is not None and self._registry.loaded.is_set()
        now = time.monotonic()
        behind: dict[str, int] = {}
        stuck: dict[str, dict[str, float]] = {}
        for sid, h in sorted(self.hosts.items()):
            lag = h.wal.wal_lag
            if lag <= 0:
                continue
            behind[sid] = lag
            idle = now - h.wal.progress_at
            if idle > self.settings.stuck_after:
                stuck[sid] = {"lag": lag, "no_progress_s": round(idle, 1)}
        ok = nats_ok and registry_ok and self._loaded and not stuck
        body: dict[str, Any] = {
            "status": "ready" if ok else "not ready",
            "worker": self.settings.worker_id,
            "nats_connected": nats_ok,
            "registry_loaded": registry_ok,
            "spaces_loaded": self._loaded,
            "hosted": len(self.hosts),
            "behind": behind,
            "stuck": stuck,
            "loading": sorted(self._loading),
            "failed": dict(sorted(self.failed.items())),
        }
        return ok, body

    async def handle(self, space: str, name: QueryName, data: bytes) -> bytes:
        """Answer one query; every failure becomes an ``{"error": …}`` reply."""
        try:
            host = await self.ensure_host(space)
        except QueryFailed as exc:
            return json.dumps(error_reply(exc.status, exc.title, exc.detail)).encode()
        return await answer(self, host, name, data)

    async def ensure_host(self, space: str) -> SpaceHost:
        """The host of ``space``, loading it first if needed (concurrent callers share
        one load). Raises :class:`QueryFailed` (404) for unknown spaces."""
        host = self.hosts.get(space)
        if host is not None:
            return host
        task = self._loading.get(space)
        if task is None:
            task = asyncio.create_task(self._load(space))
            self._loading[space] = task
            task.add_done_callback(lambda _: self._loading.pop(space, None))
        return await asyncio.shield(task)

    async def _load(self, space: str) -> SpaceHost:
        rec = self.registry.cached(space)
        if rec is None or rec.status != "active":
            # not known here, or a deleted space's record while the watcher has yet
            # to deliver its re-creation: the KV is the authority
            rec = await self.registry.get(space)
        if rec is None or rec.status != "active":
            raise QueryFailed(404, "Space not found", f"memory space {space!r} does not exist")
        try:
            host = await self.start_host(rec)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            self.failed[space] = reason
            log.error("space %s: failed to load: %s", space, reason)
            raise QueryFailed(
                503, "Space unavailable", f"memory space {space!r} failed to load: {reason}"
            ) from exc
        self.failed.pop(space, None)
        self.hosts[space] = host
        return host

    async def start_host(self, rec: SpaceRecord) -> SpaceHost:
        host = SpaceHost(rec, self.nc, self.nc.jetstream(), self.settings, self.snapshots)
        try:
            # a bounded number at once: each load reads its snapshot through a
            # consumer on the one snapshot stream, and a worker starting with
            # hundreds of spaces hit JetStream's consumer limit there
            async with self._start_slots:
                await host.start()
        except BaseException:
            await host.stop()
            raise
        return host


async def main(settings: WorkerSettings, stop: asyncio.Event | None = None) -> None:
    """Run a worker until ``stop`` is set (or SIGINT/SIGTERM)."""
    import signal

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    worker = Worker(settings)
    await worker.start()
    print(f"engram worker {settings.worker_id} ready on {settings.nats_url}", flush=True)
    try:
        await stop.wait()
    finally:
        await worker.stop()
