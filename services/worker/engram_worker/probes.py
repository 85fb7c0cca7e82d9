"""The worker's probes: ``/metrics`` (Prometheus), ``/health`` (the worker's NATS
connection and subscriptions are up) and ``/ready`` (caught up and serving), as a
small Litestar app served by uvicorn in the worker's event loop, and the answers
it serves (:class:`Probes`), with the per-space gauges they refresh."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Protocol

import uvicorn
from litestar import Litestar, MediaType, Response, get
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from engram_worker.metrics import OTHER

if TYPE_CHECKING:
    from engram_worker.worker import Worker

log = logging.getLogger(__name__)
#: seconds between two refreshes of the per-space gauges (each scrape refreshes too)
METRICS_REFRESH = 5.0


class Probed(Protocol):
    """What the probe app serves (:class:`Probes`)."""

    def health(self) -> tuple[bool, dict[str, Any]]: ...

    def readiness(self) -> tuple[bool, dict[str, Any]]: ...

    def metrics_text(self) -> bytes: ...


class Probes:
    """The worker's answers to the probes, and its per-space gauges."""

    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    def refresh_gauges(self) -> None:
        """Set the per-space gauges from the hosted spaces. Spaces past the label
        cap share ``__other__``: their memories, lag, index bytes and erase backlog add up, the
        applied seq and snapshot age are the largest."""
        m, now = self._worker.metrics, time.time()
        totals: dict[str, list[float]] = {}
        for space, host in list(self._worker.hosting.hosts.items()):
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

    async def metrics_loop(self) -> None:
        """Refresh the gauges every :data:`METRICS_REFRESH` seconds."""
        while True:
            try:
                self.refresh_gauges()
            except Exception:
                log.exception("refreshing the metrics failed")
            await asyncio.sleep(METRICS_REFRESH)

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Alive: the NATS connection is up and the worker's subscriptions (queries,
        control) exist; else why not."""
        w = self._worker
        problems = []
        if not w.connected:
            problems.append("not connected to NATS")
        if not w.subscriptions:
            problems.append("not subscribed to queries yet")
        # nats-py marks a subscription closed on unsubscribe, drain and connection close
        elif any(getattr(sub, "_closed", False) for sub in w.subscriptions):
            problems.append("a subscription is closed")
        if problems:
            return False, {"status": "unhealthy", "problems": problems}
        return True, {"status": "ok"}

    def metrics_text(self) -> bytes:
        """The Prometheus exposition of the worker's metrics, gauges refreshed."""
        self.refresh_gauges()
        return generate_latest(self._worker.metrics.registry)

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready: NATS connected, the registry loaded, its spaces hosted and none
        stuck. A space catching up (replaying) is listed under ``behind`` with its
        lag and does not make the worker unready; one behind whose fold has not
        moved for ``stuck_after`` seconds is listed under ``stuck`` and does."""
        w, hosting = self._worker, self._worker.hosting
        nats_ok = w.connected
        registry_ok = w.registry_loaded
        now = time.monotonic()
        behind: dict[str, int] = {}
        stuck: dict[str, dict[str, float]] = {}
        for sid, h in sorted(hosting.hosts.items()):
            lag = h.wal.wal_lag
            if lag <= 0:
                continue
            behind[sid] = lag
            idle = now - h.wal.progress_at
            if idle > w.settings.stuck_after:
                stuck[sid] = {"lag": lag, "no_progress_s": round(idle, 1)}
        ok = nats_ok and registry_ok and w.loaded and not stuck
        body: dict[str, Any] = {
            "status": "ready" if ok else "not ready",
            "worker": w.settings.worker_id,
            "nats_connected": nats_ok,
            "registry_loaded": registry_ok,
            "spaces_loaded": w.loaded,
            "hosted": len(hosting.hosts),
            "behind": behind,
            "stuck": stuck,
            "loading": sorted(hosting.loading),
            "failed": dict(sorted(hosting.failed.items())),
        }
        return ok, body


def probe_app(worker: Probed) -> Litestar:
    """``GET /metrics``, ``/health`` and ``/ready`` of ``worker``."""

    @get("/metrics", media_type=CONTENT_TYPE_LATEST, sync_to_thread=False)
    def metrics() -> Response[bytes]:
        return Response(worker.metrics_text(), media_type=CONTENT_TYPE_LATEST)

    @get("/health", sync_to_thread=False)
    def health() -> Response[dict[str, Any]]:
        ok, body = worker.health()
        return Response(body, status_code=200 if ok else 503, media_type=MediaType.JSON)

    @get("/ready", sync_to_thread=False)
    def ready() -> Response[dict[str, Any]]:
        ok, body = worker.readiness()
        return Response(body, status_code=200 if ok else 503, media_type=MediaType.JSON)

    return Litestar([metrics, health, ready], openapi_config=None)


class _Server(uvicorn.Server):
    """uvicorn inside the worker's loop: the worker owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class ProbeServer:
    """Serves :func:`probe_app` on ``host:port`` until :meth:`stop`."""

    def __init__(self, worker: Probed) -> None:
        self._worker = worker
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._sock: socket.socket | None = None

    @property
    def port(self) -> int | None:
        """The port served on (``None``: not serving)."""
        if self._sock is None:
            return None
        return int(self._sock.getsockname()[1])

    async def start(self, host: str, port: int) -> bool:
        """Bind and serve; ``False`` (logged) when the port cannot be bound: the
        worker still serves its spaces."""
        try:
            # bound here, not by uvicorn, which exits the process when it cannot bind
            sock = socket.create_server((host, port), reuse_port=False)
        except OSError as exc:
            log.error("cannot serve /metrics on %s:%d: %s", host, port, exc)
            return False
        config = uvicorn.Config(
            probe_app(self._worker), log_level="warning", lifespan="off", access_log=False
        )
        self._server = _Server(config)
        self._sock = sock
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():  # it failed to start: say why, keep going without it
                failure = None if self._task.cancelled() else self._task.exception()
                log.error("cannot serve /metrics on %s:%d: %r", host, port, failure)
                await self.stop()
                return False
            await asyncio.sleep(0.01)
        return True

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._task, 5.0)
        if self._sock is not None:
            self._sock.close()
        self._server = self._task = self._sock = None
