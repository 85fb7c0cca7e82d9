"""The index lock of one hosted space and its background inserts.

Vectors are inserted into the usearch index in batches, in a thread, holding the
index lock (:class:`~engram_worker.rwlock.RWLock`) for writing: when a batch is
full or the consumer has nothing pending. Queries hold it for reading
(:meth:`~engram_worker.host.SpaceHost.reading`), so several searches run at once
but never beside an insert. The fold does not take this lock (it only buffers
vectors): it takes the space's state lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TypeVar

from engram_worker.core.indexing import FlushBatch
from engram_worker.core.state import SpaceState
from engram_worker.rwlock import RWLock

log = logging.getLogger(__name__)
T = TypeVar("T")


class Indexer:
    """Inserts ``state()``'s pending vectors, ``batch`` per locked step."""

    def __init__(self, space: str, state: Callable[[], SpaceState], batch: int) -> None:
        self.space = space
        self._state = state
        self._batch = batch
        self.lock = RWLock()
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

    async def catch_up(self) -> None:
        """Index every vector folded so far and absorb the links found meanwhile
        (holding the lock for writing, only when there is something to do)."""
        if caught_up(self._state()):
            return
        async with self.lock:
            state = self._state()
            batch = state.indexing.take()
            if batch is not None:
                await self.run(batch)
            # what was folded while the thread ran is inserted inline, and the
            # links found are absorbed into the graph
            state.flush()
            _ = state.graph


def caught_up(state: SpaceState) -> bool:
    """Every applied vector is in the index and every link found is in the graph:
    a reader changes nothing by reading (``state.graph`` has nothing to absorb)."""
    ix = state.indexing
    return not (ix.pending or ix.stale or ix.derived or ix.inflight)
