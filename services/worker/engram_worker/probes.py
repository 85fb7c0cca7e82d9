"""The worker's probes: ``/metrics`` (Prometheus), ``/health`` (the worker's NATS
connection and subscriptions are up) and ``/ready`` (caught up and serving), served
by a small HTTP/1.1 server in the worker's event loop (:class:`ProbeServer`), and
the answers it serves (:class:`Probes`), with the per-space gauges they refresh."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from typing import TYPE_CHECKING, Any, Protocol

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


_JSON = "application/json"
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
_REASONS |= {500: "Internal Server Error", 503: "Service Unavailable"}
#: seconds a kept-alive connection may sit idle, and a request may take to arrive whole
KEEP_ALIVE = 5.0
_MAX_HEADERS = 100
_MAX_LINE = 8192


def _json(status: int, body: dict[str, Any]) -> tuple[int, str, bytes]:
    return status, _JSON, json.dumps(body, separators=(",", ":")).encode()


def probe_answer(worker: Probed, method: str, path: str) -> tuple[int, str, bytes]:
    """``GET /metrics``, ``/health`` and ``/ready`` of ``worker``: (status, content
    type, body); 404 for any other path, 405 for a method other than GET or HEAD."""
    if path not in ("/metrics", "/health", "/ready"):
        return _json(404, {"status_code": 404, "detail": "Not Found"})
    if method not in ("GET", "HEAD"):
        return _json(405, {"status_code": 405, "detail": "Method Not Allowed"})
    if path == "/metrics":
        return 200, CONTENT_TYPE_LATEST, worker.metrics_text()
    ok, body = worker.health() if path == "/health" else worker.readiness()
    return _json(200 if ok else 503, body)


class _BadRequest(Exception):
    pass


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, bool] | None:
    """The next request's method, path and whether the connection stays open after
    it; ``None`` when the client closed the connection between requests."""
    line = await reader.readline()
    if not line:
        return None
    if not line.endswith(b"\n") or len(line) > _MAX_LINE:
        raise _BadRequest("request line too long or cut short")
    parts = line.decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _BadRequest("not an HTTP/1.x request line")
    method, target, version = parts
    length, connection = 0, ""
    for _ in range(_MAX_HEADERS + 1):
        header = await reader.readline()
        if header in (b"\r\n", b"\n"):
            break
        if not header.endswith(b"\n") or len(header) > _MAX_LINE:
            raise _BadRequest("header line too long or cut short")
        name, sep, value = header.decode("latin-1").partition(":")
        if not sep:
            raise _BadRequest("malformed header")
        name, value = name.strip().lower(), value.strip()
        if name == "content-length":
            if not value.isdigit():
                raise _BadRequest("bad content-length")
            length = int(value)
        elif name == "transfer-encoding":
            raise _BadRequest("a probe takes no request body")
        elif name == "connection":
            connection = value.lower()
    else:
        raise _BadRequest("too many headers")
    if length:
        if length > 1 << 20:
            raise _BadRequest("request body too large")
        await reader.readexactly(length)  # a probe takes no body: read past it
    keep = "keep-alive" in connection if version == "HTTP/1.0" else "close" not in connection
    return method, target.split("?", 1)[0], keep


def _response(status: int, content_type: str, body: bytes, *, head: bool, keep: bool) -> bytes:
    lines = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}",
        f"content-type: {content_type}",
        f"content-length: {len(body)}",
        f"connection: {'keep-alive' if keep else 'close'}",
    ]
    if status == 405:
        lines.append("allow: GET, HEAD")
    head_bytes = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head_bytes if head else head_bytes + body


class ProbeServer:
    """Serves the probes (:func:`probe_answer`) over HTTP/1.1 on ``host:port`` until
    :meth:`stop`: a small asyncio server in the worker's loop (three GET routes need
    no web framework, and the worker starts ~0.5 s sooner without one)."""

    def __init__(self, worker: Probed) -> None:
        self._worker = worker
        self._server: asyncio.Server | None = None
        self._sock: socket.socket | None = None
        self._connections: set[asyncio.StreamWriter] = set()

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
            sock = socket.create_server((host, port), reuse_port=False)
        except OSError as exc:
            log.error("cannot serve /metrics on %s:%d: %s", host, port, exc)
            return False
        try:
            self._server = await asyncio.start_server(self._serve, sock=sock, limit=_MAX_LINE * 2)
        except OSError as exc:
            sock.close()
            log.error("cannot serve /metrics on %s:%d: %r", host, port, exc)
            return False
        self._sock = sock
        return True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        try:
            while True:
                try:
                    async with asyncio.timeout(KEEP_ALIVE):
                        request = await _read_request(reader)
                except _BadRequest as exc:
                    body = json.dumps({"status_code": 400, "detail": str(exc)}).encode()
                    writer.write(_response(400, _JSON, body, head=False, keep=False))
                    await writer.drain()
                    return
                if request is None:
                    return
                method, path, keep = request
                try:
                    status, content_type, body = probe_answer(self._worker, method, path)
                except Exception:
                    log.exception("probe %s %s failed", method, path)
                    status, content_type, body = _json(
                        500, {"status_code": 500, "detail": "Internal Server Error"}
                    )
                writer.write(
                    _response(status, content_type, body, head=method == "HEAD", keep=keep)
                )
                await writer.drain()
                if not keep:
                    return
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, ValueError):
            return  # idle too long, gone, or cut short: nothing to answer
        finally:
            self._connections.discard(writer)
            writer.close()

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            for writer in list(self._connections):
                writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5.0)
        if self._sock is not None:
            self._sock.close()
        self._sock = None
