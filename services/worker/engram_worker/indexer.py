"""The index lock of one hosted space and its background inserts.

Vectors are inserted into the usearch index in batches, in a thread under the
lock: when a batch is full or the consumer has nothing pending. Searches take the
same lock (:meth:`Indexer.with_index`), so the index is only ever touched by one
actor at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TypeVar

from engram_worker.core.indexing import FlushBatch
from engram_worker.core.state import SpaceState

log = logging.getLogger(__name__)
T = TypeVar("T")


class Indexer:
    """Inserts ``state()``'s pending vectors, ``batch`` per locked step."""

    def __init__(self, space: str, state: Callable[[], SpaceState], batch: int) -> None:
        self.space = space
        self._state = state
        self._batch = batch
        self.lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def kick(self) -> None:
        """Insert buffered vectors in the background while the fold goes on."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _loop(self) -> None:
        try:
            while self._state().pending:
                await self.flush()
        except Exception:
            log.exception("space %s: index insert failed", self.space)

    async def flush(self) -> None:
        """Insert buffered vectors, at most ``batch`` per locked step, so a query
        never waits behind one huge insert."""
        while self._state().pending:
            async with self.lock:
                batch = self._state().indexing.take(self._batch)
                if batch is not None:
                    await self.run(batch)

    async def run(self, batch: FlushBatch) -> None:
        """Insert a batch in a thread (call with the lock held). Cancel-safe: the
        caller keeps the lock until the thread is done with the index."""
        insert = asyncio.ensure_future(asyncio.to_thread(self._state().indexing.run, batch))
        try:
            await asyncio.shield(insert)
        except asyncio.CancelledError:
            await insert
            raise

    async def with_index(self, fn: Callable[[SpaceState], T]) -> T:
        """Run ``fn(state)`` with every applied vector indexed, under the index lock."""
        async with self.lock:
            state = self._state()
            batch = state.indexing.take()
            if batch is not None:
                await self.run(batch)
            # messages folded while the thread ran are inserted inline by fn's flush
            return fn(state)
