"""Whether a process's NATS connection can carry requests, and since when not.

nats-py reconnects forever and meanwhile buffers publishes and lets requests
wait for their own timeouts, so a gateway whose NATS is down used to hang every
request ~10 s and then blame the worker or the write. :class:`Liveness` watches
the connection: a request arriving while it is down waits for a reconnection at
most ``after`` seconds (a cluster node failing over reconnects well within
that), then gets ``503 NATS unavailable``; requests already waiting are cut at
the same moment (:meth:`Liveness.cut`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable
from typing import TypeVar

from nats.aio.client import Client

from engram_contract.errors import Unavailable

T = TypeVar("T")
#: how often the connection's state is looked at
POLL_S = 0.05
RETRY_AFTER = 2.0


def nats_unavailable(detail: str) -> Unavailable:
    return Unavailable(
        503,
        "NATS unavailable",
        detail,
        hint="Engram reconnects by itself; retry shortly (writes: with the same "
        "Idempotency-Key, nothing is stored twice).",
        retry_after=RETRY_AFTER,
    )


class Liveness:
    """Follows ``nc``'s connection state (a task started by :meth:`start`)."""

    def __init__(self, nc: Client, after: float) -> None:
        self.nc = nc
        self.after = after
        self.down_since: float | None = None
        self._down_long = asyncio.Event()  # set once down for ``after`` seconds
        self._up = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._look()
        self._task = asyncio.create_task(self._watch(), name="nats-liveness")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _look(self) -> None:
        now = time.monotonic()
        if self.nc.is_connected:
            self.down_since = None
            self._down_long.clear()
            self._up.set()
            return
        self._up.clear()
        if self.down_since is None:
            self.down_since = now
        if now - self.down_since >= self.after:
            self._down_long.set()

    async def _watch(self) -> None:
        while True:
            self._look()
            await asyncio.sleep(POLL_S)

    def down_for(self) -> float:
        return 0.0 if self.down_since is None else time.monotonic() - self.down_since

    async def usable(self) -> None:
        """Return at once while connected; while not, wait for a reconnection
        until the connection has been down ``after`` seconds, then raise 503."""
        self._look()
        if self.down_since is None:
            return
        left = self.after - self.down_for()
        if left > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._up.wait(), left)
            if self.nc.is_connected:
                return
        raise nats_unavailable(
            f"the gateway has had no NATS connection for {self.down_for():.1f} s"
        )

    async def cut(self, call: Awaitable[T], what: str) -> T:
        """``call``'s result, or 503 as soon as the connection has been down
        ``after`` seconds (``what`` says what was cut short)."""
        task = asyncio.ensure_future(call)
        if self._down_long.is_set():
            task.cancel()
            raise nats_unavailable(f"no NATS connection: {what} was not done")
        down = asyncio.ensure_future(self._down_long.wait())
        try:
            await asyncio.wait({task, down}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                return task.result()
            raise nats_unavailable(
                f"the NATS connection was lost for {self.down_for():.1f} s: {what}"
            )
        finally:
            down.cancel()
            if not task.done():
                task.cancel()
