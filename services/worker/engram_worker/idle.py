"""Cold spaces: served here but not held in memory.

With ``ENGRAM_SPACE_IDLE_UNLOAD`` set, a space with no query and no write for
that many seconds is unloaded (its primary writes a snapshot first) and becomes
*cold*; so does a space newly placed here, which is not loaded until it is used.
A cold space stays subscribed to its queries — the next one loads it (snapshot +
WAL tail) and is answered once it has caught up — and to its commands on core
NATS (``spaces.<id>.*``), so the next write loads it too. A worker's memory then
follows its active spaces, not all the spaces placed on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from engram_contract.subjects import command_wildcard

if TYPE_CHECKING:
    from engram_worker.placement import Placement

log = logging.getLogger(__name__)


class IdleSpaces:
    """The cold spaces of one worker, and the loop that makes idle ones cold."""

    def __init__(self, placement: Placement, after: float) -> None:
        self._placement = placement
        self.after = after  # seconds without use; 0: never unload
        self._wakers: dict[str, Subscription] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self.after > 0

    @property
    def cold(self) -> set[str]:
        """Spaces served here and not loaded."""
        return set(self._wakers)

    def start(self) -> None:
        if self.enabled:
            self._task = asyncio.create_task(self._run(), name="idle-unload")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for space in list(self._wakers):
            await self.unpark(space)

    async def park(self, space: str) -> None:
        """``space`` is cold: the next write to it loads it."""
        if space in self._wakers:
            return
        w = self._placement.worker

        async def on_write(_: Msg) -> None:
            if space in self._wakers:
                await self.unpark(space)
                await w.hosting.load_quietly(space)

        self._wakers[space] = await w.nc.subscribe(command_wildcard(space), cb=on_write)

    async def unpark(self, space: str) -> None:
        """``space`` is loaded again (or no longer served here)."""
        sub = self._wakers.pop(space, None)
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _run(self) -> None:
        tick = min(max(self.after / 4, 0.05), 5.0)
        while True:
            await asyncio.sleep(tick)
            try:
                await self.unload_idle()
            except Exception:
                log.exception("idle unload failed")

    async def unload_idle(self, now: float | None = None) -> list[str]:
        """Unload the served spaces unused for :attr:`after` seconds; their ids."""
        now = time.monotonic() if now is None else now
        p = self._placement
        hosting = p.worker.hosting
        idle = [
            space
            for space, host in hosting.hosts.items()
            if space in p.serving
            and not p.moving(space)
            and host.in_use == 0
            and now - host.last_used >= self.after
        ]
        for space in idle:
            host = hosting.hosts.get(space)
            if host is None or host.in_use or now - host.last_used < self.after:
                continue  # used meanwhile
            await hosting.unload(space)
            await self.park(space)  # a write from here on loads it again
            log.info("space %s: idle for %.0f s, unloaded (cold)", space, now - host.last_used)
        return idle
