"""The background secure-delete queue of one space: the WAL messages of forgotten
and replaced memories, erased from the stream (JetStream's message delete
overwrites the bytes on disk).

A background task deletes them ``ERASE_WINDOW`` at a time: JetStream's secure
delete is ~200/s here, so awaiting each in the fold held a bulk forget, and every
read after it, to that. Failures are kept (:meth:`EraseQueue.retry_failed` before
each snapshot) and a snapshot lists every seq still to erase, so a worker
starting from it erases them if this one does not get to.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time

from nats.js import JetStreamContext

from engram_contract.subjects import stream_name
from engram_nats.consumers import delete_msg

log = logging.getLogger(__name__)

#: WAL message deletes in flight at once per space, and most queued before the
#: fold waits for them
ERASE_WINDOW = 64
MAX_ERASE_QUEUE = 100_000


class EraseQueue:
    """WAL seqs to erase, oldest first; the ones being erased; the ones that failed."""

    def __init__(self, space: str, js: JetStreamContext) -> None:
        self.space = space
        self._js = js
        self._queue: collections.deque[int] = collections.deque()
        self._erasing: set[int] = set()
        self._failed: list[int] = []
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._active = True

    @property
    def active(self) -> bool:
        """Erasing (the space's primary host); a replica only queues: if it becomes
        the primary it erases what is left (already erased is simply not found)."""
        return self._active

    @active.setter
    def active(self, value: bool) -> None:
        self._active = value
        if value:
            self._wake.set()

    def start(self, left: list[int]) -> None:
        """Start erasing; ``left`` (what a snapshot says is still to erase) goes first."""
        self._queue.extend(left)
        self._task = asyncio.create_task(self._run())
        self._wake.set()

    async def stop(self, timeout: float) -> None:
        """Give the queue ``timeout`` seconds, then stop (what is left stays listed)."""
        await self.erased(timeout)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def put(self, seq: int) -> None:
        """Queue one erase. Bounded: past ``MAX_ERASE_QUEUE`` the caller (the fold)
        waits. Idempotent: an already erased message is simply not found."""
        self._queue.append(seq)
        self._wake.set()
        if not self._active:
            while len(self._queue) > MAX_ERASE_QUEUE:  # the primary erases these
                self._queue.popleft()
            return
        while len(self._queue) > MAX_ERASE_QUEUE:
            self._room.clear()
            await self._room.wait()

    async def _run(self) -> None:
        async def erase(seq: int) -> None:
            try:
                if not await self.erase(seq):
                    self._failed.append(seq)
            finally:
                self._erasing.discard(seq)

        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue and self._active:
                batch = [self._queue.popleft() for _ in range(min(ERASE_WINDOW, len(self._queue)))]
                self._erasing.update(batch)
                await asyncio.gather(*(erase(seq) for seq in batch))
                self._room.set()

    async def erase(self, seq: int) -> bool:
        """Erase one WAL message now; ``False`` (logged) when it failed."""
        try:
            # already gone is fine: erased before (a replay, or another replica)
            await delete_msg(self._js, stream_name(self.space), seq)
        except Exception as exc:
            log.error("space %s: could not erase seq %d (will retry): %r", self.space, seq, exc)
            return False
        return True

    async def retry_failed(self) -> None:
        for seq in list(self._failed):
            if await self.erase(seq):
                self._failed.remove(seq)

    async def erased(self, timeout: float) -> bool:
        """Wait until nothing is queued or being erased (``False`` on timeout)."""
        deadline = time.monotonic() + timeout
        while (self._queue and self._active) or self._erasing:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    @property
    def failed(self) -> bool:
        return bool(self._failed)

    @property
    def backlog(self) -> int:
        """How many WAL messages are still to erase (queued, in flight, failed)."""
        return len(self._queue) + len(self._erasing) + len(self._failed)

    def pending(self) -> list[int]:
        """Seqs still to erase: failed, queued and in flight (a snapshot lists them)."""
        return sorted({*self._failed, *self._queue, *self._erasing})
