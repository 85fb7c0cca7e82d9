"""The worker's composition root: connects, hosts spaces (:mod:`engram_worker.hosting`),
answers their queries, the control subjects and the probes
(:mod:`engram_worker.probes`)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import time
from collections.abc import Coroutine
from typing import Any, cast, get_args

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from prometheus_client import CollectorRegistry

from engram_contract.messages import error_reply
from engram_contract.settings import WorkerSettings
from engram_contract.subjects import (
    RELOAD_SUBJECT,
    STATUS_SUBJECT,
    QueryName,
    serving_subject,
)
from engram_nats.connection import connect
from engram_nats.membership import Membership
from engram_nats.registry import SpaceRegistry
from engram_worker.control import on_reload, on_serving, on_status, on_stream_deleted
from engram_worker.host import SpaceHost
from engram_worker.hosting import Hosting
from engram_worker.metrics import worker_metrics
from engram_worker.placement import Placement
from engram_worker.probes import Probes, ProbeServer
from engram_worker.queries import QueryFailed, answer, recall_now
from engram_worker.snapshots import SnapshotStore

log = logging.getLogger(__name__)
_QUERIES = frozenset(get_args(QueryName))


class StartSteps:
    """Where a worker's start went, for its log: seconds from the process's start
    (Python and the imports) to :meth:`Worker.start`, and of each step after."""

    def __init__(self) -> None:
        self._last = time.perf_counter()
        age = process_age()
        self._steps: list[tuple[str, float]] = [] if age is None else [("process", age)]

    def mark(self, step: str) -> None:
        now = time.perf_counter()
        self._steps.append((step, now - self._last))
        self._last = now

    def __str__(self) -> str:
        total = sum(s for _, s in self._steps)
        parts = ", ".join(f"{name} {s:.3f}" for name, s in self._steps)
        return f"{total:.2f} s ({parts}; CPU {time.process_time():.2f} s)"


def process_age() -> float | None:
    """Seconds since this process started (``None`` without ``/proc``)."""
    try:
        with open("/proc/self/stat") as f:
            started = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, uptime - started / os.sysconf("SC_CLK_TCK"))


class Worker:
    """Hosts the active spaces placed on it (:mod:`engram_worker.placement`)."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self._nc: Client | None = None
        self._registry: SpaceRegistry | None = None
        self._placement: Placement | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._query_slots = asyncio.Semaphore(settings.query_concurrency)
        #: queries received and not yet answered (a recall alone answers inline, see
        #: queries.recall)
        self.queries_in_flight = 0
        self._no_queries = asyncio.Event()  # set when queries_in_flight drops to 0
        self._snapshots: SnapshotStore | None = None
        self.metrics = worker_metrics(CollectorRegistry(), settings.max_metric_spaces)
        self.hosting = Hosting(self)
        self.probes = Probes(self)
        self._probe_server = ProbeServer(self.probes)
        self.subscriptions: list[Subscription] = []  # queries and control, once started
        self.loaded = False  # start() has hosted the registry's spaces
        self.stopped = False  # stop() was called

    # -- wiring ------------------------------------------------------------

    async def on_query(self, msg: Msg) -> None:
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
        if name == "recall" and not self.queries_in_flight:
            # alone and nothing to wait for: answered right here (queries.recall_now)
            host = self.hosting.hosts.get(space)
            now = None if host is None else recall_now(self, host, msg.data)
            if now is not None:
                await respond(self.nc, msg, space, name, now)
                return

        async def answer_later() -> None:
            try:
                async with self._query_slots:
                    reply = await self.handle(space, name, msg.data)
                    await respond(self.nc, msg, space, name, reply)
            finally:
                self.queries_in_flight -= 1
                if not self.queries_in_flight:
                    self._no_queries.set()

        # counted from arrival: queries waiting for their turn count too, so a
        # recall knows when others are queued behind it (queries.recall)
        self.queries_in_flight += 1
        self._no_queries.clear()
        self._spawn(answer_later())

    @property
    def reply_budget(self) -> int:
        """The largest reply body that fits in one NATS message."""
        return self.nc.max_payload - 4096  # room for the reply's headers

    @property
    def registry(self) -> SpaceRegistry:
        assert self._registry is not None, "Worker.start() first"
        return self._registry

    @property
    def placement(self) -> Placement:
        assert self._placement is not None, "Worker.start() first"
        return self._placement

    @property
    def snapshots(self) -> SnapshotStore:
        assert self._snapshots is not None, "Worker.start() first"
        return self._snapshots

    @property
    def nc(self) -> Client:
        assert self._nc is not None, "Worker.start() first"
        return self._nc

    @property
    def connected(self) -> bool:
        """Connected to NATS (:meth:`start` connects)."""
        return self._nc is not None and bool(self._nc.is_connected)

    @property
    def registry_loaded(self) -> bool:
        """The registry's current state is in (:meth:`start` waits for it)."""
        return self._registry is not None and self._registry.loaded.is_set()

    @property
    def hosts(self) -> dict[str, SpaceHost]:
        """The hosted spaces (:attr:`Hosting.hosts`)."""
        return self.hosting.hosts

    @property
    def metrics_port(self) -> int | None:
        """The port /metrics, /health and /ready are served on (None: not served)."""
        return self._probe_server.port

    async def start(self) -> None:
        steps = StartSteps()
        if self.settings.metrics_port and await self._probe_server.start(
            self.settings.metrics_host, self.settings.metrics_port
        ):
            log.info(
                "worker %s: metrics on http://%s:%d/metrics",
                self.settings.worker_id,
                self.settings.metrics_host,
                self._probe_server.port,
            )
        self._nc = await connect(self.settings.nats_url, f"engram-worker-{self.settings.worker_id}")
        steps.mark("connect")
        js = self.nc.jetstream()
        self._registry = SpaceRegistry(js, replicas=self.settings.stream_replicas)
        self._snapshots = SnapshotStore(js, replicas=self.settings.stream_replicas)
        await asyncio.gather(self.registry.open(), self.snapshots.open())
        self.registry.on_change(self.hosting.on_registry_change)
        await self.registry.start_watch()
        await self.registry.wait_loaded()
        steps.mark("registry")
        membership = Membership(
            js, ttl=self.settings.worker_ttl, replicas=self.settings.stream_replicas
        )
        await membership.start()
        await membership.announce(self.settings.worker_id)  # WorkerIdTaken: refuse to start
        self._placement = placement = Placement(self, membership)

        async def on_change(*_: object) -> None:
            placement.poke()

        self.registry.on_change(on_change)
        membership.on_change(on_change)
        steps.mark("membership")
        self.subscriptions = [
            await self.nc.subscribe(RELOAD_SUBJECT, cb=functools.partial(on_reload, self)),
            await self.nc.subscribe(STATUS_SUBJECT, cb=functools.partial(on_status, self)),
            await self.nc.subscribe(
                serving_subject(self.settings.worker_id), cb=functools.partial(on_serving, self)
            ),
            # a space's WAL stream deleted: by Engram's delete, or behind its back
            await self.nc.subscribe(
                "$JS.EVENT.ADVISORY.STREAM.DELETED.*",
                cb=functools.partial(on_stream_deleted, self),
            ),
        ]
        placement.start()
        # every space placed here is served (or failed) before start returns; a
        # membership that keeps changing (workers starting together) settles too
        await placement.settled(self.settings.handover_timeout)
        steps.mark("spaces")
        await self.nc.flush()  # ready means the server routes queries here
        self._spawn(self.snapshots.sweep_loop())
        self._spawn(self.probes.metrics_loop())
        self.loaded = True
        failed = self.hosting.failed
        log.info(
            "worker %s: hosting %d spaces%s; started in %s",
            self.settings.worker_id,
            len(self.hosts),
            f"; failed to load: {', '.join(sorted(failed))}" if failed else "",
            steps,
        )

    async def stop(self) -> None:
        """Graceful stop: every space is handed over to its next host before this
        worker lets go of it (make before break); the primaries write a snapshot
        of what changed."""
        if self.stopped:
            return
        self.stopped = True
        if self._placement is not None:
            await self.placement.membership.leave()
            await self.placement.leave()
            # handed over and unsubscribed: answer what arrived before that
            if self.queries_in_flight:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._no_queries.wait(), 5.0)
        if self._registry is not None:
            await self._registry.close()
        for task in list(self._background):
            task.cancel()
        await self._probe_server.stop()
        if self._placement is not None:
            await self.placement.stop()
            await self.placement.membership.depart()
            await self.placement.membership.close()
        await self.hosting.stop()
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.drain()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def handle(self, space: str, name: QueryName, data: bytes) -> bytes:
        """Answer one query; every failure becomes an ``{"error": …}`` reply."""
        try:
            host = await self.hosting.ensure_host(space)
            if self._placement is not None:
                await self._placement.idle.unpark(space)  # loaded: no longer cold
            await host.caught_up()  # loaded just now: answer from the whole WAL
        except QueryFailed as exc:
            return json.dumps(error_reply(exc.status, exc.title, exc.detail)).encode()
        host.in_use += 1
        try:
            return await answer(self, host, name, data)
        finally:
            host.in_use -= 1
            host.last_used = time.monotonic()


async def respond(nc: Client, msg: Msg, space: str, name: str, reply: bytes) -> None:
    """Send a query's reply (an error in its place when NATS cannot carry it)."""
    if len(reply) > nc.max_payload:
        log.warning(
            "space %s: %s answer of %d bytes is over max_payload (%d)",
            space,
            name,
            len(reply),
            nc.max_payload,
        )
        reply = json.dumps(
            error_reply(
                400,
                "Answer too large",
                f"the answer is {len(reply)} bytes, more than NATS carries in "
                f"one message ({nc.max_payload}); ask for fewer results "
                "(k, limit) or leave out embeddings",
            )
        ).encode()
    with contextlib.suppress(Exception):  # the requester may be gone
        await msg.respond(reply)


async def main(settings: WorkerSettings, stop: asyncio.Event | None = None) -> None:
    """Run a worker until ``stop`` is set (or SIGINT/SIGTERM)."""
    import signal

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    worker = Worker(settings)
    try:
        await worker.start()
    except BaseException:
        await worker.stop()
        raise
    print(f"engram worker {settings.worker_id} ready on {settings.nats_url}", flush=True)
    try:
        await stop.wait()
    finally:
        await worker.stop()
