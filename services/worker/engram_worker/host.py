"""One ``SpaceHost`` per hosted space: the adapters around its pure state.

- :class:`~engram_worker.wal_consumer.WalConsumer` tails the space's WAL and
  hands each message to :meth:`SpaceHost.fold`, in order;
- :class:`~engram_worker.indexer.Indexer` holds the index lock and inserts
  vectors in batches, in a thread, while the fold goes on;
- two reader/writer locks (:class:`~engram_worker.rwlock.RWLock`) keep queries
  apart from changes: a query reads holding both (:meth:`SpaceHost.reading`),
  so recalls overlap one another (each in a thread, searching while the GIL is
  released); a fold step writes the state lock, an index insert the index lock.
- :class:`~engram_worker.erase_queue.EraseQueue` erases the WAL messages of
  forgotten and replaced memories in the background;
- :class:`~engram_worker.snapshotter.Snapshotter` restores the newest snapshot
  at start and writes new ones;
- :class:`~engram_worker.writeback.WriteBack` writes reinforce and consolidate
  commands back into the WAL.

The fold publishes each resulting event (recent ones: a replay of old history
stays quiet) on ``spaces.<id>.evt.<kind>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from nats.aio.client import Client
from nats.js import JetStreamContext

from engram_contract.embedders import get_embedder
from engram_contract.messages import SpaceRecord
from engram_contract.settings import WorkerSettings
from engram_contract.subjects import event_subject, stream_name
from engram_worker.core.events import Activated, Event, Rejected
from engram_worker.core.state import SpaceState
from engram_worker.erase_queue import EraseQueue
from engram_worker.indexer import Indexer, caught_up
from engram_worker.positions import stored_at
from engram_worker.rwlock import RWLock
from engram_worker.snapshots import SnapshotStore
from engram_worker.snapshotter import Snapshotter
from engram_worker.wal_consumer import NotCaughtUp, WalConsumer
from engram_worker.writeback import WriteBack

log = logging.getLogger(__name__)
T = TypeVar("T")


class SpaceHost:
    """Hosts one space: its state and the adapters that feed, index, erase,
    snapshot and write back for it."""

    def __init__(
        self,
        record: SpaceRecord,
        nc: Client,
        js: JetStreamContext,
        settings: WorkerSettings,
        snapshots: SnapshotStore | None = None,
    ) -> None:
        self.record = record
        self.space = record.id
        self.settings = settings
        self.js = js
        self._nc = nc
        self.state = self.fresh_state()
        self.retired = False  # deleted (or re-created): write no more snapshots
        #: the first live host of the space (engram_worker.placement): only the
        #: primary writes snapshots, erases WAL messages and runs the consolidation
        #: schedule, so replicas never duplicate that work or race
        self.primary = True
        self.last_used = time.monotonic()  # the last query or write (idle unloading)
        self.in_use = 0  # queries being answered
        #: everything the WAL held when the host started is folded (caught_up())
        self.wal_caught_up = False
        self._start_last = 0  # the WAL's last seq when start() looked
        self.wal = WalConsumer(self, js, settings)
        self.indexer = Indexer(self.space, lambda: self.state, settings.index_batch)
        #: the fold writes, queries read (with the indexer's lock: see :meth:`reading`)
        self.state_lock = RWLock()
        #: while a snapshot reads the state (:meth:`fold_paused`); set when it is done
        self._fold_gate: asyncio.Event | None = None
        self.erase_queue = EraseQueue(self.space, js)
        self.snapshotter = Snapshotter(self, snapshots)
        self.writeback = WriteBack(self)
        self._snapshots = snapshots

    def fresh_state(self) -> SpaceState:
        rec = self.record
        return SpaceState(
            rec, get_embedder(rec.embedder, rec.dim), index_dtype=self.settings.index_dtype
        )

    async def start(self, *, use_snapshot: bool = True) -> None:
        """Restore the snapshot (unless told not to), then subscribe from its position + 1
        and fold everything after it."""
        info = await self.js.stream_info(stream_name(self.space))
        last = info.state.last_seq
        self.wal.stream_last = self._start_last = last
        snap = self.snapshotter
        if use_snapshot and self._snapshots is not None:
            await snap.recover(last)
        else:
            snap.recovery = "replayed the WAL (snapshot not used)"
        snap.captured_seq = self.state.applied_seq
        # what the snapshot says is still to erase goes first
        self.erase_queue.start(snap.erase_left)
        snap.erase_left = []
        await self.wal.start(self.state.applied_seq)
        log.info(
            "space %s: hosting from seq %d (stream last seq %d)",
            self.space,
            self.state.applied_seq + 1,
            last,
        )
        if self._snapshots is not None:
            await snap.follow(self._nc)
            snap.start()
        self.writeback.start()

    def set_primary(self, primary: bool) -> None:
        if primary != self.primary:
            log.info("space %s: %s", self.space, "primary here" if primary else "a replica here")
        self.primary = primary
        self.erase_queue.active = primary

    async def caught_up(self) -> None:
        """Return once everything the WAL held when the host started is folded."""
        while not self.wal_caught_up:
            try:
                await self.wait_applied(self._start_last, 60.0)
                self.wal_caught_up = True
            except NotCaughtUp:
                log.info(
                    "space %s: still catching up (%d of %d)",
                    self.space,
                    self.state.applied_seq,
                    self._start_last,
                )

    async def stop(self, *, snapshot: bool = False) -> None:
        """Stop tailing; with ``snapshot``, first write one if anything changed since
        the last (a graceful shutdown)."""
        await self.wal.stop()
        await self.writeback.stop()
        await self.snapshotter.stop()
        await self.indexer.stop()
        # a few seconds for the erase queue; a snapshot lists what is left
        await self.erase_queue.stop(timeout=5.0)
        if snapshot and self.primary and self.snapshotter.changed() and not self.retired:
            if self.wal.done_seq < self.state.applied_seq:
                log.warning(
                    "space %s: stopped while folding seq %d; no snapshot on the way out",
                    self.space,
                    self.state.applied_seq,
                )
            else:
                try:
                    await self.snapshotter.snapshot()
                except Exception:
                    log.exception("space %s: snapshot on shutdown failed", self.space)
        self.wal.cancel_waiters()

    async def fold(self, verb: str, data: bytes, seq: int, stamp: int, after: int) -> None:
        """Fold one WAL message (``stamp``: its server time in ns; ``after``: messages
        pending after it), erase what it makes obsolete, announce it, and keep the
        index inserts going."""
        while self._fold_gate is not None:  # a snapshot is reading the state
            await self._fold_gate.wait()
        at = stored_at(stamp)
        self.last_used = time.monotonic()
        if verb == "consolidate":
            # reads the members' vectors: not during an insert; holding the index
            # lock for writing also waits out every reader
            async with self.indexer.lock:
                event = self.state.apply_message(verb, data, seq, at)
        elif self.state_lock.idle:
            # no reader and no waiter, and apply_message does not await: no query
            # can start before it returns (the common case, without a lock's cost)
            event = self.state.apply_message(verb, data, seq, at)
        else:  # queries are reading: wait until they are done, keep new ones out
            async with self.state_lock.write():
                event = self.state.apply_message(verb, data, seq, at)
        if event is not None:
            self.wal.count(verb, event)
            snap = self.snapshotter
            snap.since_snapshot += 1
            if not isinstance(event, Activated):
                snap.content_seq = event.seq
            erases = event.erases
            if erases is not None:
                snap.touched(erases)
                await self.erase_queue.put(erases)
            # Announce what was written recently; a replay of old history stays quiet.
            # Recent includes the last messages before a crash, so events are
            # at-least-once for them.
            if time.time() - stamp / 1e9 <= self.settings.event_window:
                await self._publish(event)
        pending = self.state.pending
        if pending >= 4 * self.settings.index_batch:
            await self.indexer.flush()  # back-pressure: the index is the ingest ceiling
        elif pending >= self.settings.index_batch or after == 0:
            self.indexer.kick()

    @contextlib.asynccontextmanager
    async def fold_paused(self) -> AsyncIterator[None]:
        """No fold step runs in the block while queries go on beside it (they
        only read): a snapshot reads the state in a thread meanwhile. A step
        already waiting for the state lock is let finish first; one waiting for
        the index lock (a consolidate) finishes before the caller's own index
        lock is granted."""
        assert self._fold_gate is None, "the fold is paused already"
        gate = self._fold_gate = asyncio.Event()
        try:
            async with self.state_lock.write():
                pass
            yield
        finally:
            self._fold_gate = None
            gate.set()

    async def _publish(self, event: Event) -> None:
        if type(event) is Rejected:
            log.warning("space %s: rejected seq %d: %s", self.space, event.seq, event.reason)
        subject = event_subject(self.space, event.kind)
        await self._nc.publish(subject, event.message(self.space).model_dump_json().encode())

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[SpaceState]:
        """The state with every applied vector indexed, shared with other readers:
        no fold step and no index insert runs until the block ends, and the reader
        changes nothing (so readers may run in threads, side by side)."""
        index_lock, state_lock = self.indexer.lock, self.state_lock
        while True:
            await self.indexer.catch_up()
            # both usually granted without suspending, right after the catch-up
            await index_lock.acquire_read()
            try:
                await state_lock.acquire_read()
            except BaseException:
                index_lock.release_read()
                raise
            state = self.state
            if caught_up(state):
                break
            # folded meanwhile (we waited for a lock): catch up again
            state_lock.release_read()
            index_lock.release_read()
        try:
            yield state
        finally:
            state_lock.release_read()
            index_lock.release_read()

    async def with_index(self, fn: Callable[[SpaceState], T], *, thread: bool = False) -> T:
        """Run ``fn(state)`` as a reader (:meth:`reading`); with ``thread``, in a
        thread, so the event loop goes on and other readers overlap it."""
        async with self.reading() as state:
            if thread:
                return await _in_thread(fn, state)
            return fn(state)

    async def wait_applied(self, seq: int, timeout: float) -> None:
        """Return once ``seq`` is applied (what it erases may still be queued for
        erasing); raise :class:`~engram_worker.wal_consumer.NotCaughtUp` after ``timeout``."""
        await self.wal.wait_applied(seq, timeout)

    async def stream_last_seq(self) -> int:
        info = await self.js.stream_info(stream_name(self.space))
        return int(info.state.last_seq)

    def index_memory_bytes(self) -> int:
        """Memory held by the space's usearch index, as of its last insert."""
        return self.state.index.memory_bytes


async def _in_thread(fn: Callable[[SpaceState], T], state: SpaceState) -> T:
    """``fn(state)`` in a thread. Cancel-safe: the caller keeps its read locks
    until the thread is done with the state."""
    task = asyncio.ensure_future(asyncio.to_thread(fn, state))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        raise
