"""A reader/writer lock for one event loop: many readers at once, or one writer.

A space's queries read (several recalls search its index at once, each in a
thread); its fold steps and index inserts write. Waiters are served in arrival
order, and a waiting writer holds back the readers that come after it, so a
steady stream of recalls never starves the fold. ``async with lock:`` takes it
for writing; :meth:`downgrade` turns the writer into a reader at once (no
other writer gets in between).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator
from types import TracebackType


class RWLock:
    """Shared (:meth:`read`) or exclusive (:meth:`write`) access."""

    def __init__(self) -> None:
        self.readers = 0  # holding it now
        self.writing = False
        self._waiters: collections.deque[tuple[bool, asyncio.Future[None]]] = collections.deque()

    @property
    def idle(self) -> bool:
        """Nobody holds it and nobody waits: a writer that does not await may go
        ahead without acquiring it (no reader can start before it returns)."""
        return not self.writing and not self.readers and not self._waiters

    async def acquire_read(self) -> None:
        if not self.writing and not self._waiters:
            self.readers += 1  # no suspension: the caller keeps the loop
            return
        await self._wait(writer=False)

    async def acquire_write(self) -> None:
        if self.idle:
            self.writing = True
            return
        await self._wait(writer=True)

    def release_read(self) -> None:
        assert self.readers > 0, "release_read without a reader"
        self.readers -= 1
        self._wake()

    def release_write(self) -> None:
        assert self.writing, "release_write without the writer"
        self.writing = False
        self._wake()

    def downgrade(self) -> None:
        """The writer becomes a reader, atomically: a writer waiting meanwhile
        still waits (now for this reader too), and the readers queued ahead of
        the next waiting writer go in beside it."""
        assert self.writing, "downgrade without the writer"
        self.writing = False
        self.readers += 1
        self._wake()

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[None]:
        await self.acquire_read()
        try:
            yield
        finally:
            self.release_read()

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[None]:
        await self.acquire_write()
        try:
            yield
        finally:
            self.release_write()

    async def __aenter__(self) -> None:
        await self.acquire_write()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release_write()

    async def _wait(self, *, writer: bool) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (writer, fut)
        self._waiters.append(entry)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # granted as we were cancelled
                if writer:
                    self.release_write()
                else:
                    self.release_read()
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(entry)
                self._wake()  # a writer that gave up may have held readers back
            raise

    def _wake(self) -> None:
        """Grant the waiters at the head that can go now: one writer, or every
        reader up to the next writer."""
        while self._waiters and not self.writing:
            writer, fut = self._waiters[0]
            if fut.done():  # cancelled meanwhile
                self._waiters.popleft()
                continue
            if writer:
                if self.readers:
                    return
                self._waiters.popleft()
                self.writing = True
                fut.set_result(None)
                return
            self._waiters.popleft()
            self.readers += 1
            fut.set_result(None)
