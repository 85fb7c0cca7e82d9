"""The worker's probes: ``/metrics`` (Prometheus), ``/health`` (the worker's NATS
connection and subscriptions are up) and ``/ready`` (caught up and serving), as a
small Litestar app served by uvicorn in the worker's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Generator
from typing import Any, Protocol

import uvicorn
from litestar import Litestar, MediaType, Response, get
from prometheus_client import CONTENT_TYPE_LATEST

log = logging.getLogger(__name__)


class Probed(Protocol):
    """What the probes ask of the worker."""

    def health(self) -> tuple[bool, dict[str, Any]]: ...

    def readiness(self) -> tuple[bool, dict[str, Any]]: ...

    def metrics_text(self) -> bytes: ...


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
