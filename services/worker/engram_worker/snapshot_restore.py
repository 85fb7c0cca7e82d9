"""Restoring a snapshot while its chunks arrive (a :class:`~engram_worker.snapshots.Sink`
for :meth:`SnapshotStore.read <engram_worker.snapshots.SnapshotStore.read>`).

The event loop only receives the chunks; two threads of this restore do the
rest, side by side with it and with each other (:mod:`engram_worker.core.restoring`):

- the *read* thread copies each chunk into its section's buffer and hashes it
  (hashlib releases the GIL), handing on each section once it is whole and
  checked;
- the *decode* thread decodes those sections and, once the records' columns
  are in, builds the records and the graph — while the index's bytes, the
  last and largest section, are still arriving.

At the end the index is mapped from its checked bytes (a usearch view, copied
into an index of its own before its first change) and checked against the
records. Before, the whole object was read, then hashed again section by
section, decoded, the index restored and the records built, one after the
other (0.48 + 0.14 + 0.13 + 0.23 s at 100k).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable

from nats.js import api

from engram_worker.core.restoring import Restoring
from engram_worker.core.snapshot import Section, SnapshotHeader
from engram_worker.core.state import SpaceState


class RestoreSink:
    """One snapshot object on its way into ``state`` (a fresh state of the space)."""

    def __init__(
        self,
        info: api.ObjectInfo,
        check: Callable[[SnapshotHeader], str | None],
        state: SpaceState,
        started: float | None = None,
    ) -> None:
        t0 = time.perf_counter() if started is None else started
        self.restoring = Restoring(int(info.size or 0), check, lambda: time.perf_counter() - t0)
        self._state = state
        self._read = concurrent.futures.ThreadPoolExecutor(1, "snapshot-read")
        self._decode = concurrent.futures.ThreadPoolExecutor(1, "snapshot-decode")
        self._fed: concurrent.futures.Future[None] | None = None
        self._taken: concurrent.futures.Future[None] | None = None
        self._failed: BaseException | None = None  # the first error of either thread
        self.header: SnapshotHeader | None = None
        self.state: SpaceState | None = None  # restored, once end() returned

    def feed(self, chunk: bytes) -> None:
        if self._failed is not None:
            raise self._failed  # stops the read: the rest would not be used
        self._fed = self._read.submit(self._feed, chunk)

    def _feed(self, chunk: bytes) -> None:
        """In the read thread, chunk by chunk in order."""
        if self._failed is not None:
            return
        try:
            sections = self.restoring.feed(chunk)
        except BaseException as exc:
            self._failed = exc
            raise
        if sections:
            self._taken = self._decode.submit(self._take, sections)

    def _take(self, sections: list[tuple[Section, memoryview]]) -> None:
        """In the decode thread, in the order the read thread completed them."""
        if self._failed is not None:
            return
        try:
            self.restoring.take(sections)
        except BaseException as exc:
            self._failed = exc
            raise

    async def end(self) -> None:
        """Every chunk fed: wait for both threads, then map the index and hand the
        records to the state (in the decode thread). Raises what they raised."""
        if self._fed is not None:
            await asyncio.wrap_future(self._fed)
        if self._taken is not None:
            await asyncio.wrap_future(self._taken)
        if self._failed is not None:
            raise self._failed
        loop = asyncio.get_running_loop()
        state = self._state
        self.header, self.state = await loop.run_in_executor(
            self._decode, self.restoring.finish, lambda: state
        )

    def close(self) -> None:
        for pool in (self._read, self._decode):
            pool.shutdown(wait=False, cancel_futures=True)

    @property
    def times(self) -> dict[str, float]:
        """Seconds from the restore's start to the end of each step."""
        return self.restoring.times
